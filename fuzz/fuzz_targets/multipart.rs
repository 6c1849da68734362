//! `multipart/byteranges` parse-back: a body laid out by `multipart::plan`
//! for any set of ranges is parsed by an independent reader into exactly
//! those parts (Content-Type, Content-Range, bytes), in order, and its
//! Content-Length is exact.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapserve::http::multipart::plan;
use mapserve::http::range::ByteRange;

fuzz_target!(|input: &[u8]| {
    if input.len() < 3 {
        return;
    }
    let len = u64::from(u16::from_le_bytes([input[0], input[1]])) + 1;
    let file: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let mut ranges = Vec::new();
    for pair in input[2..].chunks_exact(4).take(64) {
        let a = u64::from(u16::from_le_bytes([pair[0], pair[1]])) % len;
        let b = u64::from(u16::from_le_bytes([pair[2], pair[3]])) % len;
        ranges.push(ByteRange { first: a.min(b), last: a.max(b) });
    }
    if ranges.is_empty() {
        return;
    }
    let ct = b"text/plain; charset=utf-8";
    let m = plan(&ranges, len, ct, "0123456789abcdef01234567".to_owned());
    let mut body = Vec::new();
    for (head, r) in &m.parts {
        body.extend_from_slice(head);
        body.extend_from_slice(&file[r.first as usize..=r.last as usize]);
    }
    body.extend_from_slice(&m.trailer);
    assert_eq!(body.len() as u64, m.content_length, "Content-Length is exact");
    // Parse back, RFC 9110 §14.6 / RFC 2046 style.
    let delimiter = format!("\r\n--{}", m.boundary).into_bytes();
    let mut rest = &body[..];
    for r in &ranges {
        assert!(rest.starts_with(&delimiter), "a part starts with the delimiter");
        rest = &rest[delimiter.len()..];
        let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n").expect("part head ends");
        let head = std::str::from_utf8(&rest[..head_end]).expect("ASCII head");
        let want_range = format!("Content-Range: bytes {}-{}/{}", r.first, r.last, len);
        assert!(head.lines().any(|l| l == want_range), "{head}");
        assert!(head.lines().any(|l| l == "Content-Type: text/plain; charset=utf-8"), "{head}");
        rest = &rest[head_end + 4..];
        let n = (r.last - r.first + 1) as usize;
        assert_eq!(&rest[..n], &file[r.first as usize..=r.last as usize]);
        rest = &rest[n..];
    }
    assert_eq!(rest, format!("\r\n--{}--\r\n", m.boundary).as_bytes(), "the close delimiter ends the body");
});
