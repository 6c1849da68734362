//! Access-log line formats: pure functions from a finished request ([`Line`])
//! to one line of text.
//!
//! | format | shape |
//! |---|---|
//! | `combined` | nginx/Apache combined, escaped as nginx's `escape=default` |
//! | `common` | the first seven fields of `combined` |
//! | `json` | one JSON object a line |
//! | `text` | the server's historical `key=value` line (the tracing layout) |
//!
//! Every format writes exactly one line, whatever bytes the request held:
//! quoted fields are escaped, so a target cannot forge or split a line.
//! Times are UTC, computed here from the Unix epoch (no date crate).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The formats themselves are named in `config` (which parses them).
pub use crate::config::observe::Format;

/// Everything one access line can show. Borrowed, built once per request end.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    /// When the request started.
    pub time: SystemTime,
    /// Client address; `None` for a unix-socket peer with no conveyed address.
    pub client: Option<IpAddr>,
    /// Client port, shown only in `text`.
    pub client_port: Option<u16>,
    /// Request method; `"-"` for refused requests.
    pub method: &'a str,
    /// Raw request target (path and query).
    pub target: &'a str,
    /// `"HTTP/1.1"`, `"HTTP/2.0"`, `"HTTP/1.0"`.
    pub protocol: &'a str,
    /// Response status.
    pub status: u16,
    /// Body bytes actually sent.
    pub bytes: u64,
    /// `Referer` header.
    pub referer: Option<&'a str>,
    /// `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// Time from request start to the line.
    pub duration: Duration,
    /// `Host` (or `:authority`).
    pub host: Option<&'a str>,
    /// `Range` header.
    pub range: Option<&'a str>,
    /// The client used HTTPS.
    pub https: bool,
    /// TLS version, e.g. `"TLSv1.3"`; `None` for plain connections.
    pub tls: Option<&'a str>,
    /// How the body was served: `hit`, `load`, `window`, `pread`, `compressed`, `listing`, `none`.
    pub cache: &'a str,
    /// The compressed variant served, e.g. `"br"`.
    pub coding: Option<&'a str>,
    /// `complete`, `failed`, `cancelled` or `refused`.
    pub ending: &'a str,
    /// Why a request was refused.
    pub why: Option<&'a str>,
}

/// Appends one line in `format`, trailing `'\n'` included, to `out`.
pub fn write(format: Format, line: &Line<'_>, out: &mut String) {
    match format {
        Format::Combined => clf(line, true, out),
        Format::Common => clf(line, false, out),
        Format::Json => json(line, out),
        Format::Text => text(line, out),
    }
    out.push('\n');
}

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// A UTC date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
}

/// Year, month (1-12) and day (1-31) of a day counted from 1970-01-01
/// (the listing's civil calendar, proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let (year, month, day, ..) = crate::listing::text::civil(days.saturating_mul(86_400));
    (year, month, day)
}

fn civil(time: SystemTime) -> Civil {
    let (secs, nanos) = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs - 1, 1_000_000_000 - n),
            }
        }
    };
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400) as u32;
    Civil { year, month, day, hour: of_day / 3600, minute: of_day / 60 % 60, second: of_day % 60, nanos }
}

/// `2026-11-29T09:52:01.123Z`, with `digits` (3 or 6) of the fraction.
fn rfc3339(time: SystemTime, digits: usize, out: &mut String) {
    let t = civil(time);
    let fraction = if digits == 3 { t.nanos / 1_000_000 } else { t.nanos / 1000 };
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    );
    let _ = write!(out, ".{fraction:0digits$}Z");
}

/// nginx's `escape=default`: `"`, `\`, controls and every byte from 0x7f
/// as `\xHH`.
fn escape_nginx(s: &str, out: &mut String) {
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
}

/// Combined (`referer_ua`) or common.
fn clf(line: &Line<'_>, referer_ua: bool, out: &mut String) {
    match line.client {
        Some(ip) => {
            let _ = write!(out, "{ip}");
        }
        None => out.push_str("unix:"),
    }
    let t = civil(line.time);
    let month = MONTHS[(t.month as usize - 1) % 12];
    let _ = write!(
        out,
        " - - [{:02}/{month}/{:04}:{:02}:{:02}:{:02} +0000] \"",
        t.day, t.year, t.hour, t.minute, t.second
    );
    if line.method == "-" {
        out.push('-');
    } else {
        escape_nginx(line.method, out);
        out.push(' ');
        escape_nginx(line.target, out);
        out.push(' ');
        escape_nginx(line.protocol, out);
    }
    let _ = write!(out, "\" {} {}", line.status, line.bytes);
    if referer_ua {
        for field in [line.referer, line.user_agent] {
            out.push_str(" \"");
            escape_nginx(field.unwrap_or("-"), out);
            out.push('"');
        }
    }
}

/// A JSON string literal.
fn json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Controls, and the separators JavaScript once took for line ends.
            c if c < ' ' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json(line: &Line<'_>, out: &mut String) {
    out.push_str("{\"time\":\"");
    rfc3339(line.time, 3, out);
    out.push_str("\",\"client\":");
    match line.client {
        Some(ip) => {
            let _ = write!(out, "\"{ip}\"");
        }
        None => out.push_str("\"unix\""),
    }
    let string = |out: &mut String, key: &str, value: Option<&str>| {
        let _ = write!(out, ",\"{key}\":");
        match value {
            Some(v) => json_str(v, out),
            None => out.push_str("null"),
        }
    };
    string(out, "method", Some(line.method));
    string(out, "target", Some(line.target));
    string(out, "protocol", Some(line.protocol));
    let _ = write!(out, ",\"status\":{},\"bytes\":{}", line.status, line.bytes);
    string(out, "referer", line.referer);
    string(out, "user_agent", line.user_agent);
    let _ = write!(out, ",\"duration_ms\":{:.3}", line.duration.as_secs_f64() * 1000.0);
    string(out, "host", line.host);
    string(out, "range", line.range);
    string(out, "scheme", Some(if line.https { "https" } else { "http" }));
    string(out, "tls", line.tls);
    string(out, "cache", Some(line.cache));
    string(out, "coding", line.coding);
    string(out, "ending", Some(line.ending));
    if line.why.is_some() {
        string(out, "why", line.why);
    }
    out.push('}');
}

/// A `text` value: bare, or Debug-quoted when it is empty or holds spaces,
/// quotes or controls (so that it stays one field of one line).
fn text_value(v: &str, out: &mut String) {
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"') {
        let _ = write!(out, "{v:?}");
    } else {
        out.push_str(v);
    }
}

fn text(line: &Line<'_>, out: &mut String) {
    rfc3339(line.time, 6, out);
    out.push_str("  INFO mapserve::access: client=");
    let _ = match (line.client, line.client_port) {
        (Some(ip), Some(port)) => write!(out, "{}", SocketAddr::new(ip, port)),
        (Some(ip), None) => write!(out, "{ip}"),
        (None, _) => write!(out, "unix"),
    };
    let refused = line.ending == "refused";
    if !refused {
        out.push_str(if line.https { " scheme=https" } else { " scheme=http" });
    }
    out.push_str(" method=");
    text_value(line.method, out);
    out.push_str(" target=");
    text_value(line.target, out);
    if !refused {
        out.push_str(" version=");
        text_value(line.protocol, out);
    }
    let _ = write!(
        out,
        " status={} bytes={} complete={} ending={:?}",
        line.status,
        line.bytes,
        line.ending == "complete",
        line.ending
    );
    if refused {
        if let Some(why) = line.why {
            let _ = write!(out, " why={why:?}");
        }
        return;
    }
    let _ = write!(out, " ms={:.3} cache=", line.duration.as_secs_f64() * 1000.0);
    text_value(line.cache, out);
    for (key, value) in [(" coding=", line.coding), (" host=", line.host), (" range=", line.range)] {
        if let Some(v) = value {
            out.push_str(key);
            text_value(v, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * i64::from((m + 9) % 12) + 2) / 5 + i64::from(d) - 1;
        era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
    }

    /// 2026-11-29T09:52:01.123456Z
    const AT: u64 = 20_786 * 86_400 + 9 * 3600 + 52 * 60 + 1;

    fn base() -> Line<'static> {
        Line {
            time: UNIX_EPOCH + Duration::new(AT, 123_456_789),
            client: Some(IpAddr::from([127, 0, 0, 1])),
            client_port: Some(50880),
            method: "GET",
            target: "/a.txt",
            protocol: "HTTP/1.1",
            status: 200,
            bytes: 1024,
            referer: None,
            user_agent: Some("curl/7.88.1"),
            duration: Duration::from_micros(1012),
            host: None,
            range: None,
            https: false,
            tls: None,
            cache: "hit",
            coding: None,
            ending: "complete",
            why: None,
        }
    }

    fn refused(status: u16, why: &'static str) -> Line<'static> {
        Line { method: "-", target: "-", bytes: 0, ending: "refused", why: Some(why), status, ..base() }
    }

    fn one(format: Format, line: &Line<'_>) -> String {
        let mut out = String::new();
        write(format, line, &mut out);
        assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        out.pop();
        out
    }

    #[test]
    fn formats_parse_and_print_their_names() {
        for f in [Format::Combined, Format::Common, Format::Json, Format::Text] {
            assert_eq!(f.as_str().parse::<Format>(), Ok(f));
            assert_eq!(f.to_string(), f.as_str());
        }
        assert_eq!(
            "xml".parse::<Format>(),
            Err("`xml` is not an access log format (combined, common, json, text)".to_owned())
        );
    }

    #[test]
    fn civil_dates_match_known_days() {
        for (days, ymd) in [
            (0, (1970, 1, 1)),
            (-1, (1969, 12, 31)),
            (-25_567, (1900, 1, 1)),
            (11_016, (2000, 2, 29)),
            (11_017, (2000, 3, 1)),
            (19_782, (2024, 2, 29)),
            (24_855, (2038, 1, 19)),
            (47_540, (2100, 2, 28)),
            (47_541, (2100, 3, 1)),
            (2_932_896, (9999, 12, 31)),
        ] {
            assert_eq!(civil_from_days(days), ymd, "day {days}");
            assert_eq!(days_from_civil(ymd.0, ymd.1, ymd.2), days);
        }
        for days in -800_000..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn civil_times_at_the_edges() {
        let at = |t: SystemTime| {
            let mut s = String::new();
            rfc3339(t, 6, &mut s);
            s
        };
        assert_eq!(at(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(UNIX_EPOCH - Duration::from_micros(1)), "1969-12-31T23:59:59.999999Z");
        assert_eq!(at(UNIX_EPOCH + Duration::from_secs(1 << 31)), "2038-01-19T03:14:08.000000Z");
        assert_eq!(at(UNIX_EPOCH + Duration::new(951_868_799, 5_000)), "2000-02-29T23:59:59.000005Z");
    }

    #[test]
    fn combined_and_common_lines() {
        let v6 = Line { client: "2001:db8::1".parse().ok(), referer: Some("http://x/"), ..base() };
        let unix = Line { client: None, user_agent: None, bytes: 0, status: 304, ..base() };
        let h2 = Line { method: "HEAD", protocol: "HTTP/2.0", ..base() };
        let (ua, at, get) =
            ("\"curl/7.88.1\"", "- - [29/Nov/2026:09:52:01 +0000]", "\"GET /a.txt HTTP/1.1\"");
        for (line, combined) in [
            (base(), format!("127.0.0.1 {at} {get} 200 1024 \"-\" {ua}")),
            (v6, format!("2001:db8::1 {at} {get} 200 1024 \"http://x/\" {ua}")),
            (unix, format!("unix: {at} {get} 304 0 \"-\" \"-\"")),
            (h2, format!("127.0.0.1 {at} \"HEAD /a.txt HTTP/2.0\" 200 1024 \"-\" {ua}")),
            (refused(414, "request line too long"), format!("127.0.0.1 {at} \"-\" 414 0 \"-\" {ua}")),
        ] {
            assert_eq!(one(Format::Combined, &line), combined);
            let common = combined.rsplitn(3, " \"").nth(2).unwrap_or_default();
            assert_eq!(one(Format::Common, &line), common);
        }
    }

    #[test]
    fn combined_escapes_like_nginx() {
        let line =
            Line {
                target: "/a\"b\\c\x01\x1f\x7f é", referer: Some("\n"), user_agent: Some("日"), ..base()
            };
        assert_eq!(
            one(Format::Combined, &line),
            "127.0.0.1 - - [29/Nov/2026:09:52:01 +0000] \"GET /a\\x22b\\x5Cc\\x01\\x1F\\x7F \\xC3\\xA9 HTTP/1.1\" \
             200 1024 \"\\x0A\" \"\\xE6\\x97\\xA5\""
        );
    }

    #[test]
    fn json_lines() {
        let line = Line { https: true, tls: Some("TLSv1.3"), coding: Some("br"), host: Some("h"), ..base() };
        assert_eq!(
            one(Format::Json, &line),
            r#"{"time":"2026-11-29T09:52:01.123Z","client":"127.0.0.1","method":"GET","target":"/a.txt","#
                .to_owned()
                + r#""protocol":"HTTP/1.1","status":200,"bytes":1024,"referer":null,"user_agent":"curl/7.88.1","#
                + r#""duration_ms":1.012,"host":"h","range":null,"scheme":"https","tls":"TLSv1.3","cache":"hit","#
                + r#""coding":"br","ending":"complete"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&one(Format::Json, &refused(400, "bad"))).unwrap();
        assert_eq!(
            (v["method"].as_str(), v["status"].as_u64(), v["why"].as_str()),
            (Some("-"), Some(400), Some("bad"))
        );
        let unix = Line { client: None, ..base() };
        let v: serde_json::Value = serde_json::from_str(&one(Format::Json, &unix)).unwrap();
        assert_eq!((v["client"].as_str(), v.get("why")), (Some("unix"), None));
    }

    #[test]
    fn json_lines_parse_whatever_the_target_holds() {
        for target in
            ["\"", "\\", "\\\"", "\u{0}\u{1f}\u{7f}", "\r\n", "\u{2028}\u{2029}", "é日🦀", "</script>", ""]
        {
            let line = Line { target, referer: Some(target), host: Some(target), ..base() };
            let v: serde_json::Value = serde_json::from_str(&one(Format::Json, &line)).unwrap();
            assert_eq!((v["target"].as_str(), v["referer"].as_str()), (Some(target), Some(target)));
        }
    }

    #[test]
    fn text_lines() {
        let head = "2026-11-29T09:52:01.123456Z  INFO mapserve::access: client=";
        let v6 = Line { client: "::1".parse().ok(), https: true, range: Some("bytes=0-1"), ..base() };
        let unix = Line { client: None, coding: Some("br"), host: Some("a b"), ..base() };
        let cancelled = Line { client_port: None, ending: "cancelled", target: "/x\"y\n", ..base() };
        let get = "method=GET target=/a.txt version=HTTP/1.1 status=200 bytes=1024";
        let ok = "complete=true ending=\"complete\" ms=1.012 cache=hit";
        let why = "ending=\"refused\" why=\"request line too long\"";
        for (line, text) in [
            (base(), format!("127.0.0.1:50880 scheme=http {get} {ok}")),
            (v6, format!("[::1]:50880 scheme=https {get} {ok} range=bytes=0-1")),
            (unix, format!("unix scheme=http {get} {ok} coding=br host=\"a b\"")),
            (
                cancelled,
                "127.0.0.1 scheme=http method=GET target=\"/x\\\"y\\n\" version=HTTP/1.1 status=200 \
                 bytes=1024 complete=false ending=\"cancelled\" ms=1.012 cache=hit"
                    .to_owned(),
            ),
            (
                refused(414, "request line too long"),
                format!("127.0.0.1:50880 method=- target=- status=414 bytes=0 complete=false {why}"),
            ),
        ] {
            assert_eq!(one(Format::Text, &line), format!("{head}{text}"));
        }
        let bad = one(Format::Text, &refused(400, "bad request"));
        assert!(bad.contains("status=400 bytes=0 complete=false ending=\"refused\""), "{bad}");
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::collection::vec(any::<char>(), 0..40).prop_map(String::from_iter),
            "[\"\\\\ \n\r\t\u{7f}\u{2028}é]{0,12}"
        ]
    }

    proptest! {
        #[test]
        fn every_format_writes_one_line(target in any_text(), ua in any_text(), host in any_text()) {
            let line = Line { target: &target, user_agent: Some(&ua), host: Some(&host), ..base() };
            for format in [Format::Combined, Format::Common, Format::Json, Format::Text] {
                let mut out = String::new();
                write(format, &line, &mut out);
                prop_assert_eq!(out.find('\n'), Some(out.len() - 1), "{}", out);
            }
            let json = one(Format::Json, &line);
            let v: serde_json::Value = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
            prop_assert_eq!(v["target"].as_str(), Some(target.as_str()));
            prop_assert_eq!(one(Format::Combined, &line).matches('"').count(), 6);
            prop_assert_eq!(one(Format::Common, &line).matches('"').count(), 2);
        }
    }
}
