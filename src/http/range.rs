//! `Range` request handling (RFC 9110 §14): parse the header, then resolve it
//! against a representation length into one of four outcomes.
//!
//! Pure: no I/O, no allocation beyond the returned range list. Every number is
//! parsed with saturation and every length computed with checked arithmetic,
//! so `u64` edge values cannot overflow.
//!
//! Policy, where the RFC leaves a choice to the server:
//! * a header with an unknown unit, or with a syntax error, is ignored (200);
//! * overlapping and adjacent ranges are coalesced; parts keep the order in
//!   which the client asked for them (§14.2);
//! * more than `max_ranges` ranges, or ranges that add up to more than the
//!   representation, are answered with the whole representation (200): that is
//!   the amplification guard;
//! * a zero-length representation has no satisfiable first-pos range (416),
//!   and a suffix range against it is answered with the (empty) whole.

/// One inclusive byte range `first..=last`, already checked against the
/// representation length (`first <= last < len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte offset, inclusive.
    pub first: u64,
    /// Last byte offset, inclusive.
    pub last: u64,
}

impl ByteRange {
    /// Number of bytes in the range (never zero).
    pub fn len(&self) -> u64 {
        self.last.saturating_sub(self.first).saturating_add(1)
    }

    /// Always false: a resolved range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What the server should send for a `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Ignore the header and send the whole representation with 200.
    Full,
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
    /// One range: 206 with `Content-Range`.
    Single(ByteRange),
    /// Several disjoint ranges: 206 `multipart/byteranges`, in this order.
    Multi(Vec<ByteRange>),
}

/// One `range-spec` as written by the client, before the length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first-` or `first-last`.
    FromTo(u64, Option<u64>),
    /// `-suffix`: the last `suffix` bytes.
    Suffix(u64),
}

/// Result of parsing the header text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedRange {
    /// Not a `bytes` range, or not valid syntax: to be ignored.
    Ignore,
    /// A syntactically valid `bytes` range set (never empty).
    Bytes(Vec<RangeSpec>),
}

/// Most range-specs parsed from one header; beyond this the header is ignored
/// without looking further (a cheap guard before `max_ranges` applies).
const PARSE_LIMIT: usize = 1024;

/// Parses a `Range` field value (RFC 9110 §14.1.1). The unit is matched
/// case-insensitively; empty list elements are allowed (§5.6.1).
pub fn parse(value: &[u8]) -> ParsedRange {
    let Some(eq) = value.iter().position(|&b| b == b'=') else {
        return ParsedRange::Ignore;
    };
    let (unit, set) = value.split_at(eq);
    if !unit.eq_ignore_ascii_case(b"bytes") {
        return ParsedRange::Ignore;
    }
    let set = set.get(1..).unwrap_or_default();
    let mut specs = Vec::new();
    for element in set.split(|&b| b == b',') {
        let element = trim_ows(element);
        if element.is_empty() {
            continue;
        }
        if specs.len() >= PARSE_LIMIT {
            return ParsedRange::Ignore;
        }
        match parse_spec(element) {
            Some(spec) => specs.push(spec),
            None => return ParsedRange::Ignore,
        }
    }
    if specs.is_empty() { ParsedRange::Ignore } else { ParsedRange::Bytes(specs) }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn parse_spec(element: &[u8]) -> Option<RangeSpec> {
    let dash = element.iter().position(|&b| b == b'-')?;
    let (first, rest) = element.split_at(dash);
    let last = rest.get(1..)?;
    if first.is_empty() {
        return Some(RangeSpec::Suffix(parse_digits(last)?));
    }
    let first = parse_digits(first)?;
    if last.is_empty() {
        return Some(RangeSpec::FromTo(first, None));
    }
    let last = parse_digits(last)?;
    // RFC 9110 §14.1.1: a last-pos below first-pos makes the spec invalid.
    (last >= first).then_some(RangeSpec::FromTo(first, Some(last)))
}

/// Parses `1*DIGIT`, saturating at `u64::MAX` (a huge offset means the same
/// as `u64::MAX` for every comparison we make).
fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |acc, &d| acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

/// Parses and resolves a `Range` field value in one step. The common case,
/// one range-spec, takes a path that allocates nothing.
pub fn evaluate(value: &[u8], len: u64, max_ranges: usize) -> RangeOutcome {
    if !value.contains(&b',') {
        if let Some(eq) = value.iter().position(|&b| b == b'=') {
            let (unit, spec) = value.split_at(eq);
            let spec = trim_ows(spec.get(1..).unwrap_or_default());
            if unit.eq_ignore_ascii_case(b"bytes") && !spec.is_empty() {
                return match parse_spec(spec) {
                    Some(spec) => resolve_one(spec, len),
                    None => RangeOutcome::Full,
                };
            }
        }
    }
    resolve(&parse(value), len, max_ranges)
}

/// One range-spec against `len` bytes (same rules as [`resolve`]).
fn resolve_one(spec: RangeSpec, len: u64) -> RangeOutcome {
    match spec {
        RangeSpec::FromTo(first, _) if first >= len => RangeOutcome::Unsatisfiable,
        RangeSpec::FromTo(first, last) => {
            let end = len.saturating_sub(1);
            RangeOutcome::Single(ByteRange { first, last: last.map_or(end, |l| l.min(end)) })
        }
        RangeSpec::Suffix(0) => RangeOutcome::Unsatisfiable,
        RangeSpec::Suffix(_) if len == 0 => RangeOutcome::Full,
        RangeSpec::Suffix(n) => {
            RangeOutcome::Single(ByteRange { first: len.saturating_sub(n), last: len - 1 })
        }
    }
}

/// Resolves a parsed header against a representation of `len` bytes.
pub fn resolve(parsed: &ParsedRange, len: u64, max_ranges: usize) -> RangeOutcome {
    let ParsedRange::Bytes(specs) = parsed else {
        return RangeOutcome::Full;
    };
    let mut wanted: Vec<ByteRange> = Vec::with_capacity(specs.len());
    let mut any_suffix = false;
    for spec in specs {
        match *spec {
            RangeSpec::FromTo(first, last) => {
                if first >= len {
                    continue;
                }
                let end = len.saturating_sub(1);
                let last = last.map_or(end, |l| l.min(end));
                wanted.push(ByteRange { first, last });
            }
            RangeSpec::Suffix(0) => {}
            RangeSpec::Suffix(n) => {
                any_suffix = true;
                if len == 0 {
                    continue;
                }
                let first = len.saturating_sub(n);
                wanted.push(ByteRange { first, last: len.saturating_sub(1) });
            }
        }
    }
    if wanted.is_empty() {
        return if len == 0 && any_suffix { RangeOutcome::Full } else { RangeOutcome::Unsatisfiable };
    }
    if wanted.len() > max_ranges.max(1) {
        return RangeOutcome::Full;
    }
    let total = wanted.iter().try_fold(0u64, |acc, r| acc.checked_add(r.len()));
    if wanted.len() > 1 && total.is_none_or(|t| t > len) {
        return RangeOutcome::Full;
    }
    let merged = coalesce(wanted);
    match merged.as_slice() {
        [one] => RangeOutcome::Single(*one),
        _ => RangeOutcome::Multi(merged),
    }
}

/// Merges overlapping and adjacent ranges. Each merged range takes the
/// position of the earliest-requested range it absorbed.
fn coalesce(wanted: Vec<ByteRange>) -> Vec<ByteRange> {
    let mut indexed: Vec<(usize, ByteRange)> = wanted.into_iter().enumerate().collect();
    indexed.sort_by_key(|(_, r)| r.first);
    let mut merged: Vec<(usize, ByteRange)> = Vec::with_capacity(indexed.len());
    for (index, range) in indexed {
        if let Some((first_index, last)) = merged.last_mut() {
            if range.first <= last.last.saturating_add(1) {
                last.last = last.last.max(range.last);
                *first_index = (*first_index).min(index);
                continue;
            }
        }
        merged.push((index, range));
    }
    merged.sort_by_key(|(index, _)| *index);
    merged.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests;
