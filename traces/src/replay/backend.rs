//! What a replay runs against: the [`Backend`]/[`Local`] traits, any
//! `GlobalAlloc` ([`Global`]), the harness-cost allocator [`Noop`], and the
//! built-in allocators by name ([`AllocName`], [`run_on_passes`]).

use super::{run_passes, Outcome, ReplayError, Trace, PAGE};
use std::alloc::{GlobalAlloc, Layout};

/// One thread's handle on an allocator.
pub trait Local {
    /// Allocates `layout` (zero-filled if `zeroed`); null on failure.
    ///
    /// # Safety
    /// `layout.size()` is not 0.
    unsafe fn alloc(&mut self, layout: Layout, zeroed: bool) -> *mut u8;
    /// Reallocates `ptr` (of layout `old`) to `new`; null on failure (then
    /// `ptr` is still live).
    ///
    /// # Safety
    /// `ptr` is live, was allocated by this backend with layout `old`;
    /// `new.size()` is not 0.
    unsafe fn realloc(&mut self, ptr: *mut u8, old: Layout, new: Layout) -> *mut u8;
    /// Frees `ptr`.
    ///
    /// # Safety
    /// `ptr` is live, was allocated by this backend with `layout`.
    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout);
}

/// An allocator to replay on.
pub trait Backend: Sync {
    /// A thread's handle.
    type Local<'a>: Local
    where
        Self: 'a;
    /// The handle for trace thread `tid`, called on the thread that uses it.
    fn local(&self, tid: usize) -> Self::Local<'_>;
    /// Whether `z` blocks must read back as zero (checked while touching).
    fn zero_filled(&self) -> bool;
}

/// Any `GlobalAlloc`, called directly (not through the process's global
/// allocator).
#[derive(Debug, Default)]
pub struct Global<A>(pub A);

impl<A: GlobalAlloc + Sync> Backend for Global<A> {
    type Local<'a>
        = &'a A
    where
        A: 'a;

    fn local(&self, _tid: usize) -> &A {
        &self.0
    }

    fn zero_filled(&self) -> bool {
        true
    }
}

impl<A: GlobalAlloc> Local for &A {
    unsafe fn alloc(&mut self, layout: Layout, zeroed: bool) -> *mut u8 {
        if zeroed {
            // SAFETY: the caller guarantees a non-zero size.
            unsafe { (**self).alloc_zeroed(layout) }
        } else {
            // SAFETY: the caller guarantees a non-zero size.
            unsafe { (**self).alloc(layout) }
        }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, old: Layout, new: Layout) -> *mut u8 {
        if old.align() == new.align() {
            // SAFETY: the caller's contract is `GlobalAlloc::realloc`'s; the
            // alignment is unchanged and `new` is a valid layout.
            return unsafe { (**self).realloc(ptr, old, new.size()) };
        }
        // A realloc that changes the alignment (possible in a trace, not
        // through `GlobalAlloc::realloc`): allocate, copy, free.
        // SAFETY: `new.size()` is not 0.
        let q = unsafe { (**self).alloc(new) };
        if !q.is_null() {
            // SAFETY: both blocks are live, distinct and at least this long.
            unsafe { std::ptr::copy_nonoverlapping(ptr, q, old.size().min(new.size())) };
            // SAFETY: `ptr` is live with layout `old` (the caller's contract).
            unsafe { (**self).dealloc(ptr, old) };
        }
        q
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is `GlobalAlloc::dealloc`'s.
        unsafe { (**self).dealloc(ptr, layout) }
    }
}

/// The no-op allocator: per thread, a bump pointer through a ring reserved
/// and pre-faulted up front (see the module documentation).
#[derive(Debug)]
pub struct Noop {
    rings: Vec<(usize, usize)>,
}

/// The smallest ring (per thread).
pub const NOOP_MIN_RING: usize = 1 << 20;

impl Noop {
    /// Reserves one ring per thread of `trace`: at least [`NOOP_MIN_RING`]
    /// and at least the thread's largest block plus its largest alignment.
    pub fn new(trace: &Trace) -> Result<Noop, ReplayError> {
        let mut n = Noop { rings: Vec::new() };
        for (tid, &(size, align)) in trace.largest.iter().enumerate() {
            let len = (size as usize)
                .checked_add(align as usize)
                .and_then(|l| l.max(NOOP_MIN_RING).checked_next_multiple_of(PAGE));
            let fail = |what: String| ReplayError {
                path: trace.name.clone(),
                line: None,
                reason: format!("noop allocator: thread {tid}: {what}"),
            };
            let len = len.ok_or_else(|| fail("ring size overflows".into()))?;
            // SAFETY: an anonymous private mapping at an address of the
            // kernel's choice touches no existing memory.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE
                        | libc::MAP_ANONYMOUS
                        | libc::MAP_NORESERVE
                        | libc::MAP_POPULATE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(fail(format!(
                    "cannot reserve {len} bytes: {}",
                    std::io::Error::last_os_error()
                )));
            }
            n.rings.push((p as usize, len));
        }
        Ok(n)
    }
}

impl Drop for Noop {
    fn drop(&mut self) {
        for &(base, len) in &self.rings {
            // SAFETY: the ring was mapped by `new` with this length and no
            // handle outlives the `Noop` (handles borrow it).
            unsafe { libc::munmap(base as *mut libc::c_void, len) };
        }
    }
}

/// A thread's cursor in its [`Noop`] ring.
#[derive(Debug)]
pub struct NoopLocal {
    base: usize,
    len: usize,
    off: usize,
}

impl Backend for Noop {
    type Local<'a> = NoopLocal;

    fn local(&self, tid: usize) -> NoopLocal {
        let (base, len) = self.rings.get(tid).copied().unwrap_or((0, 0));
        NoopLocal { base, len, off: 0 }
    }

    fn zero_filled(&self) -> bool {
        false
    }
}

impl Local for NoopLocal {
    unsafe fn alloc(&mut self, layout: Layout, _zeroed: bool) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        if size.saturating_add(align) > self.len {
            return std::ptr::null_mut();
        }
        let mut start = (self.base + self.off).next_multiple_of(align);
        if start + size > self.base + self.len {
            start = self.base.next_multiple_of(align);
        }
        self.off = start + size - self.base;
        start as *mut u8
    }

    unsafe fn realloc(&mut self, _ptr: *mut u8, _old: Layout, new: Layout) -> *mut u8 {
        // SAFETY: forwarded contract (`new.size()` is not 0).
        unsafe { self.alloc(new, false) }
    }

    unsafe fn dealloc(&mut self, _ptr: *mut u8, _layout: Layout) {}
}

/// The allocators `hktrace replay` has built in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocName {
    /// `hakmem::Hakmem`.
    Hakmem,
    /// `std::alloc::System` (glibc malloc here).
    System,
    /// `mimalloc::MiMalloc`.
    Mimalloc,
    /// `tikv_jemallocator::Jemalloc`.
    Jemalloc,
    /// [`Noop`], the harness's own cost.
    Noop,
}

impl AllocName {
    /// Every name, in the order of the table.
    pub const ALL: [AllocName; 5] = [
        AllocName::Hakmem,
        AllocName::System,
        AllocName::Mimalloc,
        AllocName::Jemalloc,
        AllocName::Noop,
    ];

    /// The name as given to `--alloc`.
    pub fn as_str(self) -> &'static str {
        match self {
            AllocName::Hakmem => "hakmem",
            AllocName::System => "system",
            AllocName::Mimalloc => "mimalloc",
            AllocName::Jemalloc => "jemalloc",
            AllocName::Noop => "noop",
        }
    }

    /// The allocator called `s`.
    pub fn parse(s: &str) -> Option<AllocName> {
        AllocName::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Replays `trace` once on the allocator called `name`.
pub fn run_on(
    trace: &Trace,
    name: AllocName,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<Outcome, ReplayError> {
    run_on_passes(trace, name, 1, progress).map(|v| v[0])
}

/// Replays `trace` `passes` times on the same threads ([`run_passes`]) on
/// the allocator called `name`.
pub fn run_on_passes(
    trace: &Trace,
    name: AllocName,
    passes: u32,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<Vec<Outcome>, ReplayError> {
    match name {
        AllocName::Hakmem => run_passes(trace, &Global(hakmem::Hakmem), passes, progress),
        AllocName::System => run_passes(trace, &Global(std::alloc::System), passes, progress),
        AllocName::Mimalloc => run_passes(trace, &Global(mimalloc::MiMalloc), passes, progress),
        AllocName::Jemalloc => run_passes(
            trace,
            &Global(tikv_jemallocator::Jemalloc),
            passes,
            progress,
        ),
        AllocName::Noop => run_passes(trace, &Noop::new(trace)?, passes, progress),
    }
}
