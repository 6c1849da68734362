//! The standard `process_*` values, read from `/proc/self` and the kernel at
//! scrape time. A value that cannot be read is `None` and its metric is left
//! out of the exposition.

use std::time::{SystemTime, UNIX_EPOCH};

/// The process values of one scrape.
#[derive(Debug, Clone, Default)]
pub(super) struct Process {
    /// Resident set size, in bytes.
    pub(super) resident_bytes: Option<u64>,
    /// Open file descriptors.
    pub(super) open_fds: Option<u64>,
    /// The soft descriptor limit (`None` too when unlimited).
    pub(super) max_fds: Option<u64>,
    /// User plus system CPU time, in seconds.
    pub(super) cpu_seconds: Option<f64>,
    /// Process start, in seconds since the Unix epoch.
    pub(super) start_seconds: Option<f64>,
}

impl Process {
    /// Reads every value now; `started` is the process start time.
    pub(super) fn read(started: SystemTime) -> Self {
        Self {
            resident_bytes: resident_bytes(),
            open_fds: open_fds(),
            max_fds: rustix::process::getrlimit(rustix::process::Resource::Nofile).current,
            cpu_seconds: cpu_seconds(),
            start_seconds: started.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs_f64()),
        }
    }
}

/// Resident pages (the second field of `/proc/self/statm`) times the page size.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    resident_from_statm(&statm, rustix::param::page_size())
}

/// The resident bytes of a `statm` line.
fn resident_from_statm(statm: &str, page_size: usize) -> Option<u64> {
    let pages: u64 = statm.split_ascii_whitespace().nth(1)?.parse().ok()?;
    pages.checked_mul(u64::try_from(page_size).ok()?)
}

/// Entries of `/proc/self/fd` (the listing's own descriptor included, as
/// other Prometheus clients count it).
fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    u64::try_from(entries.count()).ok()
}

/// `utime + stime` of `/proc/self/stat`, in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // `sysconf(_SC_CLK_TCK)`, from the auxiliary vector (100 on Linux).
    cpu_from_stat(&stat, rustix::param::clock_ticks_per_second())
}

/// The CPU seconds of a `stat` line, at `ticks` clock ticks per second.
fn cpu_from_stat(stat: &str, ticks: u64) -> Option<f64> {
    if ticks == 0 {
        return None;
    }
    // The command name (field 2) may hold spaces and parentheses: the fields
    // after it start past its last ')', at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime) as f64 / ticks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_statm() {
        assert_eq!(resident_from_statm("1000 250 30 1 0 300 0\n", 4096), Some(1_024_000));
        assert_eq!(resident_from_statm("1000", 4096), None);
    }

    #[test]
    fn parses_stat_with_an_awkward_name() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 1 0 99 0 0";
        assert_eq!(cpu_from_stat(stat, 100), Some(2.0));
        assert_eq!(cpu_from_stat("42 (x) S 1", 100), None);
        assert_eq!(cpu_from_stat(stat, 0), None);
    }

    #[test]
    fn reads_this_process() {
        let p = Process::read(SystemTime::now());
        assert!(p.resident_bytes.is_some_and(|b| b > 0));
        assert!(p.open_fds.is_some_and(|n| n >= 3));
        assert!(p.cpu_seconds.is_some());
        assert!(p.start_seconds.is_some_and(|s| s > 1e9));
    }
}
