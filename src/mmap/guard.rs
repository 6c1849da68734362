//! The process-wide SIGBUS guard for registered file mappings.
//!
//! When another process truncates a mapped file, a user-space load from a page
//! past the new end of file raises SIGBUS (BUS_ADRERR). Such loads can happen
//! outside our code: h2 copies DATA frames of 256 bytes or less into its write
//! buffer, and any later TLS or compression layer would copy everything. So
//! one handler covers every thread:
//!
//! * for a fault inside a registered mapping it maps an anonymous zero page
//!   over the faulting page (`MAP_FIXED`), marks the mapping poisoned, bumps a
//!   global epoch and returns: the interrupted load finishes, reading zeros;
//! * every reader of mapped bytes checks the poison mark (or the epoch) before
//!   the bytes leave the process and aborts that response instead, so zeros
//!   are never sent;
//! * any other fault is passed on to the handler that was installed before
//!   (Rust's runtime installs one), so real bugs still crash loudly.
//!
//! The registry is a fixed array of atomics: the handler looks addresses up
//! without locks or allocation. A mapping is unregistered before it is
//! unmapped, so a later mapping at the same address is never "repaired" by
//! mistake.
//!
//! Several threads may fault on the same page at once: those that come
//! second find the page already repaired, and simply map a zero page over it
//! again (harmless: both are zero pages). What must never happen is to pass
//! such a fault on, because the previous handler (Rust's) resets SIGBUS to
//! the default disposition, and the guard would be gone. Only a fault that
//! *the same thread* takes again on the page it has just repaired, in the same
//! mapping, means the repair did not take; that one is passed on (and kills
//! the process) rather than looping forever.

use std::cell::{Cell, UnsafeCell};
use std::io;
use std::mem::MaybeUninit;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Most mappings registered at once (more than `vm.max_map_count` allows
/// a process by default).
pub const SLOTS: usize = 1 << 16;

struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    generation: AtomicU64,
    poisoned: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    generation: AtomicU64::new(0),
    poisoned: AtomicBool::new(false),
};

static REGISTRY: [Slot; SLOTS] = [EMPTY; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
static EPOCH: AtomicU64 = AtomicU64::new(0);
static REPAIRS: AtomicU64 = AtomicU64::new(0);
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The disposition that was in place before ours, written once (inside
/// `INSTALL`) before the handler can run, and only read afterwards.
struct Previous(UnsafeCell<MaybeUninit<libc::sigaction>>);
// SAFETY: written exactly once inside `INSTALL.call_once`, before our handler
// is installed; every later access is a read.
unsafe impl Sync for Previous {}
static PREVIOUS: Previous = Previous(UnsafeCell::new(MaybeUninit::uninit()));

/// Installs the handler (once per process). Returns whether it is in place.
pub fn install() -> bool {
    INSTALL.call_once(|| {
        PAGE_SIZE.store(rustix::param::page_size(), Ordering::Relaxed);
        // SAFETY: `sa` is fully initialised (zeroed, then the fields we use);
        // `on_sigbus` has the SA_SIGINFO signature; `PREVIOUS` is written here
        // once, before the new handler can observe it, by `sigaction` itself.
        let ok = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            let previous = (*PREVIOUS.0.get()).as_mut_ptr();
            libc::sigaction(libc::SIGBUS, &sa, previous) == 0
        };
        INSTALLED.store(ok, Ordering::Release);
    });
    INSTALLED.load(Ordering::Acquire)
}

/// A registered range; unregistered on drop.
#[derive(Debug)]
pub struct Registration {
    slot: usize,
    generation: u64,
    start: usize,
    len: usize,
}

/// Identifies a registered mapping, for poison checks and to tell whether a
/// pointer lies in a mapping that is still alive; cheap to copy. A probe
/// stays poisoned after its mapping is gone; a new mapping in the same slot
/// has a new generation, so old probes never speak for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    slot: usize,
    generation: u64,
    start: usize,
    len: usize,
}

impl Probe {
    /// Whether a SIGBUS was repaired inside this mapping.
    pub fn is_poisoned(&self) -> bool {
        REGISTRY.get(self.slot).is_some_and(|s| {
            s.poisoned.load(Ordering::Acquire) && s.generation.load(Ordering::Acquire) == self.generation
        })
    }

    /// Whether `data` lies inside this mapping and the mapping was still
    /// registered (so still mapped) when asked. A registration clears `start`
    /// before it is dropped and a new one bumps the generation before it sets
    /// `start`, so reading `start` and then the generation cannot mistake a
    /// new mapping at the same address for this one.
    pub fn contains(&self, data: &[u8]) -> bool {
        self.contains_range(data.as_ptr() as usize, data.len())
    }

    fn contains_range(&self, ptr: usize, len: usize) -> bool {
        let inside = ptr >= self.start
            && ptr.checked_add(len).is_some_and(|end| end <= self.start.saturating_add(self.len));
        inside
            && REGISTRY.get(self.slot).is_some_and(|s| {
                s.start.load(Ordering::SeqCst) == self.start
                    && s.generation.load(Ordering::SeqCst) == self.generation
            })
    }
}

impl Registration {
    /// The probe for this registration.
    pub fn probe(&self) -> Probe {
        Probe { slot: self.slot, generation: self.generation, start: self.start, len: self.len }
    }
}

/// Registers `[start, start + len)`. `None` when every slot is taken.
pub fn register(start: usize, len: usize) -> Option<Registration> {
    if start == 0 || len == 0 {
        return None;
    }
    let first = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
    for i in 0..SLOTS {
        let index = (first + i) % SLOTS;
        let slot = &REGISTRY[index];
        // Claim a free slot: len goes from 0 to `len` first, start after.
        if slot.len.compare_exchange(0, len, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            let generation = slot.generation.fetch_add(1, Ordering::SeqCst) + 1;
            slot.poisoned.store(false, Ordering::Release);
            slot.start.store(start, Ordering::SeqCst);
            return Some(Registration { slot: index, generation, start, len });
        }
    }
    None
}

impl Drop for Registration {
    fn drop(&mut self) {
        let slot = &REGISTRY[self.slot];
        // start first: from here on the handler no longer matches the range.
        slot.start.store(0, Ordering::SeqCst);
        slot.len.store(0, Ordering::Release);
    }
}

/// Bumped each time the handler repairs a fault: readers that cannot check a
/// specific mapping (the connection layer under h2) compare epochs.
pub fn epoch() -> u64 {
    EPOCH.load(Ordering::Acquire)
}

/// Faults repaired since start.
pub fn repairs() -> u64 {
    REPAIRS.load(Ordering::Relaxed)
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for SA_SIGINFO handlers.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    if code == libc::BUS_ADRERR && repair(addr) {
        return;
    }
    // SAFETY: PREVIOUS was filled by sigaction before this handler existed.
    unsafe { chain(sig, info, ctx) }
}

thread_local! {
    /// The last repair this thread made: (page, slot, generation). Const
    /// initialised and without a destructor, so reading it in the signal
    /// handler is a plain thread-local load.
    static LAST_REPAIR: Cell<(usize, usize, u64)> = const { Cell::new((0, 0, 0)) };
}

/// Maps a zero page over `addr` if it lies in a registered range.
/// Async-signal-safe: atomics, a thread-local and one `mmap` system call.
fn repair(addr: usize) -> bool {
    let page_size = PAGE_SIZE.load(Ordering::Relaxed);
    let page = addr & !(page_size - 1);
    for (index, slot) in REGISTRY.iter().enumerate() {
        // A consistent view of the slot: a registration bumps the generation
        // before it sets `start`, an unregistration clears `start` first, so
        // the same generation around the same `start` means `len` belongs to
        // that registration (not to one that replaced it meanwhile).
        let generation = slot.generation.load(Ordering::SeqCst);
        let start = slot.start.load(Ordering::SeqCst);
        if start == 0 || addr < start {
            continue;
        }
        let len = slot.len.load(Ordering::SeqCst);
        if addr - start >= len
            || slot.start.load(Ordering::SeqCst) != start
            || slot.generation.load(Ordering::SeqCst) != generation
        {
            continue;
        }
        let this = (page, index, generation);
        if LAST_REPAIR.with(Cell::get) == this {
            // This thread repaired this very page of this mapping and faulted
            // on it again: the repair did not take. Pass it on.
            LAST_REPAIR.with(|c| c.set((0, 0, 0)));
            return false;
        }
        // SAFETY: `page` is page-aligned and lies inside a mapping we own and
        // that stays mapped while registered; replacing that one page with a
        // private anonymous page (zeros, read-only) cannot affect any other
        // memory. If another thread repaired it already, this replaces one
        // zero page with another. The later munmap of the whole mapping
        // removes it too.
        let result = unsafe {
            libc::mmap(
                page as *mut libc::c_void,
                page_size,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if result == libc::MAP_FAILED {
            return false;
        }
        LAST_REPAIR.with(|c| c.set(this));
        // The mapping is still registered (its owner holds it while reading):
        // the mark belongs to this generation.
        if slot.generation.load(Ordering::SeqCst) == generation {
            slot.poisoned.store(true, Ordering::SeqCst);
        }
        EPOCH.fetch_add(1, Ordering::AcqRel);
        REPAIRS.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    false
}

/// Passes the signal on to the previous disposition.
///
/// # Safety
/// Only from the SIGBUS handler, with its arguments.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: PREVIOUS was initialised by sigaction before our handler ran.
    let previous = unsafe { (*PREVIOUS.0.get()).assume_init_ref() };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Restore it: returning re-executes the faulting load, which then
        // takes the default action (terminate with a core dump).
        // SAFETY: restoring a disposition the kernel gave us.
        unsafe { libc::sigaction(sig, previous, std::ptr::null_mut()) };
    } else if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed with SA_SIGINFO, so it
        // has this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: a plain handler installed without SA_SIGINFO.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}

/// Whether SIGBUS is handled by the guard right now (read from the kernel,
/// not from a flag: another handler could have replaced it).
pub fn is_active() -> bool {
    // SAFETY: querying the disposition (null new action) writes only `current`.
    let current = unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut current) != 0 {
            return false;
        }
        current
    };
    current.sa_sigaction == on_sigbus as *const () as usize
}

/// Reports whether the handler could be installed, for the start-up log.
pub fn status() -> io::Result<()> {
    if install() { Ok(()) } else { Err(io::Error::other("sigaction(SIGBUS) failed")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_contains_only_its_own_live_range() {
        let start = 0x7000_0000_0000usize;
        let reg = register(start, 8192).unwrap();
        let probe = reg.probe();
        assert!(probe.contains_range(start, 8192));
        assert!(probe.contains_range(start + 100, 10));
        assert!(!probe.contains_range(start, 8193), "one byte past the end");
        assert!(!probe.contains_range(start - 1, 2), "one byte before");
        assert!(!probe.contains_range(usize::MAX - 1, 4), "no overflow");
        drop(reg);
        assert!(!probe.contains_range(start + 100, 10), "unregistered");
        // A new registration at the same address is a new generation.
        let again = register(start, 8192).unwrap();
        assert!(!probe.contains_range(start + 100, 10), "an old probe never speaks for a new mapping");
        assert!(again.probe().contains_range(start + 100, 10));
    }
}
