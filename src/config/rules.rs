//! The response options: compression switches and limits, `--header`,
//! `[[headers]]` path rules and `--cors`, validated at start-up so that a bad
//! name, value, glob or origin stops the server and names the rule.

use super::ConfigError;
use super::file::{FileConfig, OneOrMany, Size};
use super::invalid;
use super::resolve::{flag, size};
use http::header::{HeaderName, HeaderValue};

/// One `[[headers]]` table: the glob and the headers it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRule {
    /// The glob, matched against the decoded URL path.
    pub glob: String,
    /// The headers, in name order.
    pub set: Vec<(HeaderName, HeaderValue)>,
}

/// The resolved response options.
#[derive(Debug, Clone, Default)]
pub struct ResponseRules {
    /// Compress compressible types on the fly.
    pub compress: bool,
    /// Smallest file compressed on the fly.
    pub compress_min: u64,
    /// Largest file compressed on the fly.
    pub compress_max: u64,
    /// Serve `file.br`/`file.zst`/`file.gz` for `file`.
    pub precompressed: bool,
    /// `--header`: added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `[[headers]]`, in order.
    pub header_rules: Vec<HeaderRule>,
    /// `--cors`: the allowed origins (`*` for any); `None`: off.
    pub cors: Option<Vec<String>>,
}

/// Headers a rule may not set: they frame the message, or they are facts
/// the server computes and checks preconditions against.
const RESERVED: &[&str] = &[
    "connection",
    "content-encoding",
    "content-length",
    "content-range",
    "etag",
    "keep-alive",
    "last-modified",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The command-line side of the response options.
#[derive(Debug, Default)]
pub struct CliRules {
    /// `--compress`.
    pub compress: Option<bool>,
    /// `--compress-min`.
    pub compress_min: Option<u64>,
    /// `--compress-max`.
    pub compress_max: Option<u64>,
    /// `--precompressed`.
    pub precompressed: Option<bool>,
    /// `--header`, repeated.
    pub header: Vec<String>,
    /// `--cors`.
    pub cors: Option<String>,
}

/// A header a rule sets, checked.
fn header(
    key: &'static str,
    rule: &str,
    name: &str,
    value: &str,
) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| invalid(key, format!("{rule}: `{name}` is not a header name")))?;
    if RESERVED.contains(&name.as_str()) {
        return Err(invalid(
            key,
            format!("{rule}: `{name}` is set by mapserve itself and cannot be overridden"),
        ));
    }
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| invalid(key, format!("{rule}: the value of `{name}` is not a valid header value")))?;
    Ok((name, value))
}

/// `Name: value`.
fn header_line(line: &str) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let Some((name, value)) = line.split_once(':') else {
        return Err(invalid("header", format!("`{line}` is not `Name: value`")));
    };
    header("header", &format!("`{line}`"), name, value)
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
fn origin(text: &str) -> Result<String, ConfigError> {
    let text = text.trim();
    let valid = text == "*"
        || text.split_once("://").is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                && !rest.is_empty()
                && !rest.contains(['/', '?', '#', ' ', ','])
        });
    if !valid || HeaderValue::from_str(text).is_err() {
        return Err(invalid("cors", format!("`{text}` is not `*` or an origin such as https://app.example")));
    }
    Ok(text.to_owned())
}

/// Resolves the response options from both layers.
pub fn resolve(cli: CliRules, file: &FileConfig) -> Result<ResponseRules, ConfigError> {
    let compress = flag("compress", cli.compress, file.compress.as_ref(), true)?;
    let precompressed = flag("precompressed", cli.precompressed, file.precompressed.as_ref(), true)?;
    let size_of = |key, cli, file: &Option<Size>, default| size(key, cli, file.clone(), default);
    let compress_min =
        size_of("compress-min", cli.compress_min, &file.compress_min, super::DEFAULT_COMPRESS_MIN)?;
    let compress_max =
        size_of("compress-max", cli.compress_max, &file.compress_max, super::DEFAULT_COMPRESS_MAX)?;
    if compress_min > compress_max {
        return Err(invalid("compress-min", "must not be larger than compress-max"));
    }
    let lines = if cli.header.is_empty() { file.header.clone().unwrap_or_default() } else { cli.header };
    let headers =
        lines.iter().filter(|l| !l.trim().is_empty()).map(|l| header_line(l)).collect::<Result<_, _>>()?;
    let mut header_rules = Vec::new();
    for (i, table) in file.headers.iter().flatten().enumerate() {
        let rule = format!("[[headers]] #{} (match = \"{}\")", i + 1, table.glob);
        // `*` stays within a segment, so only `/...` and `**...` can match
        // a path (which starts with `/`).
        if !table.glob.starts_with('/') && !table.glob.starts_with("**") {
            return Err(invalid(
                "headers",
                format!(
                    "{rule}: the glob must start with `/` or `**` (it matches URL paths, which start with `/`)"
                ),
            ));
        }
        glob(&table.glob).map_err(|e| invalid("headers", format!("{rule}: {e}")))?;
        if table.set.is_empty() {
            return Err(invalid("headers", format!("{rule}: `set` is empty")));
        }
        let set = table.set.iter().map(|(n, v)| header("headers", &rule, n, v)).collect::<Result<_, _>>()?;
        header_rules.push(HeaderRule { glob: table.glob.clone(), set });
    }
    let cors = match cli.cors.map(OneOrMany::One).or_else(|| file.cors.clone()) {
        None => None,
        Some(list) => {
            let origins: Vec<String> = list
                .into_vec()
                .iter()
                .flat_map(|s| s.split(','))
                .filter(|s| !s.trim().is_empty())
                .map(origin)
                .collect::<Result<_, _>>()?;
            (!origins.is_empty()).then_some(origins)
        }
    };
    Ok(ResponseRules { compress, compress_min, compress_max, precompressed, headers, header_rules, cors })
}

/// A glob as the rules use it: `*` and `?` stay within a segment. Checked
/// here at start-up, compiled with the same options by `http::rules`.
pub fn glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    globset::GlobBuilder::new(pattern).literal_separator(true).backslash_escape(true).build()
}
