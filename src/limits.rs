//! Process and kernel limits that shape the cache and the listener: page
//! size, `vm.max_map_count` and the descriptor limit. Read once at start-up
//! and reported in the start-up summary.

use rustix::process::{Resource, getrlimit, setrlimit};

/// The system page size (mapping offsets must be multiples of it).
pub fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// `vm.max_map_count`: most mappings (VMAs) one process may have.
pub fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count").ok().and_then(|s| s.trim().parse().ok())
}

/// Soft `RLIMIT_NOFILE`.
pub fn nofile_soft() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// Raises the soft descriptor limit to the hard limit (as nginx's
/// `worker_rlimit_nofile` and Go's runtime do). Returns the new soft limit.
pub fn raise_nofile() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        // Failing to raise is harmless: we keep the current limit.
        let _ = setrlimit(Resource::Nofile, raised);
    }
    nofile_soft()
}

/// Number of mappings this process has now (lines of `/proc/self/maps`).
pub fn current_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/self/maps").ok().map(|s| s.lines().count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_readable_here() {
        assert!(page_size().is_power_of_two());
        assert!(max_map_count().unwrap_or(65530) > 1000);
        assert!(nofile_soft().unwrap_or(1024) >= 16);
        assert!(current_map_count().unwrap_or(1) > 0);
    }
}
