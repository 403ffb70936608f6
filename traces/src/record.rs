//! [`RecordingAlloc`]: a `GlobalAlloc` that wraps another and writes every
//! request the program makes as an hktrace v1 text trace.
//!
//! ```no_run
//! use std::alloc::System;
//! use traces::record::RecordingAlloc;
//!
//! #[global_allocator]
//! static ALLOC: RecordingAlloc<System> = RecordingAlloc::new(System);
//!
//! fn main() -> std::io::Result<()> {
//!     ALLOC.start(Box::new(std::fs::File::create("run.hkt")?))?;
//!     let v: Vec<u64> = (0..1000).collect(); // recorded
//!     drop(v);                              // recorded
//!     let summary = ALLOC.finish()?;
//!     eprintln!("{} events", summary.events);
//!     Ok(())
//! }
//! ```
//!
//! # How it stays out of its own way
//! - **No recursion.** A thread-local reentrancy guard is set while the
//!   recorder does its bookkeeping; any allocation made meanwhile (by the
//!   sink's `write`, say) goes straight to the inner allocator, unrecorded.
//! - **Own memory from the inner allocator.** The address → id table is
//!   allocated with `inner.alloc_zeroed` directly, never through the global
//!   path; the output buffer is inline.
//! - **Short critical section.** The inner allocator is called outside the
//!   lock. The lock covers: assigning ids and tids, the table, formatting
//!   one line into the buffer, and writing the buffer out when full.
//!
//! # Order (why the trace is a valid linearization)
//! - An allocation is recorded after the inner allocator returned and before
//!   the pointer is handed out: any later use of the block by any thread
//!   comes after its line.
//! - A free is recorded (and its address removed from the table) before the
//!   memory goes back to the inner allocator: the address cannot be handed
//!   out again and recorded while its old entry exists.
//! - A realloc takes the old id out of the table first, calls the inner
//!   allocator unlocked, then assigns the new id and writes the `r` line; if
//!   the inner realloc fails, the old entry is put back.
//!
//! # What is written
//! Threads are numbered in the order of their first recorded event (the
//! number is assigned under the lock, as the line is written). Ids count
//! 1, 2, 3, … in line order. A free of an address not allocated while
//! recording (before `start`, say) is dropped, as the format asks; a
//! realloc of such an address is written as an `a` of the new block.
//!
//! The sink must not take a lock that code allocating meanwhile could hold
//! (a `File` is right; `Stderr` can deadlock).

use crate::event::Event;
use crate::text::{format_event, HEADER, MAX_EVENT_LINE};
use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Bytes of formatted lines buffered before a write to the sink (32 KiB).
pub const OUT_BUF: usize = 32 << 10;

/// Initial slots of the address table (4096 slots, 64 KiB).
const TABLE_INITIAL: usize = 1 << 12;

/// Session numbers: each `start` takes a fresh one, so that thread numbers
/// cached in thread-locals by an earlier session are not reused.
static SESSION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set while this thread is inside the recorder's bookkeeping.
    static GUARD: Cell<bool> = const { Cell::new(false) };
    /// `(session, tid)`: this thread's number in the session, if assigned.
    static TID: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// The reentrancy guard: at most one per thread at a time.
struct Guard;

impl Guard {
    /// `None` if this thread is already inside the recorder (or its
    /// thread-locals are unavailable): the caller must not record.
    fn enter() -> Option<Guard> {
        GUARD
            .try_with(|g| {
                if g.get() {
                    None
                } else {
                    g.set(true);
                    Some(Guard)
                }
            })
            .ok()
            .flatten()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = GUARD.try_with(|g| g.set(false));
    }
}

#[derive(Clone, Copy)]
struct Slot {
    /// 0 = empty (no allocation has address 0).
    addr: usize,
    id: u64,
}

/// Address → id, open addressing with linear probing and backward-shift
/// deletion, in memory from the inner allocator.
///
/// # Invariants
/// - `ptr` is null iff `cap` = 0; else it holds `cap` (a power of two) slots
///   allocated with `Self::layout(cap)` from the recorder's inner allocator;
/// - `len` = number of non-empty slots ≤ `cap / 2`;
/// - every entry is reachable from its home slot without crossing an empty one.
struct AddrTable {
    ptr: *mut Slot,
    cap: usize,
    len: usize,
}

// SAFETY: the table exclusively owns its slot memory; it is only accessed
// through `&mut self` under the recorder's mutex.
unsafe impl Send for AddrTable {}

impl AddrTable {
    const fn empty() -> AddrTable {
        AddrTable {
            ptr: core::ptr::null_mut(),
            cap: 0,
            len: 0,
        }
    }

    fn layout(cap: usize) -> Option<Layout> {
        Layout::array::<Slot>(cap).ok()
    }

    #[inline]
    fn home(addr: usize, cap: usize) -> usize {
        // Blocks are at least 8-aligned: drop the low bits, then Fibonacci-hash.
        let h = ((addr >> 3) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 32) as usize & (cap - 1)
    }

    fn slots(&mut self) -> &mut [Slot] {
        if self.cap == 0 {
            return &mut [];
        }
        // SAFETY: by the invariant `ptr` holds `cap` initialised (zeroed or
        // written) slots that only this table uses, and `&mut self` is unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.cap) }
    }

    /// Resizes to `cap` slots; false if the inner allocator refused.
    fn resize<A: GlobalAlloc>(&mut self, inner: &A, cap: usize) -> bool {
        let Some(layout) = Self::layout(cap) else {
            return false;
        };
        // SAFETY: `layout` has a non-zero size (cap ≥ TABLE_INITIAL > 0).
        let new = unsafe { inner.alloc_zeroed(layout) }.cast::<Slot>();
        if new.is_null() {
            return false;
        }
        // SAFETY: `new` holds `cap` zeroed slots, i.e. all empty.
        let dst = unsafe { core::slice::from_raw_parts_mut(new, cap) };
        for s in self.slots().iter().filter(|s| s.addr != 0) {
            let mut i = Self::home(s.addr, cap);
            while dst[i].addr != 0 {
                i = (i + 1) & (cap - 1);
            }
            dst[i] = *s;
        }
        self.release(inner);
        let len = dst.iter().filter(|s| s.addr != 0).count();
        self.ptr = new;
        self.cap = cap;
        self.len = len;
        true
    }

    /// Inserts `addr → id` (`addr` absent); false if growing failed.
    fn insert<A: GlobalAlloc>(&mut self, inner: &A, addr: usize, id: u64) -> bool {
        if (self.len + 1) * 2 > self.cap {
            let cap = (self.cap * 2).max(TABLE_INITIAL);
            if !self.resize(inner, cap) {
                return false;
            }
        }
        let cap = self.cap;
        let slots = self.slots();
        let mut i = Self::home(addr, cap);
        while slots[i].addr != 0 {
            i = (i + 1) & (cap - 1);
        }
        slots[i] = Slot { addr, id };
        self.len += 1;
        true
    }

    /// Removes `addr`, returning its id.
    fn remove(&mut self, addr: usize) -> Option<u64> {
        if self.cap == 0 || addr == 0 {
            return None;
        }
        let cap = self.cap;
        let mask = cap - 1;
        let slots = self.slots();
        let mut i = Self::home(addr, cap);
        loop {
            match slots[i].addr {
                0 => return None,
                a if a == addr => break,
                _ => i = (i + 1) & mask,
            }
        }
        let id = slots[i].id;
        // Backward shift: pull later entries of the run into the hole when
        // the hole lies between their home and their slot.
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let s = slots[j];
            if s.addr == 0 {
                break;
            }
            let home = Self::home(s.addr, cap);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                slots[hole] = s;
                hole = j;
            }
        }
        slots[hole].addr = 0;
        self.len -= 1;
        Some(id)
    }

    /// Gives the memory back to `inner`; the table is empty afterwards.
    fn release<A: GlobalAlloc>(&mut self, inner: &A) {
        if let (false, Some(layout)) = (self.ptr.is_null(), Self::layout(self.cap)) {
            // SAFETY: by the invariant `ptr` was allocated from `inner` with
            // exactly this layout, and nothing refers to it after this.
            unsafe { inner.dealloc(self.ptr.cast(), layout) };
        }
        *self = AddrTable::empty();
    }
}

/// Everything behind the recorder's lock.
struct State {
    /// Where lines go; `Some` iff recording.
    sink: Option<Box<dyn Write + Send>>,
    /// The error that stopped recording, if any.
    error: Option<io::Error>,
    buf: [u8; OUT_BUF],
    len: usize,
    table: AddrTable,
    session: u64,
    next_id: u64,
    next_tid: u64,
    events: u64,
    dropped_frees: u64,
}

impl State {
    const fn new() -> State {
        State {
            sink: None,
            error: None,
            buf: [0; OUT_BUF],
            len: 0,
            table: AddrTable::empty(),
            session: 0,
            next_id: 1,
            next_tid: 0,
            events: 0,
            dropped_frees: 0,
        }
    }

    /// This thread's number in the session, assigned now if it has none.
    fn tid(&mut self) -> Option<u64> {
        let session = self.session;
        let next = &mut self.next_tid;
        TID.try_with(|c| {
            let (s, t) = c.get();
            if s == session {
                t
            } else {
                let t = *next;
                *next += 1;
                c.set((session, t));
                t
            }
        })
        .ok()
    }

    /// Writes the buffer to the sink.
    fn drain(&mut self) -> io::Result<()> {
        if let Some(sink) = self.sink.as_mut() {
            sink.write_all(&self.buf[..self.len])?;
        }
        self.len = 0;
        Ok(())
    }

    fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.len + bytes.len() > OUT_BUF {
            self.drain()?;
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        Ok(())
    }

    fn emit(&mut self, ev: &Event) {
        let mut line = [0u8; MAX_EVENT_LINE];
        let n = format_event(ev, &mut line);
        if let Err(e) = self.push(&line[..n]) {
            self.fail(e);
        } else {
            self.events += 1;
        }
    }

    /// Stops recording because of `e` (reported by `finish`).
    fn fail(&mut self, e: io::Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn recording(&self) -> bool {
        self.sink.is_some() && self.error.is_none()
    }
}

/// What a recording session wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordSummary {
    /// Event lines written.
    pub events: u64,
    /// Threads numbered.
    pub threads: u64,
    /// Frees of addresses not allocated while recording, dropped.
    pub dropped_frees: u64,
    /// Blocks still live when recording stopped.
    pub live_blocks: u64,
}

/// A `GlobalAlloc` that forwards to `A` and, between [`start`] and
/// [`finish`], records every request as an hktrace v1 text trace.
///
/// [`start`]: RecordingAlloc::start
/// [`finish`]: RecordingAlloc::finish
pub struct RecordingAlloc<A: GlobalAlloc> {
    inner: A,
    /// A hint for the fast path; the truth is `State::sink` under the lock.
    active: AtomicBool,
    state: Mutex<State>,
}

impl<A: GlobalAlloc> RecordingAlloc<A> {
    /// A recorder around `inner`, not recording yet.
    pub const fn new(inner: A) -> RecordingAlloc<A> {
        RecordingAlloc {
            inner,
            active: AtomicBool::new(false),
            state: Mutex::new(State::new()),
        }
    }

    /// The wrapped allocator.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; recover from poison anyway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts recording into `sink` (header first). An error if already
    /// recording.
    pub fn start(&self, sink: Box<dyn Write + Send>) -> io::Result<()> {
        let _g = Guard::enter();
        let mut st = self.lock();
        if st.sink.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "RecordingAlloc: already recording",
            ));
        }
        st.table.release(&self.inner);
        st.error = None;
        st.len = 0;
        st.session = SESSION.fetch_add(1, Ordering::Relaxed) + 1;
        st.next_id = 1;
        st.next_tid = 0;
        st.events = 0;
        st.dropped_frees = 0;
        st.sink = Some(sink);
        st.push(HEADER)?;
        st.push(b"\n")?;
        self.active.store(true, Ordering::Release);
        Ok(())
    }

    /// Writes the buffered lines to the sink and flushes it.
    pub fn flush(&self) -> io::Result<()> {
        let _g = Guard::enter();
        let mut st = self.lock();
        if let Some(e) = st.error.take() {
            let err = io::Error::new(e.kind(), e.to_string());
            st.error = Some(e);
            return Err(err);
        }
        st.drain()?;
        match st.sink.as_mut() {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }

    /// Stops recording, writes everything out, flushes and drops the sink.
    /// Reports the first error met while recording, if any.
    pub fn finish(&self) -> io::Result<RecordSummary> {
        let _g = Guard::enter();
        let mut st = self.lock();
        self.active.store(false, Ordering::Release);
        let summary = RecordSummary {
            events: st.events,
            threads: st.next_tid,
            dropped_frees: st.dropped_frees,
            live_blocks: st.table.len as u64,
        };
        let mut result = match st.error.take() {
            Some(e) => Err(e),
            None => st.drain(),
        };
        let sink = st.sink.take();
        st.table.release(&self.inner);
        st.len = 0;
        drop(st);
        if let Some(mut sink) = sink {
            let flushed = sink.flush();
            if result.is_ok() {
                result = flushed;
            }
        }
        result.map(|()| summary)
    }

    /// Records a new block at `p`, ending `old` if given.
    fn record_new(&self, p: *mut u8, layout: Layout, zeroed: bool) {
        let Some(_g) = Guard::enter() else { return };
        let mut st = self.lock();
        if !st.recording() {
            return;
        }
        let Some(tid) = st.tid() else { return };
        let id = st.next_id;
        if !st.table.insert(&self.inner, p as usize, id) {
            st.fail(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "RecordingAlloc: no memory for the address table",
            ));
            return;
        }
        st.next_id += 1;
        let (size, align) = (layout.size() as u64, layout.align() as u64);
        let ev = if zeroed {
            Event::Zeroed {
                tid,
                id,
                size,
                align,
            }
        } else {
            Event::Alloc {
                tid,
                id,
                size,
                align,
            }
        };
        st.emit(&ev);
    }

    /// Records the free of `p`, before the memory goes back.
    fn record_free(&self, p: *mut u8) {
        let Some(_g) = Guard::enter() else { return };
        let mut st = self.lock();
        if !st.recording() {
            return;
        }
        let Some(id) = st.table.remove(p as usize) else {
            st.dropped_frees += 1;
            return;
        };
        let Some(tid) = st.tid() else { return };
        st.emit(&Event::Free { tid, id });
    }
}

// SAFETY: every method forwards to `inner` with the caller's arguments
// unchanged and returns its result unchanged; recording only reads the
// pointers as numbers.
unsafe impl<A: GlobalAlloc> GlobalAlloc for RecordingAlloc<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() && self.active.load(Ordering::Relaxed) {
            self.record_new(p, layout, false);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if !p.is_null() && self.active.load(Ordering::Relaxed) {
            self.record_new(p, layout, true);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.active.load(Ordering::Relaxed) {
            self.record_free(ptr);
        }
        // SAFETY: the caller's contract, forwarded.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let guard = if self.active.load(Ordering::Relaxed) {
            Guard::enter()
        } else {
            None
        };
        let Some(_g) = guard else {
            // SAFETY: the caller's contract, forwarded.
            return unsafe { self.inner.realloc(ptr, layout, new_size) };
        };
        // Phase 1: take the old entry out before the address can be reused.
        let (session, old) = {
            let mut st = self.lock();
            if !st.recording() {
                drop(st);
                // SAFETY: the caller's contract, forwarded.
                return unsafe { self.inner.realloc(ptr, layout, new_size) };
            }
            (st.session, st.table.remove(ptr as usize))
        };
        // SAFETY: the caller's contract, forwarded.
        let q = unsafe { self.inner.realloc(ptr, layout, new_size) };
        // Phase 2: record the outcome.
        let mut st = self.lock();
        if !st.recording() || st.session != session {
            return q;
        }
        if q.is_null() {
            // The old block is still there, at the same address.
            if let Some(old) = old {
                if !st.table.insert(&self.inner, ptr as usize, old) {
                    st.fail(io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        "RecordingAlloc: no memory for the address table",
                    ));
                }
            }
            return q;
        }
        let Some(tid) = st.tid() else { return q };
        let new_id = st.next_id;
        if !st.table.insert(&self.inner, q as usize, new_id) {
            st.fail(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "RecordingAlloc: no memory for the address table",
            ));
            return q;
        }
        st.next_id += 1;
        let (size, align) = (new_size as u64, layout.align() as u64);
        let ev = match old {
            Some(old_id) => Event::Realloc {
                tid,
                old_id,
                new_id,
                size,
                align,
            },
            None => Event::Alloc {
                tid,
                id: new_id,
                size,
                align,
            },
        };
        st.emit(&ev);
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;
    use std::collections::HashMap;

    #[test]
    fn addr_table_matches_a_hashmap() {
        let mut t = AddrTable::empty();
        let mut m = HashMap::new();
        let mut x: u32 = 7;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let addr = ((x % 50_000) as usize + 1) * 16;
            if let Some(id) = m.remove(&addr) {
                assert_eq!(t.remove(addr), Some(id));
            } else {
                assert_eq!(t.remove(addr), None);
                assert!(t.insert(&System, addr, i));
                m.insert(addr, i);
            }
            assert_eq!(t.len, m.len());
        }
        for (&a, &id) in &m {
            assert_eq!(t.remove(a), Some(id));
        }
        assert_eq!(t.len, 0);
        t.release(&System);
    }
}
