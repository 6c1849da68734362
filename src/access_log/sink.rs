//! Where access lines go: a bounded queue in front of one writer thread
//! (`mapserve-access`) that owns the file or stderr.
//!
//! Request tasks never wait for the disk: [`Sink::write`] queues a finished
//! line, or drops and counts it when the writer has fallen `capacity` lines
//! behind. The writer takes everything queued at once, gathers whole lines
//! into one buffer and writes it when the buffer is full or the queue is
//! empty, so lines appear promptly and every write holds whole lines (to
//! stderr, at most `PIPE_BUF` bytes, so that other writers of stderr cannot
//! split a line). Dropped lines are reported by the writer itself, once a
//! second at most. A failed write (disk full) drops its lines and counts
//! them; the writer keeps going.
//!
//! [`Sink::reopen`] is the logrotate dance: after the file was renamed, new
//! lines go to a new file at the path. The writer ends when every handle is
//! gone, after writing what is queued.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where access lines are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The process's standard error.
    Stderr,
    /// A file, opened to append.
    File(PathBuf),
}

/// The most bytes of one write to stderr: writes to a pipe up to `PIPE_BUF`
/// (4096 on Linux) are atomic.
const STDERR_WRITE: usize = 4096;
/// The most bytes gathered for one write to a file.
const FILE_WRITE: usize = 64 * 1024;
/// The least time between two warnings of the same kind.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// A handle on the access-log writer; clones share one writer.
#[derive(Clone)]
pub struct Sink {
    handle: Arc<Handle>,
}

/// The writer ends when the last handle goes.
struct Handle {
    shared: Arc<Shared>,
}

/// What the handles and the writer share.
struct Shared {
    state: Mutex<State>,
    /// The writer waits here for lines (or a reopen, or the end).
    work: Condvar,
    /// [`Sink::flush`] waits here for the writer.
    finished: Condvar,
    target: Target,
    capacity: usize,
    /// Lines dropped because the queue was full.
    overflowed: AtomicU64,
    /// Lines dropped because writing them failed.
    failed: AtomicU64,
    written: AtomicU64,
}

struct State {
    queue: VecDeque<String>,
    /// Lines queued, ever.
    accepted: u64,
    /// Lines the writer is done with (written or failed), ever.
    finished: u64,
    /// Callers waiting in [`Sink::flush`].
    flushers: usize,
    reopen: bool,
    /// Some handle is alive.
    open: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().open = false;
        self.shared.work.notify_one();
    }
}

impl Sink {
    /// Opens the target (a file is opened append+create, mode 0640) and
    /// starts the writer thread "mapserve-access". A `capacity` of 0 is taken
    /// as 1.
    pub fn start(target: Target, capacity: usize) -> io::Result<Sink> {
        let out = match &target {
            Target::Stderr => Out::Stderr,
            Target::File(path) => Out::File(open(path)?),
        };
        let capacity = capacity.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(capacity.min(1024)),
                accepted: 0,
                finished: 0,
                flushers: 0,
                reopen: false,
                open: true,
            }),
            work: Condvar::new(),
            finished: Condvar::new(),
            target,
            capacity,
            overflowed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            written: AtomicU64::new(0),
        });
        let limit = if shared.target == Target::Stderr { STDERR_WRITE } else { FILE_WRITE };
        let writer = Writer {
            shared: Arc::clone(&shared),
            out,
            buf: Vec::with_capacity(limit),
            ends: Vec::new(),
            limit,
            broken: false,
            reported: 0,
            last_report: None,
            unreported_failures: 0,
            last_failure: None,
        };
        std::thread::Builder::new().name("mapserve-access".to_owned()).spawn(move || writer.run())?;
        Ok(Sink { handle: Arc::new(Handle { shared }) })
    }

    /// Queues one finished line (already ending in '\n'; one is added if
    /// not). Never blocks: when `capacity` lines are already waiting, the
    /// line is dropped and counted.
    pub fn write(&self, line: String) {
        let shared = &self.handle.shared;
        let mut state = shared.lock();
        if state.queue.len() >= shared.capacity {
            drop(state);
            shared.overflowed.fetch_add(1, Relaxed);
            return;
        }
        state.queue.push_back(line);
        state.accepted += 1;
        let first = state.queue.len() == 1;
        drop(state);
        if first {
            shared.work.notify_one();
        }
    }

    /// Lines dropped so far: because the writer fell behind, or because
    /// writing them failed.
    pub fn dropped(&self) -> u64 {
        self.handle.shared.overflowed.load(Relaxed) + self.handle.shared.failed.load(Relaxed)
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.handle.shared.written.load(Relaxed)
    }

    /// Asks the writer to reopen a file target (SIGUSR1, logrotate); no-op
    /// for stderr. Asynchronous: lines queued after this call go to the new
    /// file. Errors are reported with `tracing::warn!` and the old file is
    /// kept.
    pub fn reopen(&self) {
        let shared = &self.handle.shared;
        if let Target::File(_) = shared.target {
            shared.lock().reopen = true;
            shared.work.notify_one();
        }
    }

    /// Waits (at most `timeout`) until every line queued before the call is
    /// written (or failed) and handed to the kernel. Used at exit and by
    /// tests.
    pub fn flush(&self, timeout: Duration) -> bool {
        let shared = &self.handle.shared;
        let deadline = Instant::now().checked_add(timeout);
        let mut state = shared.lock();
        let target = state.accepted;
        state.flushers += 1;
        shared.work.notify_one();
        while state.finished < target {
            let left = deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                break;
            }
            state = shared.finished.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        state.flushers -= 1;
        state.finished >= target
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("target", &self.handle.shared.target)
            .field("capacity", &self.handle.shared.capacity)
            .field("written", &self.written())
            .field("dropped", &self.dropped())
            .finish()
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).mode(0o640).open(path)
}

enum Out {
    Stderr,
    File(File),
}

/// Writes `bytes` until done or an error: how many were written.
fn write_all(out: &mut Out, bytes: &[u8]) -> (usize, Option<io::Error>) {
    let mut at = 0;
    while at < bytes.len() {
        let wrote = match out {
            Out::Stderr => io::stderr().lock().write(&bytes[at..]),
            Out::File(file) => file.write(&bytes[at..]),
        };
        match wrote {
            Ok(0) => return (at, Some(io::ErrorKind::WriteZero.into())),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (at, Some(e)),
        }
    }
    (at, None)
}

/// The writer thread's state.
struct Writer {
    shared: Arc<Shared>,
    out: Out,
    /// Whole lines not yet written.
    buf: Vec<u8>,
    /// Where each line in `buf` ends.
    ends: Vec<usize>,
    /// The most bytes gathered for one write.
    limit: usize,
    /// The last write stopped inside a line.
    broken: bool,
    /// `overflowed` as last reported.
    reported: u64,
    last_report: Option<Instant>,
    unreported_failures: u64,
    last_failure: Option<Instant>,
}

impl Writer {
    fn run(mut self) {
        let mut batch = VecDeque::new();
        loop {
            let mut state = self.shared.lock();
            if state.queue.is_empty() && !state.reopen && state.open {
                state = if self.shared.overflowed.load(Relaxed) > self.reported {
                    // Wake to report the drops even if no line comes.
                    self.shared.work.wait_timeout(state, WARN_EVERY).unwrap_or_else(|e| e.into_inner()).0
                } else {
                    self.shared.work.wait(state).unwrap_or_else(|e| e.into_inner())
                };
            }
            std::mem::swap(&mut state.queue, &mut batch);
            let reopen = std::mem::take(&mut state.reopen);
            let closing = !state.open;
            drop(state);
            if reopen {
                self.emit();
                self.reopen();
            }
            for line in batch.drain(..) {
                self.push(&line);
            }
            let idle = {
                let state = self.shared.lock();
                state.queue.is_empty() || state.flushers > 0
            };
            if idle || closing {
                self.emit();
            }
            self.report();
            // No handle is left to queue more lines.
            if closing {
                return;
            }
        }
    }

    fn push(&mut self, line: &str) {
        if !self.buf.is_empty() && self.buf.len() + line.len() >= self.limit {
            self.emit();
        }
        self.buf.extend_from_slice(line.as_bytes());
        if !line.ends_with('\n') {
            self.buf.push(b'\n');
        }
        self.ends.push(self.buf.len());
    }

    /// Writes the gathered lines.
    fn emit(&mut self) {
        if self.ends.is_empty() {
            return;
        }
        if self.broken && write_all(&mut self.out, b"\n").1.is_none() {
            self.broken = false;
        }
        let (at, error) = write_all(&mut self.out, &self.buf);
        let lines = self.ends.len() as u64;
        let written = self.ends.partition_point(|&end| end <= at) as u64;
        self.broken = at > 0 && self.ends.binary_search(&at).is_err();
        self.shared.written.fetch_add(written, Relaxed);
        if let Some(error) = error {
            self.shared.failed.fetch_add(lines - written, Relaxed);
            self.unreported_failures += lines - written;
            if self.last_failure.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                let dropped = std::mem::take(&mut self.unreported_failures);
                tracing::warn!(%error, dropped, "cannot write the access log; lines dropped");
                self.last_failure = Some(Instant::now());
            }
        }
        self.buf.clear();
        self.ends.clear();
        self.shared.lock().finished += lines;
        self.shared.finished.notify_all();
    }

    fn reopen(&mut self) {
        let (Out::File(file), Target::File(path)) = (&mut self.out, &self.shared.target) else { return };
        match open(path) {
            Ok(new) => {
                *file = new;
                self.broken = false;
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot reopen the access log; still writing to the old file");
            }
        }
    }

    /// Reports lines dropped because the queue was full, once a second at
    /// most.
    fn report(&mut self) {
        let overflowed = self.shared.overflowed.load(Relaxed);
        if overflowed > self.reported && self.last_report.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(dropped = overflowed - self.reported, "access log fell behind; lines dropped");
            self.reported = overflowed;
            self.last_report = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    const WAIT: Duration = Duration::from_secs(20);

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mapserve-access-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn a_sink_is_a_shared_handle() {
        fn shared<T: Send + Sync + Clone + std::fmt::Debug>() {}
        shared::<Sink>();
    }

    #[test]
    fn lines_arrive_in_order() {
        let path = dir("order").join("access.log");
        let sink = Sink::start(Target::File(path.clone()), 100_000).unwrap();
        let mut expected = String::new();
        for i in 0..10_000 {
            expected.push_str(&format!("line {i}\n"));
            sink.write(format!("line {i}\n"));
        }
        sink.write("no newline".to_owned());
        expected.push_str("no newline\n");
        assert!(sink.flush(WAIT));
        assert_eq!((sink.written(), sink.dropped()), (10_001, 0));
        assert_eq!(read(&path), expected);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
    }

    #[test]
    fn handles_on_many_threads_write_whole_lines() {
        let path = dir("threads").join("access.log");
        let sink = Sink::start(Target::File(path.clone()), 100_000).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || (0..2000).for_each(|i| sink.write(format!("{t} {i:>100}\n"))))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!(sink.flush(WAIT));
        let text = read(&path);
        for t in 0..4 {
            let mine: Vec<String> =
                text.lines().filter(|l| l.starts_with(&format!("{t} "))).map(str::to_owned).collect();
            assert_eq!(mine, (0..2000).map(|i| format!("{t} {i:>100}")).collect::<Vec<_>>());
        }
        assert_eq!(text.lines().count(), 8000);
    }

    #[test]
    fn reopen_after_rename_starts_a_new_file() {
        let dir = dir("rotate");
        let (path, old) = (dir.join("access.log"), dir.join("access.log.1"));
        let sink = Sink::start(Target::File(path.clone()), 1000).unwrap();
        sink.write("a\n".to_owned());
        assert!(sink.flush(WAIT));
        std::fs::rename(&path, &old).unwrap();
        sink.write("b\n".to_owned());
        assert!(sink.flush(WAIT));
        sink.reopen();
        sink.write("c\n".to_owned());
        assert!(sink.flush(WAIT));
        assert_eq!((read(&old).as_str(), read(&path).as_str()), ("a\nb\n", "c\n"));
    }

    #[test]
    fn a_failed_reopen_keeps_the_old_file() {
        let dir = dir("reopen-fails");
        let sub = dir.join("logs");
        std::fs::create_dir(&sub).unwrap();
        let sink = Sink::start(Target::File(sub.join("access.log")), 1000).unwrap();
        sink.write("a\n".to_owned());
        assert!(sink.flush(WAIT));
        std::fs::rename(&sub, dir.join("gone")).unwrap();
        sink.reopen();
        sink.write("b\n".to_owned());
        assert!(sink.flush(WAIT));
        assert_eq!(read(&dir.join("gone/access.log")), "a\nb\n");
        assert_eq!((sink.written(), sink.dropped()), (2, 0));
    }

    #[test]
    fn reopen_is_a_no_op_for_stderr() {
        let sink = Sink::start(Target::Stderr, 4).unwrap();
        sink.reopen();
        assert!(sink.flush(WAIT));
        assert_eq!((sink.written(), sink.dropped()), (0, 0));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let path = dir("capacity").join("access.log");
        let sink = Sink::start(Target::File(path.clone()), 4).unwrap();
        for i in 0..100_000 {
            sink.write(format!("{i}\n"));
        }
        assert!(sink.flush(WAIT));
        assert_eq!(sink.dropped() + sink.written(), 100_000);
        let numbers: Vec<u64> = read(&path).lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(numbers.len() as u64, sink.written());
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "in order, gaps where dropped");
    }

    #[test]
    fn write_errors_drop_lines_and_the_writer_goes_on() {
        let sink = Sink::start(Target::File("/dev/full".into()), 1000).unwrap();
        for _ in 0..10 {
            sink.write("x\n".to_owned());
        }
        assert!(sink.flush(WAIT));
        assert_eq!((sink.written(), sink.dropped()), (0, 10));
        sink.write("y\n".to_owned());
        assert!(sink.flush(WAIT));
        assert_eq!(sink.dropped(), 11);
    }

    #[test]
    fn the_writer_ends_with_the_last_handle_after_writing_the_queue() {
        let path = dir("end").join("access.log");
        let sink = Sink::start(Target::File(path.clone()), 100_000).unwrap();
        let shared = Arc::downgrade(&sink.handle.shared);
        let other = sink.clone();
        (0..1000).for_each(|i| other.write(format!("{i}\n")));
        drop(sink);
        other.write("last\n".to_owned());
        drop(other);
        let start = Instant::now();
        while shared.upgrade().is_some() {
            assert!(start.elapsed() < WAIT, "the writer thread is still running");
            std::thread::sleep(Duration::from_millis(5));
        }
        let text = read(&path);
        assert_eq!(text.lines().count(), 1001);
        assert!(text.ends_with("999\nlast\n"));
    }

    #[test]
    fn a_stalled_writer_never_blocks_callers() {
        let fifo = dir("stalled").join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        // A reader that reads nothing yet: the writer fills the pipe and blocks.
        let mut reader = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).unwrap();
        let sink = Sink::start(Target::File(fifo.clone()), 4).unwrap();
        let line = format!("{}\n", "x".repeat(1023));
        // Fill the pipe until the writer is stuck in write().
        let mut offered = 0;
        loop {
            sink.write(line.clone());
            offered += 1;
            if !sink.flush(Duration::from_millis(200)) {
                break;
            }
            assert!(offered < 10_000, "the pipe never filled");
        }
        let start = Instant::now();
        for _ in 0..100_000 {
            sink.write(line.clone());
        }
        offered += 100_000;
        let took = start.elapsed();
        assert!(took < Duration::from_secs(5), "100k writes took {took:?}");
        assert!(!sink.flush(Duration::from_millis(50)), "the writer is stuck on the full pipe");
        assert!(sink.dropped() >= 100_000 - 4, "dropped {}", sink.dropped());
        rustix::fs::fcntl_setfl(&reader, rustix::fs::OFlags::empty()).unwrap();
        let drain = std::thread::spawn(move || {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).unwrap();
            all
        });
        assert!(sink.flush(WAIT));
        assert_eq!(sink.dropped() + sink.written(), offered);
        let written = sink.written();
        drop(sink);
        let all = drain.join().unwrap();
        assert_eq!(all.len() as u64, written * 1024);
        assert!(all.chunks(1024).all(|l| l == line.as_bytes()));
    }
}
