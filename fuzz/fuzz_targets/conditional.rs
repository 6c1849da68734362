//! Preconditions (RFC 9110 §13.2.2) against the step-by-step model, with
//! header values built from fuzz bytes around the representation's tag and
//! date.
#![no_main]

use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use mapserve::http::conditional::{Validators, evaluate};
use mapserve::http::model::{Conditions, preconditions};

const PIECES: &[&str] = &[
    "\"abc\"", "W/\"abc\"", "\"x\"", "*", ",", " ", "\"", "W/", "abc", "Sun, 06 Nov 1994 08:49:37 GMT",
    "Sun, 06 Nov 1994 08:49:38 GMT", "Sunday, 06-Nov-94 08:49:36 GMT", "Sun Nov  6 08:49:37 1994", "\t",
];

fuzz_target!(|input: &[u8]| {
    let Some((&flags, rest)) = input.split_first() else { return };
    // Each header: a run of pieces, chosen by bytes, separated by 0xff.
    let mut values: Vec<Vec<String>> = vec![Vec::new(); 5];
    let mut current = String::new();
    let mut which = 0usize;
    for &b in rest {
        match b {
            0xff => {
                values[which % 5].push(std::mem::take(&mut current));
                which += 1;
            }
            0xfe => values[which % 5].push(std::mem::take(&mut current)),
            _ => current.push_str(PIECES[usize::from(b) % PIECES.len()]),
        }
    }
    let mut headers = HeaderMap::new();
    let names = [header::IF_MATCH, header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE, header::IF_UNMODIFIED_SINCE];
    for (name, vs) in names.iter().zip(&values) {
        for v in vs {
            let Ok(v) = HeaderValue::from_str(v) else { return };
            headers.append(name.clone(), v);
        }
    }
    let if_range = values[4].first().cloned();
    if let Some(v) = &if_range {
        let Ok(v) = HeaderValue::from_str(v) else { return };
        headers.insert(header::IF_RANGE, v);
    }
    let range = flags & 1 != 0;
    if range {
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
    }
    let (is_get, has_lm, strong) = (flags & 2 != 0, flags & 4 != 0, flags & 8 != 0);
    let lm = has_lm.then_some(784_111_777);
    let v = Validators { etag: b"\"abc\"", last_modified: lm, last_modified_is_strong: strong };
    let c = Conditions {
        if_match: values[0].clone(),
        if_none_match: values[1].clone(),
        if_modified_since: values[2].clone(),
        if_unmodified_since: values[3].clone(),
        if_range,
        range,
    };
    assert_eq!(evaluate(&headers, is_get, &v), preconditions(&c, is_get, "abc", lm, strong), "{c:?}");
});
