//! The hot-path storage: one [`Shard`] of plain atomic counters per slot of a
//! fixed set, and the thread-to-shard assignment.
//!
//! A thread picks its shard once (round robin) and from then on only ever
//! does `fetch_add(Relaxed)` on that shard, so concurrent requests on
//! different threads touch different cache lines: no locks, no hashing, no
//! contended atomics. The shards are summed only when read (scrape, tests).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// How many shards; a power of two at least the usual worker count.
pub(super) const SHARDS: usize = 16;

/// Method slots: GET, HEAD, OPTIONS, every other method.
pub(super) const METHODS: usize = 4;

/// The label value of each method slot.
pub(super) const METHOD_LABELS: [&str; METHODS] = ["GET", "HEAD", "OPTIONS", "other"];

/// Status slots: 100..=599 at `status - 100`, then one for anything else.
pub(super) const STATUSES: usize = 501;

/// The status slot of statuses outside 100..=599.
const OTHER_STATUS: usize = STATUSES - 1;

/// Upper bounds (inclusive, `le`) of the duration buckets, in nanoseconds;
/// the +Inf bucket follows them.
pub(super) const BOUNDS_NANOS: [u64; 19] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
    300_000_000_000,
];

/// Duration buckets: one per bound, plus +Inf.
pub(super) const BUCKETS: usize = BOUNDS_NANOS.len() + 1;

/// The method slot of `method`.
pub(super) fn method_slot(method: &::http::Method) -> usize {
    if *method == ::http::Method::GET {
        0
    } else if *method == ::http::Method::HEAD {
        1
    } else if *method == ::http::Method::OPTIONS {
        2
    } else {
        3
    }
}

/// The status slot of `status`.
pub(super) fn status_slot(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status - 100),
        _ => OTHER_STATUS,
    }
}

/// The status a slot stands for; `None` for the "other" slot.
pub(super) fn slot_status(slot: usize) -> Option<u16> {
    u16::try_from(slot).ok().filter(|&s| s < 500).map(|s| s + 100)
}

/// The bucket of a duration of `nanos`: the first whose bound is at least
/// `nanos` (Prometheus buckets are "less than or equal"), else +Inf.
pub(super) fn bucket_index(nanos: u64) -> usize {
    BOUNDS_NANOS.partition_point(|&bound| bound < nanos)
}

/// One shard's counters, on cache lines of its own.
#[repr(align(128))]
pub(super) struct Shard {
    /// Requests by `method_slot * STATUSES + status_slot`.
    requests: [AtomicU64; METHODS * STATUSES],
    /// Requests by duration bucket (not cumulative).
    buckets: [AtomicU64; BUCKETS],
    /// Sum of request durations, in nanoseconds (wraps after centuries).
    duration_nanos: AtomicU64,
    /// Response body bytes sent.
    body_bytes: AtomicU64,
}

impl Shard {
    /// All zero.
    pub(super) const fn new() -> Self {
        Self {
            requests: [const { AtomicU64::new(0) }; METHODS * STATUSES],
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            duration_nanos: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
        }
    }

    /// Counts one finished request.
    #[inline]
    pub(super) fn record(&self, method: usize, status: usize, body_bytes: u64, nanos: u64) {
        if let Some(count) = self.requests.get(method * STATUSES + status) {
            count.fetch_add(1, Relaxed);
        }
        if let Some(bucket) = self.buckets.get(bucket_index(nanos)) {
            bucket.fetch_add(1, Relaxed);
        }
        self.duration_nanos.fetch_add(nanos, Relaxed);
        self.body_bytes.fetch_add(body_bytes, Relaxed);
    }

    /// Requests counted in slot `method`, `status`.
    pub(super) fn requests(&self, method: usize, status: usize) -> u64 {
        self.requests.get(method * STATUSES + status).map_or(0, |c| c.load(Relaxed))
    }

    /// Requests counted in duration bucket `bucket`.
    pub(super) fn bucket(&self, bucket: usize) -> u64 {
        self.buckets.get(bucket).map_or(0, |c| c.load(Relaxed))
    }

    /// Sum of durations, in nanoseconds.
    pub(super) fn duration_nanos(&self) -> u64 {
        self.duration_nanos.load(Relaxed)
    }

    /// Response body bytes.
    pub(super) fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Relaxed)
    }
}

/// The next shard index to hand to a thread.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

/// Marks a thread that has no shard yet.
const UNASSIGNED: usize = usize::MAX;

thread_local! {
    /// This thread's shard index, once assigned.
    static THREAD_SHARD: Cell<usize> = const { Cell::new(UNASSIGNED) };
}

/// The calling thread's shard index (assigned on first use, round robin).
#[inline]
pub(super) fn thread_shard() -> usize {
    THREAD_SHARD
        .try_with(|cell| {
            let mut index = cell.get();
            if index == UNASSIGNED {
                index = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
                cell.set(index);
            }
            index
        })
        // Only while the thread's locals are being torn down.
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_equal_to_a_bound_goes_in_that_bucket() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(100_000), 0);
        assert_eq!(bucket_index(100_001), 1);
        assert_eq!(bucket_index(250_000), 1);
        assert_eq!(bucket_index(1_000_000_000), 12);
        assert_eq!(bucket_index(1_000_000_001), 13);
        assert_eq!(bucket_index(300_000_000_000), 18);
        assert_eq!(bucket_index(300_000_000_001), 19);
        assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
        for (i, &bound) in BOUNDS_NANOS.iter().enumerate() {
            assert_eq!(bucket_index(bound), i);
            assert_eq!(bucket_index(bound + 1), i + 1);
        }
    }

    #[test]
    fn bounds_ascend() {
        assert!(BOUNDS_NANOS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn status_slots_round_trip() {
        assert_eq!(status_slot(100), 0);
        assert_eq!(status_slot(599), 499);
        for status in [0, 99, 600, u16::MAX] {
            assert_eq!(status_slot(status), OTHER_STATUS);
        }
        for status in 100..=599 {
            assert_eq!(slot_status(status_slot(status)), Some(status));
        }
        assert_eq!(slot_status(OTHER_STATUS), None);
    }

    #[test]
    fn method_slots() {
        assert_eq!(method_slot(&::http::Method::GET), 0);
        assert_eq!(method_slot(&::http::Method::HEAD), 1);
        assert_eq!(method_slot(&::http::Method::OPTIONS), 2);
        assert_eq!(method_slot(&::http::Method::POST), 3);
        let custom = ::http::Method::from_bytes(b"PROPFIND").unwrap_or(http::Method::PUT);
        assert_eq!(method_slot(&custom), 3);
    }

    #[test]
    fn a_thread_keeps_its_shard() {
        let first = thread_shard();
        assert!(first < SHARDS);
        assert_eq!(thread_shard(), first);
    }
}
