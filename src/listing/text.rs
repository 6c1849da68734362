//! Text for listing pages: HTML escaping, per-segment percent-encoding of
//! hrefs, human sizes, dates. Pure.

use std::fmt::Write;

/// Appends `s` with `& < > " '` escaped: safe in text and in quoted
/// attribute values alike.
pub fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `s` escaped for HTML.
pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    push_escaped(&mut out, s);
    out
}

/// Appends one path segment (raw name bytes) percent-encoded: everything but
/// RFC 3986's unreserved characters, so the result is the same safe text in
/// a URL, an attribute and JSON, and mapserve's own decoder (each segment
/// decoded once) gets the name back byte for byte.
pub fn push_segment(out: &mut String, name: &[u8]) {
    for &b in name {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// `1.2 MiB` (one decimal under 10, none from 10 up; bytes exact).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    // 1023.96 KiB would print as "1024 KiB": go up a unit instead.
    if value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 9.95 { format!("{value:.1} {}", UNITS[unit]) } else { format!("{value:.0} {}", UNITS[unit]) }
}

/// `1,258,291`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() * 4 / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Civil UTC date and time of `secs` since the epoch:
/// (year, month, day, hour, minute, second).
pub fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem / 60 % 60, rem % 60)
}

/// RFC 3339 UTC: `2026-11-29T01:02:03Z`.
pub fn rfc3339(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// What a page shows before JavaScript turns it into local time:
/// `2026-11-29 01:02 UTC`.
pub fn short_utc(secs: i64) -> String {
    let (y, mo, d, h, mi, _) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_encoding() {
        assert_eq!(escaped("<img src=x onerror=alert(1)>.txt"), "&lt;img src=x onerror=alert(1)&gt;.txt");
        assert_eq!(escaped("a&b\"c'd"), "a&amp;b&quot;c&#39;d");
        let mut s = String::new();
        push_segment(&mut s, "a b#c?d%e\"f'g<h>i/ä~".as_bytes());
        assert_eq!(s, "a%20b%23c%3Fd%25e%22f%27g%3Ch%3Ei%2F%C3%A4~");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1_258_291), "1.2 MiB");
        assert_eq!(human_size(12 << 20), "12 MiB");
        assert_eq!(human_size((1 << 20) - 1), "1.0 MiB");
        assert_eq!(human_size(u64::MAX), "16 EiB");
        assert_eq!(grouped(1_258_291), "1,258,291");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
    }

    #[test]
    fn dates_agree_with_httpdate() {
        for secs in [0i64, 951_782_400, 1_700_000_000, 1_798_502_523, 4_102_444_800, 253_402_300_799] {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
            let http = httpdate::fmt_http_date(t);
            let (y, mo, d, h, mi, s) = civil(secs);
            const MONTHS: [&str; 12] =
                ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
            let want = format!("{d:02} {} {y} {h:02}:{mi:02}:{s:02} GMT", MONTHS[mo as usize - 1]);
            assert!(http.ends_with(&want), "{secs}: {http} vs {want}");
        }
        assert_eq!(rfc3339(1_798_502_523), "2026-12-29T00:02:03Z");
        assert_eq!(civil(-1), (1969, 12, 31, 23, 59, 59));
    }
}
