//! `multipart/byteranges` bodies (RFC 9110 §14.6) built as a chain of
//! slices: small heap headers between zero-copy slices of the file, with an
//! exact Content-Length computed before anything is sent.

use super::range::ByteRange;
use bytes::Bytes;

/// A planned multipart body: the part headers and the ranges between them.
#[derive(Debug, Clone)]
pub struct Multipart {
    /// The boundary, without the leading dashes.
    pub boundary: String,
    /// `(part header, range)` for each part, in order. The header includes the
    /// CRLF that ends the previous part's data.
    pub parts: Vec<(Bytes, ByteRange)>,
    /// The closing delimiter.
    pub trailer: Bytes,
    /// Exact length of the whole body.
    pub content_length: u64,
}

/// Lays out the multipart body for `ranges` of a representation of `len`
/// bytes with type `content_type`.
pub fn plan(ranges: &[ByteRange], len: u64, content_type: &[u8], boundary: String) -> Multipart {
    let mut parts = Vec::with_capacity(ranges.len());
    let mut total: u64 = 0;
    for range in ranges {
        let mut head = Vec::with_capacity(96 + boundary.len() + content_type.len());
        head.extend_from_slice(b"\r\n--");
        head.extend_from_slice(boundary.as_bytes());
        head.extend_from_slice(b"\r\nContent-Type: ");
        head.extend_from_slice(content_type);
        head.extend_from_slice(
            format!("\r\nContent-Range: bytes {}-{}/{}\r\n\r\n", range.first, range.last, len).as_bytes(),
        );
        total = total.saturating_add(head.len() as u64).saturating_add(range.len());
        parts.push((Bytes::from(head), *range));
    }
    let trailer = Bytes::from(format!("\r\n--{boundary}--\r\n"));
    total = total.saturating_add(trailer.len() as u64);
    Multipart { boundary, parts, trailer, content_length: total }
}

/// A boundary that will not occur by chance in a file: 24 hex digits from a
/// per-process counter mixed with the clock.
pub fn new_boundary() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let a = splitmix(nanos ^ n.rotate_left(32));
    let b = splitmix(a ^ n);
    format!("{a:016x}{:08x}", b as u32)
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Renders the planned body against `file` (as the response body would).
    fn render(m: &Multipart, file: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (head, range) in &m.parts {
            out.extend_from_slice(head);
            out.extend_from_slice(&file[range.first as usize..=range.last as usize]);
        }
        out.extend_from_slice(&m.trailer);
        out
    }

    /// A small independent multipart parser: returns (content-range, data).
    fn parse_back(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
        let delim = format!("\r\n--{boundary}");
        let mut parts = Vec::new();
        let mut rest = body;
        assert!(rest.starts_with(delim.as_bytes()));
        loop {
            rest = &rest[delim.len()..];
            if rest.starts_with(b"--\r\n") {
                assert_eq!(rest.len(), 4, "nothing after the close delimiter");
                return parts;
            }
            let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let head = std::str::from_utf8(&rest[2..head_end]).unwrap();
            let range_line = head.lines().find_map(|l| l.strip_prefix("Content-Range: ")).unwrap().to_owned();
            let data_start = head_end + 4;
            // Data length comes from the Content-Range, then a delimiter must follow.
            let spec = range_line.strip_prefix("bytes ").unwrap();
            let (span, _) = spec.split_once('/').unwrap();
            let (a, b) = span.split_once('-').unwrap();
            let n = b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1;
            parts.push((range_line, rest[data_start..data_start + n].to_vec()));
            rest = &rest[data_start + n..];
            assert!(rest.starts_with(delim.as_bytes()));
        }
    }

    proptest! {
        #[test]
        fn multipart_body_parses_back_into_exactly_its_slices(
            file in proptest::collection::vec(any::<u8>(), 1..2000),
            cuts in proptest::collection::vec((any::<u16>(), any::<u16>()), 2..6),
        ) {
            let len = file.len() as u64;
            let ranges: Vec<ByteRange> = cuts
                .iter()
                .map(|&(a, b)| {
                    let a = u64::from(a) % len;
                    let b = u64::from(b) % len;
                    ByteRange { first: a.min(b), last: a.max(b) }
                })
                .collect();
            let m = plan(&ranges, len, b"application/octet-stream", new_boundary());
            let body = render(&m, &file);
            prop_assert_eq!(body.len() as u64, m.content_length);
            let parsed = parse_back(&body, &m.boundary);
            prop_assert_eq!(parsed.len(), ranges.len());
            for ((range_line, data), range) in parsed.iter().zip(&ranges) {
                prop_assert_eq!(range_line, &format!("bytes {}-{}/{}", range.first, range.last, len));
                prop_assert_eq!(&data[..], &file[range.first as usize..=range.last as usize]);
            }
        }
    }

    #[test]
    fn boundaries_differ() {
        assert_ne!(new_boundary(), new_boundary());
        assert_eq!(new_boundary().len(), 24);
    }
}
