//! The scrape-time [`Collector`]: encodes one snapshot of every value, in the
//! order and under the names the exposition documents, through
//! `prometheus-client`'s descriptor and metric encoders (whichever text
//! format they write).

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeMetric, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use super::Snapshot;
use super::expose::Gauges;
use super::process::Process;
use super::shard::{BOUNDS_NANOS, METHOD_LABELS, slot_status};

/// Everything one scrape encodes.
#[derive(Debug)]
pub(super) struct Scrape {
    /// The server's counters.
    pub(super) snapshot: Snapshot,
    /// The rest of the server's values.
    pub(super) gauges: Gauges,
    /// The process's values.
    pub(super) process: Process,
}

/// Encodes one unlabelled counter.
fn counter<N>(e: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<&Unit>, v: N) -> fmt::Result
where
    N: EncodeCounterValue,
{
    let m = e.encode_descriptor(name, help, unit, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

/// Encodes one unlabelled gauge.
fn gauge<N>(e: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<&Unit>, v: N) -> fmt::Result
where
    N: EncodeGaugeValue,
{
    let m = e.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

/// Encodes a counter with one label, a series per `(value, count)`.
fn counters(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    series: &[(&str, u64)],
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for &(value, n) in series {
        let labels = [(label, value)];
        ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Encodes a gauge with one label, a series per `(value, v)`; nothing at all
/// without series.
fn gauges(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    label: &str,
    series: &[(&str, u64)],
) -> fmt::Result {
    if series.is_empty() {
        return Ok(());
    }
    let mut m = e.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for &(value, v) in series {
        let labels = [(label, value)];
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let (bytes, seconds) = (Unit::Bytes, Unit::Seconds);
        let (s, g, p) = (&self.snapshot, &self.gauges, &self.process);

        let mut m = e.encode_descriptor(
            "mapserve_http_requests",
            "HTTP requests finished, by status code and method.",
            None,
            MetricType::Counter,
        )?;
        for &(method, status, n) in &s.requests {
            let code = slot_status(status).map_or_else(|| "other".to_owned(), |c| c.to_string());
            let method = METHOD_LABELS.get(method).copied().unwrap_or("other");
            let labels = [("code", code.as_str()), ("method", method)];
            ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
        }
        let help = "HTTP response body bytes sent.";
        counter(&mut e, "mapserve_http_response_body", help, Some(&bytes), s.body_bytes)?;

        let mut m = e.encode_descriptor(
            "mapserve_http_request_duration",
            "HTTP request durations, from request start to response end.",
            Some(&seconds),
            MetricType::Histogram,
        )?;
        let buckets: Vec<(f64, u64)> = BOUNDS_NANOS
            .iter()
            .map(|&nanos| nanos as f64 / 1e9)
            .chain([f64::INFINITY])
            .zip(s.buckets)
            .collect();
        let count = s.buckets.iter().fold(0u64, |a, &b| a.wrapping_add(b));
        m.encode_histogram::<NoLabelSet>(s.sum_seconds, count, &buckets, None)?;

        gauge(&mut e, "mapserve_connections_open", "Connections open.", None, s.open)?;
        let help = "Connections accepted.";
        counter(&mut e, "mapserve_connections_accepted", help, None, s.accepted)?;
        let help = "Connections refused, by reason.";
        counters(&mut e, "mapserve_connections_refused", help, "reason", &s.refused)?;
        let help = "Connections closed by a timeout, by kind.";
        counters(&mut e, "mapserve_timeouts", help, "kind", &s.timeouts)?;

        let entries: Vec<(&str, u64)> = g.cache_by_kind.iter().map(|&(k, n, _)| (k, n)).collect();
        let sizes: Vec<(&str, u64)> = g.cache_by_kind.iter().map(|&(k, _, b)| (k, b)).collect();
        let help = "Cache entries, by kind.";
        gauges(&mut e, "mapserve_cache_entries", help, None, "kind", &entries)?;
        let help = "Cache bytes, by kind.";
        gauges(&mut e, "mapserve_cache", help, Some(&bytes), "kind", &sizes)?;
        let help = "Cache lookups that found an entry.";
        counter(&mut e, "mapserve_cache_hits", help, None, g.cache_hits)?;
        let help = "Cache lookups that found no entry.";
        counter(&mut e, "mapserve_cache_misses", help, None, g.cache_misses)?;
        let help = "Entries loaded into the cache.";
        counter(&mut e, "mapserve_cache_loads", help, None, g.cache_loads)?;
        let help = "Entries evicted from the cache.";
        counter(&mut e, "mapserve_cache_evictions", help, None, g.cache_evictions)?;
        let help = "The cache's byte budget.";
        gauge(&mut e, "mapserve_cache_limit", help, Some(&bytes), g.cache_limit_bytes)?;
        let help = "Cache bytes pinned through the admin API.";
        gauge(&mut e, "mapserve_cache_pinned", help, Some(&bytes), g.cache_pinned_bytes)?;
        let help = "Bytes of live file mappings.";
        gauge(&mut e, "mapserve_mapped", help, Some(&bytes), g.mapped_bytes)?;
        let help = "Cached mappings' bytes found in memory at the last sweep.";
        gauge(&mut e, "mapserve_resident", help, Some(&bytes), g.resident_bytes)?;
        let help = "Mappings repaired after a SIGBUS.";
        counter(&mut e, "mapserve_sigbus_repairs", help, None, g.sigbus_repairs)?;
        let unmaps = [("inline", g.unmaps_inline), ("reaper", g.unmaps_reaper)];
        let help = "Mappings unmapped, by path: inline or by the reaper.";
        counters(&mut e, "mapserve_unmaps", help, "path", &unmaps)?;
        let help = "Spans served by pread instead of a mapping.";
        counter(&mut e, "mapserve_pread_spans", help, None, g.pread_spans)?;
        let help = "File watch event queue overflows.";
        counter(&mut e, "mapserve_watch_overflows", help, None, g.watch_overflows)?;
        let help = "Access log lines dropped.";
        counter(&mut e, "mapserve_access_log_dropped", help, None, g.access_log_dropped)?;
        let help = "Responses compressed.";
        counter(&mut e, "mapserve_compressions", help, None, g.compressions)?;

        if let Some(v) = p.cpu_seconds {
            let help = "Total user and system CPU time spent in seconds.";
            counter(&mut e, "process_cpu", help, Some(&seconds), v)?;
        }
        if let Some(v) = p.resident_bytes {
            let help = "Resident memory size in bytes.";
            gauge(&mut e, "process_resident_memory", help, Some(&bytes), v)?;
        }
        if let Some(v) = p.open_fds {
            gauge(&mut e, "process_open_fds", "Number of open file descriptors.", None, v)?;
        }
        if let Some(v) = p.max_fds {
            let help = "Maximum number of open file descriptors.";
            gauge(&mut e, "process_max_fds", help, None, v)?;
        }
        if let Some(v) = p.start_seconds {
            let help = "Start time of the process since unix epoch in seconds.";
            gauge(&mut e, "process_start_time", help, Some(&seconds), v)?;
        }
        Ok(())
    }
}
