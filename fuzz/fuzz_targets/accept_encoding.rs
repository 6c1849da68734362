//! `Accept-Encoding` (RFC 9110 §12.5.3) against the text model: the same
//! coding is chosen for any header and any set of available codings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapserve::http::encoding::{Coding, parse};
use mapserve::http::model;

fuzz_target!(|input: &[u8]| {
    let Some((&mask, header)) = input.split_first() else { return };
    let available: Vec<Coding> =
        [Coding::Br, Coding::Zstd, Coding::Gzip].into_iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, c)| c).collect();
    let got = parse(std::iter::once(header)).choose(&available);
    // The model reads text; header values are visible ASCII and tabs.
    if header.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        let text = std::str::from_utf8(header).unwrap_or_default();
        assert_eq!(got, model::accept_encoding(Some(text), &available), "{text:?} {available:?}");
    }
});
