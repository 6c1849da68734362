//! Parsers for human-friendly sizes (`268435456`, `256MiB`, `1G`) and
//! durations (`10`, `10s`, `500ms`, `2m`, `1h`), shared by the command line,
//! the environment and the config file.
//!
//! Sizes: `k`, `m`, `g`, `t` and `KiB`..`TiB` are powers of 1024; `KB`..`TB`
//! are powers of 1000; no suffix (or `B`) means bytes. Case is ignored.
//! Durations: no suffix means seconds.

use std::time::Duration;

/// Parses a byte size.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (n, unit) = split_number(text, "a size: expected e.g. 268435456 or 256MiB")?;
    let multiplier: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}`: use B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB)"
            ));
        }
    };
    n.checked_mul(multiplier).ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (n, unit) = split_number(text, "a duration: expected e.g. 10s, 500ms, 2m")?;
    let duration = match unit.as_str() {
        "" | "s" | "sec" | "secs" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        other => return Err(format!("unknown duration unit `{other}` in `{text}`: use ms, s, m or h")),
    };
    Ok(duration)
}

/// Splits `123unit` into the number and the lower-cased, trimmed unit.
fn split_number(text: &str, what: &str) -> Result<(u64, String), String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!("`{text}` is not {what}"));
    }
    let n: u64 = digits.parse().map_err(|_| format!("`{text}` is too large"))?;
    Ok((n, unit.trim().to_ascii_lowercase()))
}

/// Formats a byte count for logs: `256 MiB`, `1.5 GiB`, `512 B`.
pub fn format_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if value.fract() == 0.0 { format!("{value:.0} {name}") } else { format!("{value:.1} {name}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("268435456"), Ok(268_435_456));
        assert_eq!(parse_size("256MiB"), Ok(268_435_456));
        assert_eq!(parse_size("256m"), Ok(268_435_456));
        assert_eq!(parse_size("256 MiB"), Ok(268_435_456));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2KB"), Ok(2000));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("abc").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("20000000TiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("1.5s").is_err());
    }

    proptest::proptest! {
        /// Both parsers agree with the README's description (the model).
        #[test]
        fn agree_with_the_model(n in "[0-9]{0,22}", space in "( |)", unit in "(|b|k|KiB|m|MiB|g|GiB|t|TiB|KB|MB|GB|TB|ms|s|sec|secs|min|h|x|Mb)") {
            let text = format!("{n}{space}{unit}");
            proptest::prop_assert_eq!(parse_size(&text).ok(), crate::http::model::size(&text), "{}", text);
            proptest::prop_assert_eq!(parse_duration(&text).ok().map(|d| d.as_millis()), crate::http::model::duration_ms(&text), "{}", text);
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(256 << 20), "256 MiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
    }
}
