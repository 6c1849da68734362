//! Slow reference models of the parsers, written straight from the RFCs
//! and the README with no shared code, for property tests and the fuzz
//! targets (`fuzz/`) to compare the fast implementations against. Compiled
//! only for tests and fuzzing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use super::conditional::Decision;
use super::encoding::Coding;

/// RFC 9110 §14.1: which byte offsets a `Range` header selects; `None` when
/// it is not a valid `bytes` range set or selects nothing. The unit is
/// case-insensitive (§14.1); list elements may be empty and carry optional
/// whitespace (§5.6.1); positions are `1*DIGIT`, any size (saturating).
pub fn range_selected(header: &str, len: u64) -> Option<Vec<bool>> {
    let (unit, rest) = header.split_once('=')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let digits = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(s.bytes().fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
    };
    let mut selected = vec![false; len as usize];
    let mut any = false;
    let mut specs = 0;
    for spec in rest.split(',') {
        let spec = spec.trim_matches([' ', '\t']);
        if spec.is_empty() {
            continue;
        }
        specs += 1;
        let (a, b) = spec.split_once('-')?;
        let (first, last) = if a.is_empty() {
            let n: u64 = digits(b)?;
            (len.saturating_sub(n), if n == 0 { None } else { len.checked_sub(1) })
        } else {
            let first: u64 = digits(a)?;
            let last: u64 = if b.is_empty() { u64::MAX } else { digits(b)? };
            if last < first {
                return None;
            }
            (first, Some(last.min(len.saturating_sub(1))))
        };
        if let Some(last) = last {
            if first < len {
                for i in first..=last {
                    selected[i as usize] = true;
                    any = true;
                }
            }
        }
    }
    (specs > 0 && any).then_some(selected)
}

/// RFC 9110 §12.5.3 with the README's preferences, on text: the coding to
/// send among `available` (identity always available), `None` if none.
pub fn accept_encoding(header: Option<&str>, available: &[Coding]) -> Option<Coding> {
    let order = [Coding::Br, Coding::Zstd, Coding::Gzip, Coding::Identity];
    let Some(header) = header else { return Some(Coding::Identity) };
    // q per name, in thousandths; any syntax error: as if absent.
    let mut q_of: Vec<(String, u32)> = Vec::new();
    for member in header.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let mut pieces = member.split(';');
        let name = pieces.next().unwrap_or_default().trim_matches([' ', '\t']).to_ascii_lowercase();
        let token_ok = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
        if !token_ok {
            return Some(Coding::Identity);
        }
        let mut q = 1000u32;
        for p in pieces {
            let p = p.trim_matches([' ', '\t']);
            let Some((k, v)) = p.split_once('=') else { return Some(Coding::Identity) };
            if !k.trim_matches([' ', '\t']).eq_ignore_ascii_case("q") {
                return Some(Coding::Identity);
            }
            let v = v.trim_matches([' ', '\t']);
            let ok = matches!(v, "0" | "1")
                || (v.len() >= 2
                    && v.len() <= 5
                    && v.starts_with("0.")
                    && v[2..].chars().all(|c| c.is_ascii_digit()))
                || (v.len() >= 2 && v.len() <= 5 && v.starts_with("1.") && v[2..].chars().all(|c| c == '0'));
            if !ok {
                return Some(Coding::Identity);
            }
            let frac = format!("{:0<3}", v.get(2..).unwrap_or(""));
            // `frac` is three ASCII digits (checked above).
            q = if v.starts_with('1') { 1000 } else { frac.parse().unwrap_or(0) };
        }
        let name = if name == "x-gzip" { "gzip".to_owned() } else { name };
        q_of.retain(|(n, _)| *n != name);
        q_of.push((name, q));
    }
    let star = q_of.iter().find(|(n, _)| n == "*").map(|(_, q)| *q);
    let q = |c: Coding| {
        q_of.iter()
            .find(|(n, _)| n == c.token())
            .map(|(_, q)| *q)
            .or(star)
            .unwrap_or(if c == Coding::Identity { 1 } else { 0 })
    };
    let mut best: Option<(u32, Coding)> = None;
    for c in order {
        if c != Coding::Identity && !available.contains(&c) {
            continue;
        }
        let qc = q(c);
        if qc > 0 && best.is_none_or(|(bq, _)| qc > bq) {
            best = Some((qc, c));
        }
    }
    best.map(|(_, c)| c)
}

/// What `path::parse` should give: the decoded segments and whether the path
/// ended in `/`, or the error kind (0 invalid, 1 hidden, 2 too long).
pub fn request_path(uri: &[u8], serve_hidden: bool) -> Result<(Vec<Vec<u8>>, bool), u8> {
    if uri.first() != Some(&b'/') {
        return Err(0);
    }
    let mut segments = Vec::new();
    let mut hidden = false;
    for raw in uri[1..].split(|&b| b == b'/').filter(|s| !s.is_empty()) {
        let mut seg = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'%' {
                let hex = std::str::from_utf8(raw.get(i + 1..i + 3).ok_or(0)?).map_err(|_| 0)?;
                if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(0);
                }
                seg.push(u8::from_str_radix(hex, 16).map_err(|_| 0)?);
                i += 3;
            } else {
                seg.push(raw[i]);
                i += 1;
            }
        }
        if seg == b"." || seg == b".." || seg.iter().any(|&b| b == 0 || b == b'/' || b == b'\\') {
            return Err(0);
        }
        if segments.is_empty() && seg.len() == 2 && seg[0].is_ascii_alphabetic() && seg[1] == b':' {
            return Err(0);
        }
        hidden |= seg.first() == Some(&b'.');
        segments.push(seg);
        let joined: usize = segments.iter().map(|s| s.len()).sum::<usize>() + segments.len() - 1;
        if joined > crate::path::MAX_PATH_BYTES {
            return Err(2);
        }
    }
    if hidden && !serve_hidden {
        return Err(1);
    }
    let trailing = uri.len() == 1 || uri.ends_with(b"/");
    Ok((segments, trailing))
}

/// A size as the README describes it.
pub fn size(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
    let unit = t[digits.len()..].trim().to_ascii_lowercase();
    let n: u64 = digits.parse().ok()?;
    let m: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1024,
        "m" | "mib" => 1024 * 1024,
        "g" | "gib" => 1024 * 1024 * 1024,
        "t" | "tib" => 1024u64.pow(4),
        "kb" => 1000,
        "mb" => 1000u64.pow(2),
        "gb" => 1000u64.pow(3),
        "tb" => 1000u64.pow(4),
        _ => return None,
    };
    n.checked_mul(m)
}

/// A duration as the README describes it, in milliseconds.
pub fn duration_ms(text: &str) -> Option<u128> {
    let t = text.trim();
    let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
    let unit = t[digits.len()..].trim().to_ascii_lowercase();
    let n: u128 = digits.parse::<u64>().ok()?.into();
    let ms = match unit.as_str() {
        "" | "s" | "sec" | "secs" => n * 1000,
        "ms" => n,
        "m" | "min" => u128::from(u64::try_from(n).ok()?.saturating_mul(60)) * 1000,
        "h" => u128::from(u64::try_from(n).ok()?.saturating_mul(3600)) * 1000,
        _ => return None,
    };
    Some(ms)
}

/// The request headers the precondition model reads, as text (`None`:
/// absent; several values: several field lines).
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    pub if_match: Vec<String>,
    pub if_none_match: Vec<String>,
    pub if_modified_since: Vec<String>,
    pub if_unmodified_since: Vec<String>,
    pub if_range: Option<String>,
    pub range: bool,
}

/// RFC 9110 §13.2.2, step by step, for a representation whose strong ETag is
/// `"{opaque}"` and whose Last-Modified is `last_modified` (strong or not).
pub fn preconditions(
    c: &Conditions,
    is_get: bool,
    opaque: &str,
    last_modified: Option<u64>,
    lm_strong: bool,
) -> Decision {
    // Entity tags of a list, as (weak, opaque); malformed members skipped.
    fn tags(values: &[String]) -> (bool, Vec<(bool, String)>) {
        let mut star = false;
        let mut out = Vec::new();
        for v in values {
            if v.trim_matches([' ', '\t']) == "*" {
                star = true;
                continue;
            }
            for m in v.split(',') {
                let m = m.trim_matches([' ', '\t']);
                let (weak, rest) = match m.strip_prefix("W/") {
                    Some(r) => (true, r),
                    None => (false, m),
                };
                if rest.len() >= 2 && rest.starts_with('"') && rest.ends_with('"') {
                    let inner = &rest[1..rest.len() - 1];
                    if inner.bytes().all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80) {
                        out.push((weak, inner.to_owned()));
                    }
                }
            }
        }
        (star, out)
    }
    fn date(values: &[String]) -> Option<u64> {
        match values {
            [one] => httpdate::parse_http_date(one.trim())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            _ => None,
        }
    }
    // 1 and 2.
    if !c.if_match.is_empty() {
        let (star, list) = tags(&c.if_match);
        if !star && !list.iter().any(|(weak, o)| !weak && o == opaque) {
            return Decision::PreconditionFailed;
        }
    } else if let (Some(since), Some(lm)) = (date(&c.if_unmodified_since), last_modified) {
        if lm > since {
            return Decision::PreconditionFailed;
        }
    }
    // 3 and 4.
    if !c.if_none_match.is_empty() {
        let (star, list) = tags(&c.if_none_match);
        if star || list.iter().any(|(_, o)| o == opaque) {
            return Decision::NotModified;
        }
    } else if let (Some(since), Some(lm)) = (date(&c.if_modified_since), last_modified) {
        if lm <= since {
            return Decision::NotModified;
        }
    }
    // 5.
    let use_range = match (&c.if_range, is_get && c.range) {
        (Some(v), true) => {
            let v = v.trim_matches([' ', '\t']);
            if v.starts_with("W/") {
                false
            } else if v.starts_with('"') {
                // One entity-tag (§13.1.5), not a list.
                v.len() >= 2 && v.ends_with('"') && &v[1..v.len() - 1] == opaque
            } else {
                match (date(std::slice::from_ref(&v.to_owned())), last_modified) {
                    (Some(d), Some(lm)) => lm_strong && d == lm,
                    _ => false,
                }
            }
        }
        _ => true,
    };
    Decision::Proceed { use_range }
}
