//! Process and kernel limits that shape the cache and the listener: page
//! size, `vm.max_map_count` and the descriptor limit, and how descriptors
//! are shared out. Read at start-up and reported in the start-up summary.

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
/// Must run before anything is sized from the limit.
pub fn raise_nofile() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        // Failing to raise is harmless: we keep the current limit.
        let _ = setrlimit(Resource::Nofile, raised);
    }
    nofile_soft()
}

/// Descriptors kept for the process itself: standard streams, ROOT, the
/// inotify instance, listeners, the runtime's epoll and wake-up descriptors,
/// the log writer, and files opened briefly while loading.
pub const RESERVED_FDS: u64 = 64;
/// Most connections the automatic cap allows, whatever the limit.
pub const MAX_AUTO_CONNECTIONS: u64 = 65_536;

/// How the descriptor limit is shared out. What a connection really holds:
/// its socket, always; while a response runs, possibly a file descriptor
/// (a windowed file, or a file streamed with `pread`) and a pipe (two
/// descriptors) while spliced bytes wait in it. Sockets get their own share;
/// file descriptors and pipes come from pools with limits of their own, so
/// that responses can never use up the descriptors that accepting new
/// clients needs: past a pool's limit a response gets 503 (files) or is
/// copied instead of spliced (pipes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdPlan {
    /// Concurrent connections.
    pub connections: u64,
    /// Files held open by responses in flight, all connections together.
    pub response_files: u64,
    /// Pipes alive at once (two descriptors each).
    pub pipes: u64,
}

impl FdPlan {
    /// The plan for `nofile` descriptors; `connections` when the operator
    /// set the cap, else half of what is left after the reserve.
    pub fn new(nofile: u64, connections: Option<u64>) -> FdPlan {
        let usable = nofile.saturating_sub(RESERVED_FDS).max(16);
        let connections = connections.unwrap_or_else(|| (usable / 2).clamp(8, MAX_AUTO_CONNECTIONS));
        let rest = usable.saturating_sub(connections);
        FdPlan { connections, response_files: (rest / 2).max(8), pipes: (rest / 4).max(4) }
    }

    /// Descriptors the plan may use at most.
    pub fn total(&self) -> u64 {
        RESERVED_FDS + self.connections + self.response_files + 2 * self.pipes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_read_from_the_kernel() {
        assert!(page_size().is_power_of_two());
        assert!(max_map_count().is_some_and(|n| n > 1000), "/proc/sys/vm/max_map_count is readable");
        assert!(nofile_soft().is_some_and(|n| n >= 16));
    }

    #[test]
    fn the_descriptor_plan_never_exceeds_the_limit() {
        for nofile in [64, 100, 1024, 4096, 20_000, 65_536, 1 << 20] {
            let auto = FdPlan::new(nofile, None);
            assert!(auto.total() <= nofile.max(RESERVED_FDS + 16 + 16), "{nofile}: {auto:?}");
            assert!(auto.connections >= 8);
        }
        let p = FdPlan::new(1024, None);
        assert_eq!(p, FdPlan { connections: 480, response_files: 240, pipes: 120 });
        assert_eq!(FdPlan::new(20_000, None).connections, 9968);
        assert_eq!(FdPlan::new(1 << 20, None).connections, MAX_AUTO_CONNECTIONS);
        let set = FdPlan::new(1024, Some(900));
        assert_eq!(set.connections, 900);
        assert!(set.response_files >= 8 && set.pipes >= 4, "pools keep a floor: {set:?}");
    }
}
