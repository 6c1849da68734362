//! Request paths against the model: the same segments or the same refusal,
//! and nothing accepted that could leave ROOT.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapserve::http::model;
use mapserve::path::{PathError, parse};

fuzz_target!(|input: &[u8]| {
    let Some((&hidden, rest)) = input.split_first() else { return };
    let Ok(uri) = std::str::from_utf8(rest) else { return };
    let hidden = hidden & 1 == 1;
    let got = parse(uri, hidden);
    let kind = got.as_ref().map(|p| (p.as_bytes().to_vec(), p.has_trailing_slash())).map_err(|e| match e {
        PathError::Invalid => 0u8,
        PathError::Hidden => 1,
        PathError::TooLong => 2,
    });
    let model = model::request_path(uri.as_bytes(), hidden).map(|(segs, slash)| (segs.join(&b'/'), slash));
    assert_eq!(kind, model, "{uri:?}");
    if let Ok(p) = got {
        for seg in p.as_bytes().split(|&b| b == b'/').filter(|_| !p.as_bytes().is_empty()) {
            assert!(!seg.is_empty() && seg != b"." && seg != b".." && !seg.contains(&0) && !seg.contains(&b'\\'));
        }
    }
});
