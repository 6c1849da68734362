//! `/cache`: the cache as JSON, and the actions on it. `?sort=` orders the
//! entries (`path` ascending; `bytes`, `resident`, `hits`, `idle` and
//! `in_flight` largest first) and `?limit=` keeps the first N. Actions take
//! `path=` (a URL path, percent-encoded), `glob=` (over paths relative to
//! ROOT), or `all=1` (evict and unpin only).

use super::{AdminState, Body, json, text};
use crate::cache::admin::actions::Select;
use crate::cache::admin::walk;
use crate::cache::admin::{BudgetView, EntryView};
use http::{Response, StatusCode};
use serde::Serialize;

#[derive(Serialize)]
struct Listing {
    budget: BudgetView,
    counters: Counters,
    mapped_bytes: u64,
    resident_bytes: u64,
    uptime_seconds: f64,
    entries: Vec<EntryView>,
}

#[derive(Serialize)]
struct Counters {
    requests: u64,
    response_bytes: u64,
    hits: u64,
    misses: u64,
    loads: u64,
    evictions: u64,
}

/// `GET /cache`.
pub(super) async fn list(state: &AdminState, query: &str) -> Response<Body> {
    let mut entries = state.cache.entries().await;
    let resident_bytes = entries.iter().map(|e| e.resident_bytes).sum();
    let sort = param(query, "sort").unwrap_or_default();
    match sort.as_str() {
        "" | "path" => entries.sort_by(|a, b| a.path.cmp(&b.path).then(a.window.cmp(&b.window))),
        "bytes" => entries.sort_by_key(|e| std::cmp::Reverse(e.bytes)),
        "resident" => entries.sort_by_key(|e| std::cmp::Reverse(e.resident_bytes)),
        "hits" => entries.sort_by_key(|e| std::cmp::Reverse(e.hits)),
        "idle" => entries.sort_by(|a, b| b.idle_seconds.total_cmp(&a.idle_seconds)),
        "in_flight" => entries.sort_by_key(|e| std::cmp::Reverse(e.in_flight)),
        other => {
            let why = format!("sort={other}: use path, bytes, resident, hits, idle or in_flight\n");
            return text(StatusCode::BAD_REQUEST, &why);
        }
    }
    if let Some(limit) = param(query, "limit") {
        match limit.parse::<usize>() {
            Ok(n) => entries.truncate(n),
            Err(_) => return text(StatusCode::BAD_REQUEST, "limit must be a number\n"),
        }
    }
    let stats = state.cache.stats();
    let (requests, response_bytes) = crate::metrics::global().totals();
    json(
        StatusCode::OK,
        &Listing {
            budget: state.cache.budget_view(),
            counters: Counters {
                requests,
                response_bytes,
                hits: stats.hits,
                misses: stats.misses,
                loads: stats.loads,
                evictions: state.cache.evictions(),
            },
            mapped_bytes: crate::mmap::mapped_bytes(),
            resident_bytes,
            uptime_seconds: state.started.elapsed().as_secs_f64(),
            entries,
        },
    )
}

/// `POST /cache/{prewarm,evict,pin,unpin}`.
pub(super) async fn act(state: &AdminState, path: &str, query: &str) -> Response<Body> {
    let hidden = state.app.load().hidden;
    let select = match selection(query, hidden) {
        Ok(s) => s,
        Err(why) => return text(StatusCode::BAD_REQUEST, &format!("{why}\n")),
    };
    let cache = &state.cache;
    match path {
        "/cache/evict" => json(StatusCode::OK, &serde_json::json!({ "evicted": cache.evict(select).await })),
        "/cache/unpin" => json(StatusCode::OK, &serde_json::json!({ "unpinned": cache.unpin(&select) })),
        _ => {
            let keys = match select {
                Select::Path(key) => vec![key],
                Select::Glob(glob) => {
                    let (keys, truncated) = cache.find(glob, hidden).await;
                    if truncated {
                        tracing::warn!(limit = walk::WALK_MAX, "glob walk stopped early");
                    }
                    keys
                }
                Select::All => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "all=1 is for evict and unpin; name a path or glob\n",
                    );
                }
            };
            if path == "/cache/pin" {
                json(StatusCode::OK, &cache.pin(keys).await)
            } else {
                json(StatusCode::OK, &cache.prewarm(keys).await)
            }
        }
    }
}

/// The one selection the query makes.
fn selection(query: &str, hidden: bool) -> Result<Select, String> {
    let path = param(query, "path");
    let glob = param(query, "glob");
    let all = param(query, "all").is_some_and(|v| v == "1" || v == "true");
    match (path, glob, all) {
        // The path as `/cache` shows it (ROOT itself is `/`).
        (Some(path), None, false) if path == "/" => Ok(Select::Path(Vec::new())),
        (Some(path), None, false) => match walk::key(&path, hidden) {
            Some(key) if path.starts_with('/') => Ok(Select::Path(key)),
            _ => Err(format!("path={path}: not a servable path (a URL path such as /dir/file)")),
        },
        (None, Some(glob), false) => walk::pattern(&glob).map(Select::Glob),
        (None, None, true) => Ok(Select::All),
        _ => Err("give exactly one of path=, glob= or all=1".to_owned()),
    }
}

/// A query parameter as sent (still percent-encoded).
fn raw_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// A query parameter, percent-decoded (`+` is a space); `None` when absent
/// or not UTF-8.
fn param(query: &str, name: &str) -> Option<String> {
    let raw = raw_param(query, name)?.replace('+', " ");
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|&c| (c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_decode_and_select_one_thing() {
        assert_eq!(param("a=1&glob=%2A%2A%2F%2A.bin", "glob").as_deref(), Some("**/*.bin"));
        assert_eq!(param("x=a+b", "x").as_deref(), Some("a b"));
        assert!(matches!(selection("path=/a%20b.txt", false), Ok(Select::Path(k)) if k == b"a b.txt"));
        assert!(matches!(selection("path=%2Fd%2Fa.bin", false), Ok(Select::Path(k)) if k == b"d/a.bin"));
        assert!(matches!(selection("path=/", false), Ok(Select::Path(k)) if k.is_empty()));
        assert!(matches!(selection("all=1", false), Ok(Select::All)));
        for bad in ["", "path=/a&glob=*", "path=/../x", "path=/.env", "glob=a[", "path=a.bin", "path=/a//b"] {
            assert!(selection(bad, false).is_err(), "{bad}");
        }
    }
}
