//! `Range` against RFC 9110 §14: the one-step fast path equals parse +
//! resolve on any bytes and length, every resolved range lies inside the
//! representation, and for valid headers the selected bytes are exactly the
//! model's (or the whole file when the amplification guard applies).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapserve::http::model;
use mapserve::http::range::{RangeOutcome, evaluate, parse, resolve};

fuzz_target!(|input: &[u8]| {
    let Some((head, header)) = input.split_first_chunk::<9>() else { return };
    let len = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
    let max = usize::from(head[8] % 70).max(1);
    let outcome = evaluate(header, len, max);
    assert_eq!(outcome, resolve(&parse(header), len, max), "fast path differs");
    match &outcome {
        RangeOutcome::Single(r) => assert!(r.first <= r.last && r.last < len),
        RangeOutcome::Multi(v) => {
            assert!(v.len() >= 2 && v.len() <= max);
            assert!(v.iter().all(|r| r.first <= r.last && r.last < len));
            assert!(v.iter().map(|r| r.len()).fold(0u64, u64::saturating_add) <= len);
        }
        RangeOutcome::Full | RangeOutcome::Unsatisfiable => {}
    }
    // Against the model, on small files (it lists every byte).
    let small = len % 4096;
    let Ok(text) = std::str::from_utf8(header) else { return };
    let outcome = evaluate(header, small, 64);
    match (model::range_selected(text, small), outcome) {
        (None, RangeOutcome::Unsatisfiable) => {}
        (None, RangeOutcome::Full) => {}
        (Some(selected), RangeOutcome::Single(r)) => {
            let mine: Vec<bool> = (0..small).map(|i| i >= r.first && i <= r.last).collect();
            assert_eq!(mine, selected, "{text}");
        }
        (Some(selected), RangeOutcome::Multi(v)) => {
            let mine: Vec<bool> = (0..small).map(|i| v.iter().any(|r| i >= r.first && i <= r.last)).collect();
            assert_eq!(mine, selected, "{text}");
        }
        (Some(_), RangeOutcome::Full) => assert!(text.contains(','), "only the guard answers a valid single range whole: {text}"),
        (None, other) => panic!("model says invalid, got {other:?} for {text:?}"),
        (Some(_), RangeOutcome::Unsatisfiable) => panic!("model selects bytes, got 416 for {text:?}"),
    }
});
