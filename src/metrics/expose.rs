//! The exposition: a [`Metrics`] snapshot, scrape-time [`Gauges`] and the
//! process metrics, encoded by `prometheus-client` as OpenMetrics text or as
//! the classic Prometheus text format (0.0.4).
//!
//! A fresh registry per scrape holds one collector that owns everything it
//! encodes, read once: the hot-path counters are only ever read here.
//!
//! Which format: serve OpenMetrics only when the scraper asks for it
//! ([`Format::from_accept`]). Prometheus does; `curl` and `promtool check
//! metrics` do not, and promtool parses the classic format only: it reports
//! every OpenMetrics counter ("# TYPE x counter" then "x_total 1") as
//! "x_total no help text".

use prometheus_client::registry::Registry;

use super::Metrics;
use super::collect::Scrape;
use super::process::Process;

/// Values read at scrape time from the rest of the server (cache, log sink, process).
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    /// Per cache entry kind (copy, mapping, window, compressed, listing,
    /// directory): (kind, entries, bytes).
    pub cache_by_kind: Vec<(&'static str, u64, u64)>,
    /// Cache lookups that found an entry.
    pub cache_hits: u64,
    /// Cache lookups that found none.
    pub cache_misses: u64,
    /// Entries loaded into the cache.
    pub cache_loads: u64,
    /// Entries evicted from the cache.
    pub cache_evictions: u64,
    /// The cache's byte budget.
    pub cache_limit_bytes: u64,
    /// Cache bytes pinned through the admin API.
    pub cache_pinned_bytes: u64,
    /// Bytes of live mappings.
    pub mapped_bytes: u64,
    /// Cached mappings' bytes found in memory at the last sweep.
    pub resident_bytes: u64,
    /// Mappings repaired after a SIGBUS.
    pub sigbus_repairs: u64,
    /// Mappings unmapped on the request path.
    pub unmaps_inline: u64,
    /// Mappings unmapped by the reaper.
    pub unmaps_reaper: u64,
    /// Spans served by `pread` instead of a mapping.
    pub pread_spans: u64,
    /// File-watch event queue overflows.
    pub watch_overflows: u64,
    /// Access log lines dropped.
    pub access_log_dropped: u64,
    /// Responses compressed.
    pub compressions: u64,
}

/// The Content-Type of [`encode`]'s output (prometheus-client's OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The Content-Type of the classic Prometheus text format (0.0.4).
pub const PROMETHEUS_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text: what Prometheus asks for.
    OpenMetrics,
    /// The Prometheus text format 0.0.4: what everything understands.
    Prometheus,
}

impl Format {
    /// The format for a request's `Accept` header: OpenMetrics when it
    /// accepts `application/openmetrics-text` (with q > 0), else Prometheus.
    pub fn from_accept(accept: Option<&str>) -> Self {
        let wants_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or("");
                media.eq_ignore_ascii_case("application/openmetrics-text")
                    && parts
                        .filter_map(|p| p.split_once('='))
                        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                        .all(|(_, q)| q.trim().parse::<f32>().is_ok_and(|q| q > 0.0))
            })
        });
        if wants_openmetrics { Format::OpenMetrics } else { Format::Prometheus }
    }

    /// The Content-Type to serve this format with.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => CONTENT_TYPE,
            Format::Prometheus => PROMETHEUS_CONTENT_TYPE,
        }
    }
}

/// The OpenMetrics text of `metrics` plus `gauges` plus process metrics.
pub fn encode(metrics: &Metrics, gauges: &Gauges) -> String {
    encode_as(metrics, gauges, Format::OpenMetrics)
}

/// The text of `metrics` plus `gauges` plus process metrics, in `format`.
pub fn encode_as(metrics: &Metrics, gauges: &Gauges, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        snapshot: metrics.snapshot(),
        gauges: gauges.clone(),
        process: Process::read(super::started()),
    }));
    let mut out = String::with_capacity(8 * 1024);
    let encoded = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry),
    };
    if encoded.is_err() {
        // Writing to a String cannot fail; our own encoding does not either.
        tracing::warn!("metrics exposition incomplete");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::http::Method;
    use std::time::Duration;

    /// An encoding of a fresh instance with a few requests, in `format`.
    fn sample(metrics: &'static Metrics, format: Format) -> String {
        for _ in 0..3 {
            metrics.request(&Method::GET, 200, 100, Duration::from_micros(100));
        }
        metrics.request(&Method::HEAD, 404, 0, Duration::from_secs(1));
        metrics.request(&Method::PATCH, 0, 0, Duration::from_secs(301));
        metrics.connection_accepted();
        metrics.timeout(Timeout::Send);
        let gauges = Gauges {
            cache_by_kind: vec![("copy", 2, 64), ("mapping", 1, 4096)],
            cache_limit_bytes: 1 << 30,
            unmaps_reaper: 7,
            ..Gauges::default()
        };
        encode_as(metrics, &gauges, format)
    }

    use super::super::Timeout;

    /// The value of the sample line starting with `series `.
    fn value<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    /// Checks what both formats share.
    fn check_common(text: &str) {
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"mapserve_http_requests_total{code=\"200\",method=\"GET\"} 3"));
        assert!(lines.contains(&"mapserve_http_requests_total{code=\"404\",method=\"HEAD\"} 1"));
        assert!(lines.contains(&"mapserve_http_requests_total{code=\"other\",method=\"other\"} 1"));
        assert!(!text.contains("method=\"OPTIONS\""), "zero pairs are left out");
        assert_eq!(value(text, "mapserve_http_response_body_bytes_total"), Some("300"));
        let buckets: Vec<(&str, u64)> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("mapserve_http_request_duration_seconds_bucket{le=\""))
            .filter_map(|l| l.split_once("\"} "))
            .map(|(le, n)| (le, n.parse().unwrap_or(u64::MAX)))
            .collect();
        assert_eq!(buckets.len(), 20);
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative");
        assert_eq!(buckets[0], ("0.0001", 3), "100us is in le=0.0001");
        assert_eq!(buckets[12].1, 4, "1s is in le=1");
        assert_eq!(buckets[18].1, 4, "301s is above le=300");
        assert_eq!(buckets[19], ("+Inf", 5));
        assert_eq!(value(text, "mapserve_http_request_duration_seconds_count"), Some("5"));
        assert_eq!(value(text, "mapserve_http_request_duration_seconds_sum"), Some("302.0003"));
        assert_eq!(value(text, "mapserve_connections_open"), Some("1"));
        assert_eq!(value(text, "mapserve_connections_accepted_total"), Some("1"));
        for reason in ["proxy_header", "tls_handshake"] {
            let series = format!("mapserve_connections_refused_total{{reason=\"{reason}\"}}");
            assert_eq!(value(text, &series), Some("0"));
        }
        for (kind, n) in [("header", "0"), ("idle", "0"), ("send", "1"), ("handshake", "0")] {
            assert_eq!(value(text, &format!("mapserve_timeouts_total{{kind=\"{kind}\"}}")), Some(n));
        }
        assert_eq!(value(text, "mapserve_cache_entries{kind=\"copy\"}"), Some("2"));
        assert_eq!(value(text, "mapserve_cache_bytes{kind=\"mapping\"}"), Some("4096"));
        assert_eq!(value(text, "mapserve_cache_limit_bytes"), Some("1073741824"));
        assert_eq!(value(text, "mapserve_unmaps_total{path=\"reaper\"}"), Some("7"));
        assert_eq!(value(text, "mapserve_compressions_total"), Some("0"));
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(value(text, name).is_some(), "{name} missing");
        }
        let types = lines.iter().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = lines.iter().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!((types, helps), (28, 28));
    }

    #[test]
    fn encodes_openmetrics() {
        static M: Metrics = Metrics::new();
        let text = encode(&M, &Gauges::default());
        assert!(text.ends_with("# EOF\n"));
        assert!(!text.contains("mapserve_cache_entries"), "no kinds, no family");
        let text = sample(&M, Format::OpenMetrics);
        check_common(&text);
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("# TYPE mapserve_http_requests counter\n"));
        assert!(text.contains("# UNIT mapserve_http_request_duration_seconds seconds\n"));
        assert!(text.contains("mapserve_http_request_duration_seconds_bucket{le=\"1.0\"} 4\n"));
    }

    #[test]
    fn encodes_prometheus_text() {
        static M: Metrics = Metrics::new();
        let text = sample(&M, Format::Prometheus);
        check_common(&text);
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
        assert!(text.contains("# TYPE mapserve_http_requests_total counter\n"));
        assert!(text.contains("# HELP process_cpu_seconds_total "));
        assert!(text.contains("mapserve_http_request_duration_seconds_bucket{le=\"1\"} 4\n"));
    }

    #[test]
    fn negotiates_the_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("Application/OpenMetrics-Text; q=0.3")), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("application/openmetrics-text;q=0")), Format::Prometheus);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Prometheus);
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert_eq!(Format::OpenMetrics.content_type(), CONTENT_TYPE);
        assert_eq!(Format::Prometheus.content_type(), "text/plain; version=0.0.4; charset=utf-8");
    }
}
