//! Size and duration parsers (command line, environment and config file)
//! against the README's description.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapserve::config::units::{parse_duration, parse_size};
use mapserve::http::model;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    assert_eq!(parse_size(text).ok(), model::size(text), "{text:?}");
    assert_eq!(parse_duration(text).ok().map(|d| d.as_millis()), model::duration_ms(text), "{text:?}");
});
