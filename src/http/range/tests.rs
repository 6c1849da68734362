//! Table-driven cases from RFC 9110 §14 plus property tests for the parser and
//! resolver.

use super::*;
use proptest::prelude::*;

fn r(first: u64, last: u64) -> ByteRange {
    ByteRange { first, last }
}

fn outcome(header: &str, len: u64) -> RangeOutcome {
    let slow = resolve(&parse(header.as_bytes()), len, 64);
    // The one-step fast path must agree with parse + resolve everywhere.
    assert_eq!(evaluate(header.as_bytes(), len, 64), slow, "fast path differs for {header:?}");
    slow
}

#[test]
fn rfc_9110_examples_resolve_as_specified() {
    use RangeOutcome::*;
    let len = 10_000;
    let cases: &[(&str, RangeOutcome)] = &[
        // §14.1.2 examples.
        ("bytes=0-499", Single(r(0, 499))),
        ("bytes=500-999", Single(r(500, 999))),
        ("bytes=-500", Single(r(9500, 9999))),
        ("bytes=9500-", Single(r(9500, 9999))),
        ("bytes=0-0,-1", Multi(vec![r(0, 0), r(9999, 9999)])),
        // Clamping and suffix longer than the representation.
        ("bytes=0-999999", Single(r(0, 9999))),
        ("bytes=-20000", Single(r(0, 9999))),
        ("bytes=9999-", Single(r(9999, 9999))),
        // Unsatisfiable.
        ("bytes=10000-", Unsatisfiable),
        ("bytes=10000-10001", Unsatisfiable),
        ("bytes=-0", Unsatisfiable),
        ("bytes=20000-,-0", Unsatisfiable),
        // One unsatisfiable member does not spoil the set.
        ("bytes=20000-,0-1", Single(r(0, 1))),
        // Unit is case-insensitive; unknown units are ignored.
        ("Bytes=0-4", Single(r(0, 4))),
        ("BYTES=0-4", Single(r(0, 4))),
        ("items=0-5", Full),
        ("bytes0-5", Full),
        // Invalid syntax is ignored.
        ("bytes=5-3", Full),
        ("bytes=abc", Full),
        ("bytes=", Full),
        ("bytes=,", Full),
        ("bytes=1-2-3", Full),
        ("bytes=+1-2", Full),
        ("bytes= 0-1", Single(r(0, 1))),
        ("bytes=0 -1", Full),
        ("bytes=--1", Full),
        // Empty list elements and OWS are allowed.
        ("bytes=0-1,,4-5", Multi(vec![r(0, 1), r(4, 5)])),
        ("bytes=0-1 ,\t4-5", Multi(vec![r(0, 1), r(4, 5)])),
        // Overlapping and adjacent ranges are coalesced.
        ("bytes=0-5,3-9", Single(r(0, 9))),
        ("bytes=0-4,5-9", Single(r(0, 9))),
        ("bytes=100-199,0-9,5-20", Multi(vec![r(100, 199), r(0, 20)])),
        // Amplification guard: more than the whole file -> 200.
        ("bytes=0-,0-", Full),
        ("bytes=0-9999,0-0", Full),
        // u64 edges.
        ("bytes=18446744073709551615-", Unsatisfiable),
        ("bytes=99999999999999999999999-", Unsatisfiable),
        ("bytes=0-99999999999999999999999", Single(r(0, 9999))),
        ("bytes=-99999999999999999999999", Single(r(0, 9999))),
    ];
    for (header, expected) in cases {
        assert_eq!(&outcome(header, len), expected, "header {header:?}");
    }
}

#[test]
fn empty_representation_has_no_satisfiable_first_pos() {
    assert_eq!(outcome("bytes=0-", 0), RangeOutcome::Unsatisfiable);
    assert_eq!(outcome("bytes=0-0", 0), RangeOutcome::Unsatisfiable);
    assert_eq!(outcome("bytes=-5", 0), RangeOutcome::Full);
    assert_eq!(outcome("bytes=-0", 0), RangeOutcome::Unsatisfiable);
}

#[test]
fn more_ranges_than_the_cap_are_answered_whole() {
    // 65 disjoint one-byte ranges against a big file, over the cap of 64.
    let spaced: String = (0..65).map(|i| format!("{}-{}", i * 10, i * 10)).collect::<Vec<_>>().join(",");
    assert_eq!(outcome(&format!("bytes={spaced}"), 1_000_000), RangeOutcome::Full);
    // 64 are within the cap and come back as multipart.
    let within: String = (0..64).map(|i| format!("{}-{}", i * 10, i * 10)).collect::<Vec<_>>().join(",");
    assert!(
        matches!(outcome(&format!("bytes={within}"), 1_000_000), RangeOutcome::Multi(v) if v.len() == 64)
    );
}

#[test]
fn u64_max_length_does_not_overflow() {
    assert_eq!(outcome("bytes=-1", u64::MAX), RangeOutcome::Single(r(u64::MAX - 1, u64::MAX - 1)));
    assert_eq!(outcome("bytes=0-", u64::MAX), RangeOutcome::Single(r(0, u64::MAX - 1)));
    assert_eq!(
        outcome("bytes=0-,1-", u64::MAX),
        RangeOutcome::Full,
        "two ranges adding up to more than the file"
    );
}

fn spec_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..300, 0u64..300).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (0u64..300).prop_map(|a| format!("{a}-")),
        (0u64..300).prop_map(|n| format!("-{n}")),
    ]
}

proptest! {
    #[test]
    fn parser_is_total_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64), len in any::<u64>()) {
        let parsed = parse(&bytes);
        prop_assert_eq!(resolve(&parsed, len, 64), evaluate(&bytes, len, 64));
    }

    #[test]
    fn resolved_ranges_lie_inside_the_representation(
        specs in proptest::collection::vec(spec_strategy(), 1..8),
        len in 0u64..400,
    ) {
        let header = format!("bytes={}", specs.join(","));
        match outcome(&header, len) {
            RangeOutcome::Single(range) => {
                prop_assert!(range.first <= range.last && range.last < len);
            }
            RangeOutcome::Multi(ranges) => {
                prop_assert!(ranges.len() >= 2 && ranges.len() <= 64);
                let total: u64 = ranges.iter().map(ByteRange::len).sum();
                prop_assert!(total <= len);
                let mut sorted = ranges.clone();
                sorted.sort_by_key(|r| r.first);
                for pair in sorted.windows(2) {
                    // disjoint and not adjacent after coalescing
                    prop_assert!(pair[0].last + 1 < pair[1].first);
                }
                for range in &ranges {
                    prop_assert!(range.first <= range.last && range.last < len);
                }
            }
            RangeOutcome::Full | RangeOutcome::Unsatisfiable => {}
        }
    }

    #[test]
    fn resolver_agrees_with_the_rfc_model(
        specs in proptest::collection::vec(spec_strategy(), 1..6),
        len in 0u64..300,
    ) {
        let header = format!("bytes={}", specs.join(","));
        let model = crate::http::model::range_selected(&header, len);
        let got = outcome(&header, len);
        match (&model, &got) {
            (None, RangeOutcome::Unsatisfiable) => {}
            (None, RangeOutcome::Full) => prop_assert_eq!(len, 0, "only an empty file turns unsatisfiable into 200"),
            (Some(selected), RangeOutcome::Single(_) | RangeOutcome::Multi(_)) => {
                let ranges = match &got {
                    RangeOutcome::Single(r) => vec![*r],
                    RangeOutcome::Multi(v) => v.clone(),
                    _ => unreachable!(),
                };
                let mut mine = vec![false; len as usize];
                for r in ranges {
                    for i in r.first..=r.last { mine[i as usize] = true; }
                }
                prop_assert_eq!(&mine, selected);
            }
            (Some(_), RangeOutcome::Full) => {
                // Allowed only by the amplification guard.
                prop_assert!(specs.len() > 1);
            }
            (model, got) => prop_assert!(false, "model {:?} vs {:?}", model.is_some(), got),
        }
    }
}
