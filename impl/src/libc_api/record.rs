//! Record mode of the C API: `HAKMEM_TRACE=path` writes the program's
//! requests as an hktrace v1 text trace (`docs/traces.md`,
//! `shared/docs/trace-format.md`).
//!
//! # Files
//! The process that starts recording first (the *root*) writes `path` and
//! puts `HAKMEM_TRACE_PID=<its pid>` into its environment. Any other process
//! (a `fork` child, or a program it executes, also through `vfork`/
//! `posix_spawn`) writes `path.<pid>`: a `fork` child switches files in its
//! `pthread_atfork` handler, an executed program sees a foreign
//! `HAKMEM_TRACE_PID`. A program executed without fork by the root itself
//! (same pid) rewrites `path`.
//!
//! # What is written
//! `malloc` → `a … 16`, `calloc` → `z` with the product, the memalign family
//! → `a` with its alignment (at least 16), `realloc(NULL, n)` → `a`,
//! `realloc(p, 0)` → `f`, other reallocs → `r` (or `a` when the old block
//! was not seen allocated). Frees of unknown pointers and `free(NULL)` are
//! dropped; failed requests are not written. Thread ids count from 0 in the
//! order of each thread's first line; block ids from 1 in line order.
//!
//! # Order (why the trace is a valid linearization)
//! - An allocation is written after the allocator returned and before the
//!   pointer reaches the program.
//! - A free is written, and its address leaves the table, before the block
//!   goes back to the allocator, so its address cannot be handed out and
//!   written again before the `f` line.
//! - A realloc takes its old entry out of the table first, calls the
//!   allocator, then writes `r` (or puts the entry back if it failed).
//!
//! So no allocator call happens under the recorder's lock. The lock covers
//! the table update, ids, formatting into a 64 KiB buffer, and the
//! `write(2)` when the buffer is full: record mode serialises all threads'
//! requests on one spin lock, a few hundred nanoseconds each plus the
//! writes (it is for recording, not for production).
//!
//! # Own memory
//! The address → id table is open addressing with linear probing in an
//! `os::map` mapping (never malloc), doubled when 3/4 full. A per-thread
//! guard sends requests made while the recorder runs (none today; glibc's
//! `putenv`/`atexit`/`pthread_atfork` during set-up are excluded by the
//! `INIT` state) straight to the allocator. Lines are formatted with a
//! local `u64` printer: the `traces` crate's `format_event` is allocation-
//! free too, but `traces` will depend on `hakmem` (for `hktrace check`) and
//! brings zstd's C code, so `impl` cannot use it.
//!
//! # Limits
//! The buffer is written when full and at `exit` (an `atexit` handler;
//! afterwards every line is written at once). A process that ends with
//! `_exit`, a signal or `exec` loses its unwritten lines (at most 64 KiB):
//! the file is then a valid prefix of its trace, unless the last line was
//! cut by the buffer boundary, which cannot happen as the buffer is only
//! written whole lines.

use crate::diag::StackWriter;
use core::cell::{Cell, UnsafeCell};
use core::fmt::Write;
use core::ptr::{self, null_mut};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

const UNKNOWN: u8 = 0;
const INIT: u8 = 1;
const OFF: u8 = 2;
const ON: u8 = 3;

static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

thread_local! {
    /// Set while this thread is inside the recorder.
    static GUARD: Cell<bool> = const { Cell::new(false) };
    /// This thread's trace id (`u64::MAX` before its first line) and the
    /// trace generation it belongs to (a fork child starts a new trace).
    static TID: Cell<(u64, u64)> = const { Cell::new((u64::MAX, 0)) };
}

/// A request being recorded (the calling thread's guard is set until it is
/// dropped).
pub struct Rec(());

/// `Some` when this request must be recorded: record mode is on and the
/// thread is not inside the recorder already. One relaxed load when off.
#[inline(always)]
pub fn begin() -> Option<Rec> {
    if MODE.load(Ordering::Relaxed) == OFF {
        return None;
    }
    begin_slow()
}

#[cold]
#[inline(never)]
fn begin_slow() -> Option<Rec> {
    let mut m = MODE.load(Ordering::Acquire);
    if m == UNKNOWN
        && MODE
            .compare_exchange(UNKNOWN, INIT, Ordering::Acquire, Ordering::Acquire)
            .is_ok()
    {
        m = if start() { ON } else { OFF };
        if m == ON {
            // From now on every request reaches a slow path, where `begin`
            // sees it: the fast paths of `malloc`/`free` have no record
            // test. Only this thread has a heap yet (`tls::divert_fast_paths`).
            crate::tls::divert_fast_paths();
        }
        MODE.store(m, Ordering::Release);
    }
    if m != ON || GUARD.with(|g| g.replace(true)) {
        return None;
    }
    Some(Rec(()))
}

impl Drop for Rec {
    fn drop(&mut self) {
        GUARD.with(|g| g.set(false));
    }
}

impl Rec {
    /// Records the allocation of `p` (nothing if null).
    pub fn alloc(&self, p: *mut u8, size: usize, align: usize, zeroed: bool) {
        if p.is_null() {
            return;
        }
        with_state(|s| {
            let id = s.new_id();
            s.table.insert(p as usize, id);
            let tid = s.tid();
            s.line(
                if zeroed { b'z' } else { b'a' },
                &[tid, id, size as u64, align as u64],
            );
        });
    }

    /// Records the free of `p` if it is a recorded block.
    pub fn free(&self, p: *mut u8) {
        if p.is_null() {
            return;
        }
        with_state(|s| {
            if let Some(id) = s.table.remove(p as usize) {
                let tid = s.tid();
                s.line(b'f', &[tid, id]);
            }
        });
    }

    /// Takes `p`'s entry out of the table before a realloc.
    pub fn take(&self, p: *mut u8) -> Option<u64> {
        with_state(|s| s.table.remove(p as usize))
    }

    /// Records a realloc of `old` (the entry [`Rec::take`] returned, at
    /// `old_ptr`) into `new_ptr`; a failed one (null) puts `old` back.
    pub fn realloc(&self, old: Option<u64>, old_ptr: *mut u8, new_ptr: *mut u8, size: usize) {
        with_state(|s| {
            if new_ptr.is_null() {
                if let Some(id) = old {
                    s.table.insert(old_ptr as usize, id);
                }
                return;
            }
            let id = s.new_id();
            s.table.insert(new_ptr as usize, id);
            let tid = s.tid();
            match old {
                Some(o) => s.line(b'r', &[tid, o, id, size as u64, 16]),
                None => s.line(b'a', &[tid, id, size as u64, 16]),
            }
        });
    }
}

// ------------------------------------------------------------- the state --

const BUF: usize = 64 << 10;
const PATH_MAX: usize = 4096;

struct State {
    fd: i32,
    /// Write every line at once (after the exit flush).
    sync: bool,
    len: usize,
    buf: [u8; BUF],
    next_id: u64,
    next_tid: u64,
    /// Bumped by a fork child: thread ids of older generations are stale.
    generation: u64,
    table: Table,
    /// `HAKMEM_TRACE`'s value, NUL-terminated.
    base: [u8; PATH_MAX],
    base_len: usize,
}

struct Global {
    lock: AtomicBool,
    state: UnsafeCell<State>,
}

// SAFETY: `state` is only touched with `lock` held (or by the one thread of
// a fork child, or by the thread in `INIT` before the mode is published).
unsafe impl Sync for Global {}

static G: Global = Global {
    lock: AtomicBool::new(false),
    state: UnsafeCell::new(State {
        fd: -1,
        sync: false,
        len: 0,
        buf: [0; BUF],
        next_id: 1,
        next_tid: 0,
        generation: 0,
        table: Table::EMPTY,
        base: [0; PATH_MAX],
        base_len: 0,
    }),
};

fn lock() {
    while G
        .lock
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        while G.lock.load(Ordering::Relaxed) {
            // SAFETY: a plain syscall.
            unsafe { libc::sched_yield() };
        }
    }
}

fn unlock() {
    G.lock.store(false, Ordering::Release);
}

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    lock();
    // SAFETY: the lock is held.
    let r = f(unsafe { &mut *G.state.get() });
    unlock();
    r
}

impl State {
    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The calling thread's trace id, assigned at its first line.
    fn tid(&mut self) -> u64 {
        let (t, gen) = TID.with(|c| c.get());
        if t != u64::MAX && gen == self.generation {
            return t;
        }
        let t = self.next_tid;
        self.next_tid += 1;
        TID.with(|c| c.set((t, self.generation)));
        t
    }

    fn line(&mut self, letter: u8, fields: &[u64]) {
        if self.len + 128 > BUF {
            self.flush();
        }
        let out = &mut self.buf[self.len..];
        out[0] = letter;
        let mut pos = 1;
        for &v in fields {
            out[pos] = b' ';
            pos += 1;
            pos += put_u64(&mut out[pos..], v);
        }
        out[pos] = b'\n';
        self.len += pos + 1;
        if self.sync {
            self.flush();
        }
    }

    fn flush(&mut self) {
        crate::diag::write_all(self.fd, &self.buf[..self.len]);
        self.len = 0;
    }

    /// Opens the trace file (`base` or `base.<pid>`) and writes the header
    /// to it; false (with a message) if it cannot be opened.
    fn open(&mut self, with_pid: bool) -> bool {
        let mut name = [0u8; PATH_MAX + 24];
        let n = self.base_len;
        name[..n].copy_from_slice(&self.base[..n]);
        let mut len = n;
        if with_pid {
            name[len] = b'.';
            len += 1;
            // SAFETY: a plain syscall.
            len += put_u64(&mut name[len..], unsafe { libc::getpid() } as u64);
        }
        name[len] = 0;
        // SAFETY: `name` is NUL-terminated.
        let fd = unsafe {
            libc::open(
                name.as_ptr().cast(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd < 0 {
            let mut w = StackWriter::<{ PATH_MAX + 128 }>::new();
            let shown = core::str::from_utf8(&name[..len]).unwrap_or("(not UTF-8)");
            let _ = writeln!(
                w,
                "hakmem: HAKMEM_TRACE: cannot create {shown}; not recording"
            );
            w.flush_to(2);
            return false;
        }
        self.fd = fd;
        // The header goes out at once: a process that leaves through
        // `_exit` (a fork child that execs nothing, say) never runs the
        // exit flush, and its file must still be a valid trace (the header
        // and every whole buffer flushed before).
        crate::diag::write_all(fd, b"hktrace 1\n");
        self.len = 0;
        true
    }
}

/// Writes `n` in decimal at the start of `out`; returns the digits written.
fn put_u64(out: &mut [u8], mut n: u64) -> usize {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = tmp.len() - i;
    out[..len].copy_from_slice(&tmp[i..]);
    len
}

fn getenv(name: &[u8]) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; getenv returns null or a C string
    // that lives as long as the environment entry.
    let p = unsafe { libc::getenv(name.as_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated string.
    Some(unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes())
}

/// `HAKMEM_TRACE_PID=<pid>\0` for the root's environment (putenv keeps the
/// pointer, so it lives in static memory).
static PID_VAR: PidVar = PidVar(UnsafeCell::new([0; 48]));
struct PidVar(UnsafeCell<[u8; 48]>);
// SAFETY: written once, by the thread in `INIT`, before `putenv`.
unsafe impl Sync for PidVar {}

/// Set-up, by the one thread that moved the mode to `INIT` (other threads,
/// and this one's nested calls, are not recorded meanwhile).
fn start() -> bool {
    let Some(path) = getenv(b"HAKMEM_TRACE\0") else {
        return false;
    };
    if path.is_empty() {
        return false;
    }
    // SAFETY: we are the only user of the state during INIT.
    let s = unsafe { &mut *G.state.get() };
    if path.len() >= PATH_MAX {
        crate::diag::write_all(2, b"hakmem: HAKMEM_TRACE: path too long; not recording\n");
        return false;
    }
    s.base[..path.len()].copy_from_slice(path);
    s.base_len = path.len();
    // SAFETY: a plain syscall.
    let pid = unsafe { libc::getpid() } as u64;
    let root = getenv(b"HAKMEM_TRACE_PID\0").map(|v| {
        core::str::from_utf8(v)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
    });
    let with_pid = match root {
        None => {
            // SAFETY: written once here, before it is published by putenv.
            let var = unsafe { &mut *PID_VAR.0.get() };
            let pre = b"HAKMEM_TRACE_PID=";
            var[..pre.len()].copy_from_slice(pre);
            let n = pre.len() + put_u64(&mut var[pre.len()..], pid);
            var[n] = 0;
            // SAFETY: a static NUL-terminated `NAME=value` string; putenv may
            // allocate (not recorded: the mode is INIT).
            unsafe { libc::putenv(var.as_mut_ptr().cast()) };
            false
        }
        Some(r) => r != Some(pid),
    };
    if !s.table.init() {
        crate::diag::write_all(2, b"hakmem: HAKMEM_TRACE: out of memory; not recording\n");
        return false;
    }
    if !s.open(with_pid) {
        return false;
    }
    // SAFETY: plain `extern "C"` functions that never unwind.
    unsafe {
        libc::atexit(flush_at_exit);
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
    }
    true
}

extern "C" fn flush_at_exit() {
    with_state(|s| {
        s.flush();
        s.sync = true;
    });
}

extern "C" fn fork_prepare() {
    lock();
}

extern "C" fn fork_parent() {
    unlock();
}

/// The child starts its own trace in `path.<pid>`: blocks inherited from
/// the parent are unknown to it (their frees are dropped), ids and thread
/// ids start again.
extern "C" fn fork_child() {
    // SAFETY: the child's only thread; the lock was taken by the prepare
    // handler, so the state is consistent.
    let s = unsafe { &mut *G.state.get() };
    if s.fd >= 0 {
        // SAFETY: our descriptor; the parent keeps its own copy.
        unsafe { libc::close(s.fd) };
        s.fd = -1;
    }
    s.len = 0;
    s.sync = false;
    s.next_id = 1;
    s.next_tid = 0;
    s.generation += 1;
    s.table.clear();
    if !s.open(true) {
        MODE.store(OFF, Ordering::Relaxed);
    }
    unlock();
}

// ------------------------------------------------------- address → id --

/// Open addressing with linear probing and backward-shift deletion; key 0
/// is empty (null is never stored).
///
/// # Invariants
/// `len < cap * 3 / 4`; every key sits at or after its home slot with no
/// empty slot in between (cyclically).
struct Table {
    slots: *mut [u64; 2],
    cap: usize,
    len: usize,
}

impl Table {
    const EMPTY: Table = Table {
        slots: null_mut(),
        cap: 0,
        len: 0,
    };
    /// Slots of a new table (small under Miri, which emulates every access).
    const INITIAL: usize = if cfg!(miri) { 1 << 8 } else { 1 << 16 };

    fn init(&mut self) -> bool {
        match Self::map(Self::INITIAL) {
            Some(p) => {
                self.slots = p;
                self.cap = Self::INITIAL;
                self.len = 0;
                true
            }
            None => false,
        }
    }

    fn map(cap: usize) -> Option<*mut [u64; 2]> {
        crate::os::map(cap * 16, 4096).map(|p| p.as_ptr().cast())
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        ((key >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) as usize & (self.cap - 1)
    }

    fn get(&self, i: usize) -> [u64; 2] {
        debug_assert!(i < self.cap);
        // SAFETY: `i < cap` slots are mapped; the table is used under the lock.
        unsafe { self.slots.add(i).read() }
    }

    fn set(&mut self, i: usize, v: [u64; 2]) {
        debug_assert!(i < self.cap);
        // SAFETY: as in `get`.
        unsafe { self.slots.add(i).write(v) }
    }

    fn insert(&mut self, addr: usize, id: u64) {
        if self.cap == 0 {
            return;
        }
        if (self.len + 1) * 4 > self.cap * 3 && !self.grow() {
            return; // out of memory: the block stays unknown (its free is dropped)
        }
        let key = addr as u64;
        let mut i = self.home(key);
        loop {
            let s = self.get(i);
            if s[0] == 0 || s[0] == key {
                if s[0] == 0 {
                    self.len += 1;
                }
                self.set(i, [key, id]);
                return;
            }
            i = (i + 1) & (self.cap - 1);
        }
    }

    fn remove(&mut self, addr: usize) -> Option<u64> {
        if self.cap == 0 {
            return None;
        }
        let key = addr as u64;
        let mask = self.cap - 1;
        let mut i = self.home(key);
        loop {
            let s = self.get(i);
            if s[0] == 0 {
                return None;
            }
            if s[0] == key {
                break;
            }
            i = (i + 1) & mask;
        }
        let id = self.get(i)[1];
        // Backward shift: move later entries of the run into the hole when
        // their home is not between the hole and their position.
        let mut hole = i;
        let mut j = (i + 1) & mask;
        loop {
            let s = self.get(j);
            if s[0] == 0 {
                break;
            }
            let h = self.home(s[0]);
            let dist_h = j.wrapping_sub(h) & mask;
            let dist_hole = j.wrapping_sub(hole) & mask;
            if dist_h >= dist_hole {
                self.set(hole, s);
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.set(hole, [0, 0]);
        self.len -= 1;
        Some(id)
    }

    fn grow(&mut self) -> bool {
        let new_cap = self.cap * 2;
        let Some(p) = Self::map(new_cap) else {
            return false;
        };
        let old = core::mem::replace(
            self,
            Table {
                slots: p,
                cap: new_cap,
                len: 0,
            },
        );
        for i in 0..old.cap {
            let s = old.get(i);
            if s[0] != 0 {
                self.insert(s[0] as usize, s[1]);
            }
        }
        old.unmap();
        true
    }

    fn clear(&mut self) {
        if self.cap > 0 {
            // SAFETY: `cap` slots are mapped.
            unsafe { ptr::write_bytes(self.slots, 0, self.cap) };
        }
        self.len = 0;
    }

    fn unmap(self) {
        if let Some(p) = core::ptr::NonNull::new(self.slots.cast::<u8>()) {
            // SAFETY: mapped by `map(cap)` and no longer used.
            unsafe { crate::os::unmap(p, self.cap * 16, 4096) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_insert_remove_grow() {
        let mut t = Table::EMPTY;
        assert!(t.init());
        // Forces two doublings (3 × INITIAL keys).
        let n = 3 * Table::INITIAL as u64;
        for i in 1..=n {
            t.insert((i * 48) as usize, i);
        }
        assert_eq!(t.len, n as usize);
        for i in (1..=n).step_by(3) {
            assert_eq!(t.remove((i * 48) as usize), Some(i));
        }
        for i in 1..=n {
            let want = if (i - 1) % 3 == 0 { None } else { Some(i) };
            assert_eq!(t.remove((i * 48) as usize), want, "key {i}");
        }
        assert_eq!(t.len, 0);
        assert_eq!(t.remove(4096), None);
        t.unmap();
    }

    #[test]
    fn put_u64_digits() {
        let mut b = [0u8; 20];
        let n = put_u64(&mut b, u64::MAX);
        assert_eq!(&b[..n], b"18446744073709551615");
        let n = put_u64(&mut b, 0);
        assert_eq!(&b[..n], b"0");
    }
}
