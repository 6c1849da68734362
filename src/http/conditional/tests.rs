//! RFC 9110 §13 precedence table and parser properties.

use super::*;
use http::HeaderMap;
use proptest::prelude::*;

const ETAG: &[u8] = b"\"abc\"";
/// Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT
const LM: u64 = 784111777;
const LM_TEXT: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
const BEFORE: &str = "Sat, 05 Nov 1994 08:49:37 GMT";
const AFTER: &str = "Mon, 07 Nov 1994 08:49:37 GMT";

fn v() -> Validators<'static> {
    Validators { etag: ETAG, last_modified: Some(LM), last_modified_is_strong: true }
}

fn eval(pairs: &[(&str, &str)], is_get: bool) -> Decision {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    evaluate(&headers, is_get, &v())
}

const GO: Decision = Decision::Proceed { use_range: true };
const NO_RANGE: Decision = Decision::Proceed { use_range: false };
const NM: Decision = Decision::NotModified;
const PF: Decision = Decision::PreconditionFailed;

#[test]
fn precedence_table_follows_rfc_9110_13_2_2() {
    let cases: &[(&[(&str, &str)], Decision)] = &[
        (&[], GO),
        // If-Match: strong comparison, * matches, lists, weak never matches.
        (&[("if-match", "\"abc\"")], GO),
        (&[("if-match", "*")], GO),
        (&[("if-match", "\"x\", \"abc\"")], GO),
        (&[("if-match", "W/\"abc\"")], PF),
        (&[("if-match", "\"x\"")], PF),
        (&[("if-match", "garbage")], PF),
        // If-Match wins over If-Unmodified-Since.
        (&[("if-match", "\"abc\""), ("if-unmodified-since", BEFORE)], GO),
        // If-Unmodified-Since alone.
        (&[("if-unmodified-since", BEFORE)], PF),
        (&[("if-unmodified-since", LM_TEXT)], GO),
        (&[("if-unmodified-since", AFTER)], GO),
        (&[("if-unmodified-since", "foo")], GO), // invalid date ignored (nginx gets 412)
        // If-None-Match: weak comparison.
        (&[("if-none-match", "\"abc\"")], NM),
        (&[("if-none-match", "W/\"abc\"")], NM),
        (&[("if-none-match", "*")], NM),
        (&[("if-none-match", "\"x\"")], GO),
        (&[("if-none-match", "\"x\",W/\"abc\"")], NM),
        // If-None-Match beats If-Modified-Since (dufs gets this wrong).
        (&[("if-none-match", "\"x\""), ("if-modified-since", AFTER)], GO),
        (&[("if-none-match", "\"abc\""), ("if-modified-since", BEFORE)], NM),
        // If-Modified-Since alone.
        (&[("if-modified-since", LM_TEXT)], NM),
        (&[("if-modified-since", AFTER)], NM),
        (&[("if-modified-since", BEFORE)], GO),
        (&[("if-modified-since", "not a date")], GO),
        (&[("if-modified-since", LM_TEXT), ("if-modified-since", LM_TEXT)], GO),
        // RFC 850 and asctime forms.
        (&[("if-modified-since", "Sunday, 06-Nov-94 08:49:37 GMT")], NM),
        (&[("if-modified-since", "Sun Nov  6 08:49:37 1994")], NM),
        // 412 comes before 304.
        (&[("if-match", "\"x\""), ("if-none-match", "\"abc\"")], PF),
        // If-Range only with Range.
        (&[("if-range", "\"x\"")], GO),
        (&[("range", "bytes=0-1"), ("if-range", "\"abc\"")], GO),
        (&[("range", "bytes=0-1"), ("if-range", "\"x\"")], NO_RANGE),
        (&[("range", "bytes=0-1"), ("if-range", "W/\"abc\"")], NO_RANGE),
        (&[("range", "bytes=0-1"), ("if-range", LM_TEXT)], GO),
        (&[("range", "bytes=0-1"), ("if-range", AFTER)], NO_RANGE),
        (&[("range", "bytes=0-1"), ("if-range", BEFORE)], NO_RANGE),
        (&[("range", "bytes=0-1"), ("if-range", "garbage")], NO_RANGE),
        (&[("range", "bytes=0-1"), ("if-range", "\"abc\", \"x\"")], NO_RANGE),
    ];
    for (pairs, expected) in cases {
        assert_eq!(eval(pairs, true), *expected, "headers {pairs:?}");
    }
}

#[test]
fn if_range_is_only_for_get() {
    assert_eq!(eval(&[("range", "bytes=0-1"), ("if-range", "\"x\"")], false), GO);
}

#[test]
fn date_conditions_are_ignored_without_last_modified() {
    let mut headers = HeaderMap::new();
    headers.insert(header::IF_UNMODIFIED_SINCE, HeaderValue::from_static(BEFORE));
    headers.insert(header::IF_MODIFIED_SINCE, HeaderValue::from_static(AFTER));
    let v = Validators { etag: ETAG, last_modified: None, last_modified_is_strong: false };
    assert_eq!(evaluate(&headers, true, &v), GO);
}

#[test]
fn if_range_date_needs_a_strong_last_modified() {
    let mut headers = HeaderMap::new();
    headers.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
    headers.insert(header::IF_RANGE, HeaderValue::from_static(LM_TEXT));
    let weak = Validators { etag: ETAG, last_modified: Some(LM), last_modified_is_strong: false };
    assert_eq!(evaluate(&headers, true, &weak), NO_RANGE);
}

#[test]
fn entity_tag_lists_parse_like_the_rfc_grammar() {
    let tags: Vec<_> = EntityTags::new(b" \"a,b\" , W/\"c\",,bad, \"d\"").collect();
    assert_eq!(
        tags,
        vec![
            EntityTag { weak: false, opaque: b"a,b" },
            EntityTag { weak: true, opaque: b"c" },
            EntityTag { weak: false, opaque: b"d" },
        ]
    );
    assert_eq!(EntityTags::new(b"\"unterminated").count(), 0);
    assert_eq!(EntityTags::new(b"\"a\" junk, \"b\"").map(|t| t.opaque).collect::<Vec<_>>(), vec![b"b"]);
}

fn tag_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"abc\"".to_owned()),
        Just("W/\"abc\"".to_owned()),
        Just("\"other\"".to_owned()),
        Just("*".to_owned()),
        Just("abc".to_owned()),
        Just("\"abc\", \"x\"".to_owned()),
        Just(" W/\"x\" , \"abc\" ".to_owned()),
        Just("\"a\"bc\"".to_owned()),
        Just("".to_owned()),
    ]
}

fn date_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Sun, 06 Nov 1994 08:49:37 GMT".to_owned()),
        Just("Sun, 06 Nov 1994 08:49:36 GMT".to_owned()),
        Just("Sun, 06 Nov 1994 08:49:38 GMT".to_owned()),
        Just("Sunday, 06-Nov-94 08:49:37 GMT".to_owned()),
        Just("Sun Nov  6 08:49:37 1994".to_owned()),
        Just("yesterday".to_owned()),
    ]
}

/// Found by fuzzing (`fuzz/regressions/conditional/`): If-Range holds one
/// entity-tag, not a list, so `"abc" ,` does not match and the whole
/// representation is sent.
#[test]
fn if_range_is_one_entity_tag_not_a_list() {
    let mut headers = HeaderMap::new();
    headers.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
    let v = Validators { etag: b"\"abc\"", last_modified: None, last_modified_is_strong: false };
    for (value, matches) in
        [("\"abc\"", true), (" \"abc\" ", true), ("\"abc\" ,", false), ("\"abc\", \"abc\"", false)]
    {
        headers.insert(header::IF_RANGE, HeaderValue::from_static(value));
        assert_eq!(evaluate(&headers, true, &v), Decision::Proceed { use_range: matches }, "{value}");
    }
}

proptest! {
    /// §13.2.2 as implemented agrees with the step-by-step model.
    #[test]
    fn agrees_with_the_rfc_model(
        if_match in proptest::collection::vec(tag_value(), 0..3),
        if_none_match in proptest::collection::vec(tag_value(), 0..3),
        if_modified_since in proptest::collection::vec(date_value(), 0..3),
        if_unmodified_since in proptest::collection::vec(date_value(), 0..3),
        if_range in proptest::option::of(prop_oneof![tag_value(), date_value()]),
        range: bool, is_get: bool, has_lm: bool, lm_strong: bool,
    ) {
        let mut headers = HeaderMap::new();
        let add = |h: &mut HeaderMap, name: header::HeaderName, vs: &[String]| {
            for v in vs { h.append(name.clone(), HeaderValue::from_str(v).unwrap()); }
        };
        add(&mut headers, header::IF_MATCH, &if_match);
        add(&mut headers, header::IF_NONE_MATCH, &if_none_match);
        add(&mut headers, header::IF_MODIFIED_SINCE, &if_modified_since);
        add(&mut headers, header::IF_UNMODIFIED_SINCE, &if_unmodified_since);
        if let Some(v) = &if_range { headers.insert(header::IF_RANGE, HeaderValue::from_str(v).unwrap()); }
        if range { headers.insert(header::RANGE, HeaderValue::from_static("bytes=0-1")); }
        let lm = has_lm.then_some(784_111_777);
        let v = Validators { etag: b"\"abc\"", last_modified: lm, last_modified_is_strong: lm_strong };
        let c = crate::http::model::Conditions {
            if_match, if_none_match, if_modified_since, if_unmodified_since, if_range, range,
        };
        prop_assert_eq!(evaluate(&headers, is_get, &v), crate::http::model::preconditions(&c, is_get, "abc", lm, lm_strong));
    }

    #[test]
    fn entity_tag_parser_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        for tag in EntityTags::new(&bytes) {
            prop_assert!(!tag.opaque.contains(&b'"'));
        }
    }

    #[test]
    fn current_etag_in_if_none_match_always_gives_304(prefix in "[a-z0-9\"/ ,W]{0,20}", is_get in any::<bool>()) {
        let mut headers = HeaderMap::new();
        let value = format!("{prefix}, \"abc\"");
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(header::IF_NONE_MATCH, value);
            prop_assert_eq!(evaluate(&headers, is_get, &v()), NM);
        }
    }
}
