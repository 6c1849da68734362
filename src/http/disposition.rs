//! `Content-Disposition: attachment` for `?download` (RFC 6266), with the
//! file name twice: an ASCII fallback in `filename` for old clients, and the
//! exact name in `filename*` (RFC 8187: UTF-8, percent-encoded). Pure.

use http::HeaderValue;

/// The header value for a file named `name` (raw bytes from the file
/// system; names that are not UTF-8 are sent with U+FFFD in their place).
pub fn attachment(name: &[u8]) -> HeaderValue {
    let name = String::from_utf8_lossy(name);
    let mut value = String::with_capacity(name.len() * 3 + 40);
    value.push_str("attachment; filename=\"");
    // Visible ASCII except the two characters a quoted-string must escape;
    // everything else (non-ASCII, controls, `"`, `\`) becomes `_`.
    value.extend(name.chars().map(|c| match c {
        '"' | '\\' => '_',
        c if c == ' ' || c.is_ascii_graphic() => c,
        _ => '_',
    }));
    value.push_str("\"; filename*=UTF-8''");
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            value.push(char::from(b));
        } else {
            value.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_and_non_ascii_names() {
        assert_eq!(
            attachment(b"report.pdf"),
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
        assert_eq!(
            attachment("résumé 2026 ✓.txt".as_bytes()),
            "attachment; filename=\"r_sum_ 2026 _.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9%202026%20%E2%9C%93.txt"
        );
        assert_eq!(
            attachment(b"a\"b\\c;d%e'f.txt"),
            "attachment; filename=\"a_b_c;d%e'f.txt\"; filename*=UTF-8''a%22b%5Cc%3Bd%25e%27f.txt"
        );
        assert_eq!(
            attachment(b"tab\there\x7f"),
            "attachment; filename=\"tab_here_\"; filename*=UTF-8''tab%09here%7F"
        );
        assert_eq!(attachment(b"\xff.bin"), "attachment; filename=\"_.bin\"; filename*=UTF-8''%EF%BF%BD.bin");
    }

    #[test]
    fn every_name_gives_a_valid_header() {
        use proptest::prelude::*;
        proptest!(|(name in proptest::collection::vec(any::<u8>(), 0..64))| {
            let v = attachment(&name);
            prop_assert!(v.to_str().is_ok_and(|s| s.starts_with("attachment; filename=\"")));
        });
    }
}
