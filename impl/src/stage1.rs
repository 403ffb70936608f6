//! Stage 1: per-class lock-free LIFO lists of `(ss, slot)` entries naming
//! `Empty` slots, in nodes from a bounded node pool shared by all classes,
//! with a spin-lock-protected fallback list per class when the pool is
//! exhausted (the C version crashed there). Nothing here allocates: the
//! nodes live in one OS mapping made when the instance is created, and the
//! fallback list is intrusive (a link in the slot metadata).
//!
//! The list heads are tagged `(tag << 32) | (index + 1)` words: every
//! successful CAS bumps the tag, so a node popped and pushed again between a
//! popper's load and its CAS (ABA) makes that CAS fail. Nodes are never
//! freed, so reading a node that another thread popped meanwhile is safe
//! (its fields are atomics).
//!
//! # Invariants
//! - Every node is in exactly one place: the free pool (its list, or the
//!   never-used nodes `fresh..n_nodes`) or one class list (or held by
//!   exactly one thread between its pop and its push).
//! - Only nodes below `fresh` have been written; a node becomes reachable
//!   from a list head only after it was written.
//! - An entry goes to the fallback list exactly when the pool is empty.
//! - A slot is at most once on its class's fallback list (`queued`).

use crate::os;
use crate::size_class::NUM_CLASSES;
pub use crate::superslab::FbLink;
use crate::superslab::SlotMeta;
use crate::sync::{AtomicOps, Backend, CellOps, Mutant, Ordering, SpinLock};
use core::ptr::{null_mut, NonNull};

const NIL: u32 = 0;

/// One node of the pool.
pub struct Node<B: Backend> {
    /// Next node (index + 1; 0 = end).
    next: B::AtomicU32,
    /// The slot the entry names.
    entry: B::AtomicPtr<SlotMeta<B>>,
}

/// Access to a slot's fallback link.
///
/// # Safety
/// The fallback lock is held and `slot` is a live slot.
unsafe fn fb<B: Backend, R>(slot: *mut SlotMeta<B>, f: impl FnOnce(&mut FbLink<B>) -> R) -> R {
    // SAFETY: forwarded contract: the lock serialises every access.
    unsafe { (*slot).fb.with_mut(|p| f(&mut *p)) }
}

/// The head of one class's fallback list.
pub(crate) struct FallbackList<B: Backend> {
    head: *mut SlotMeta<B>,
    len: usize,
}

/// Where a stage-1 entry came from (defined with the observer's events,
/// which report it: `observe` is below every protocol layer).
pub use crate::observe::Stage1Source as Source;

/// The stage-1 lists of one instance.
pub struct Stage1<B: Backend> {
    heads: [B::AtomicU64; NUM_CLASSES],
    pool: B::AtomicU64,
    /// Nodes `0..fresh` have been written (handed out at least once); the
    /// others are untouched memory, free.
    fresh: B::AtomicU32,
    nodes: *mut Node<B>,
    n_nodes: usize,
    map_bytes: usize,
    fallback_lock: SpinLock<B>,
    fallback: B::Cell<[FallbackList<B>; NUM_CLASSES]>,
}

// SAFETY: the raw node pointer refers to the instance-owned mapping; all
// node fields are atomics; the fallback lists are guarded by their lock.
unsafe impl<B: Backend> Send for Stage1<B> {}
// SAFETY: as above.
unsafe impl<B: Backend> Sync for Stage1<B> {}

#[inline]
fn pack(tag: u64, idx1: u32) -> u64 {
    (tag << 32) | idx1 as u64
}
#[inline]
fn unpack(w: u64) -> (u64, u32) {
    (w >> 32, w as u32)
}

impl<B: Backend> Stage1<B> {
    /// The node pool's mapping: address and bytes (residency diagnostic).
    pub(crate) fn pool_mapping(&self) -> (usize, usize) {
        (self.nodes as usize, self.map_bytes)
    }

    /// The lock of the fallback lists (held across `fork`).
    pub(crate) fn fallback_lock(&self) -> &SpinLock<B> {
        &self.fallback_lock
    }

    /// A pool of `n_nodes` nodes (one OS mapping); `None` if it cannot be
    /// mapped.
    pub fn new(n_nodes: usize) -> Option<Self> {
        assert!(n_nodes < u32::MAX as usize);
        let bytes = os::round_up(
            (n_nodes.max(1)) * core::mem::size_of::<Node<B>>(),
            os::OS_PAGE,
        )?;
        // The nodes are written when first handed out (`pool_pop`), so an
        // instance whose stage-1 lists stay short touches one page of the
        // mapping, not all of it (64 KiB for the default 4096 nodes).
        let nodes = os::map(bytes, os::OS_PAGE)?.as_ptr().cast::<Node<B>>();
        Some(Self {
            heads: core::array::from_fn(|_| B::AtomicU64::new(0)),
            pool: B::AtomicU64::new(0),
            fresh: B::AtomicU32::new(0),
            nodes,
            n_nodes,
            map_bytes: bytes,
            fallback_lock: SpinLock::new(),
            fallback: B::Cell::new(core::array::from_fn(|_| FallbackList {
                head: null_mut(),
                len: 0,
            })),
        })
    }

    /// A free node: the pool list's head, else one never used (written
    /// now); `None` when all `n_nodes` are in use.
    fn pool_pop(&self) -> Option<u32> {
        if let Some(idx) = self.pop_idx(&self.pool) {
            return Some(idx);
        }
        let mut f = self.fresh.load(Ordering::Relaxed);
        loop {
            if f as usize >= self.n_nodes {
                return None;
            }
            match self
                .fresh
                .compare_exchange_weak(f, f + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(x) => f = x,
            }
        }
        // SAFETY: index `f < n_nodes` lies inside the mapping and was never
        // handed out: this thread is its only user until it publishes the
        // node with a push (a `SeqCst` CAS, after this write).
        unsafe {
            self.nodes.add(f as usize).write(Node {
                next: B::AtomicU32::new(NIL),
                entry: B::AtomicPtr::new(null_mut()),
            })
        };
        Some(f + 1)
    }

    #[inline]
    fn node(&self, idx1: u32) -> &Node<B> {
        debug_assert!(idx1 >= 1 && idx1 as usize <= self.n_nodes);
        // SAFETY: indices come from the pool (1..=n_nodes); nodes live as
        // long as the instance.
        unsafe { &*self.nodes.add(idx1 as usize - 1) }
    }

    fn push_idx(&self, head: &B::AtomicU64, idx1: u32) {
        let mut h = head.load(Ordering::Relaxed);
        loop {
            let (tag, top) = unpack(h);
            self.node(idx1).next.store(top, Ordering::Relaxed);
            match head.compare_exchange_weak(
                h,
                pack(tag.wrapping_add(1), idx1),
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(x) => h = x,
            }
        }
    }

    fn pop_idx(&self, head: &B::AtomicU64) -> Option<u32> {
        let mut h = head.load(Ordering::SeqCst);
        loop {
            let (tag, top) = unpack(h);
            if top == NIL {
                return None;
            }
            let next = self.node(top).next.load(Ordering::Relaxed);
            match head.compare_exchange_weak(
                h,
                pack(tag.wrapping_add(1), next),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Some(top),
                Err(x) => h = x,
            }
        }
    }

    /// Pushes an entry for `slot` on `class`'s list, or on the fallback when
    /// the pool is empty. Returns the source used.
    ///
    /// # Safety
    /// `slot` is a slot of a live SuperSlab of this instance that the caller
    /// just made `Empty` (counted in `readers` until the push returns).
    pub unsafe fn push(&self, class: usize, slot: *mut SlotMeta<B>) -> Source {
        match self.pool_pop() {
            Some(idx) => {
                self.node(idx).entry.store(slot, Ordering::Relaxed);
                self.push_idx(&self.heads[class], idx);
                Source::List
            }
            None => {
                if B::MUTANT == Mutant::PoolExhaustedDropsEntry {
                    return Source::Fallback;
                }
                let _g = self.fallback_lock.lock();
                // SAFETY: the fallback lock is held; `slot` is a live slot
                // (its SuperSlab cannot be released while we hold the slot
                // Empty-and-unretired under our caller).
                unsafe { self.fallback_push_locked(class, slot) };
                Source::Fallback
            }
        }
    }

    /// # Safety
    /// The fallback lock is held.
    unsafe fn fallback_push_locked(&self, class: usize, slot: *mut SlotMeta<B>) {
        // SAFETY: lock held (forwarded); `fb` links are only touched under it.
        unsafe {
            fb(slot, |link| {
                if link.queued {
                    return;
                }
                self.fallback.with_mut(|f| {
                    let l = &mut (*f)[class];
                    link.next = l.head;
                    link.queued = true;
                    l.head = slot;
                    l.len += 1;
                });
            })
        }
    }

    /// Pops the head entry of `class`'s list (node back to the pool), else of
    /// its fallback list.
    pub fn pop(&self, class: usize) -> Option<(*mut SlotMeta<B>, Source)> {
        if let Some(idx) = self.pop_idx(&self.heads[class]) {
            let slot = self.node(idx).entry.load(Ordering::Relaxed);
            if B::MUTANT != Mutant::Stage1LeaksNode {
                self.push_idx(&self.pool, idx);
            }
            return Some((slot, Source::List));
        }
        let _g = self.fallback_lock.lock();
        self.fallback.with_mut(|f| {
            // SAFETY: the fallback lock is held.
            let l = unsafe { &mut (*f)[class] };
            if l.head.is_null() {
                return None;
            }
            let slot = l.head;
            // SAFETY: lock held; `slot` is queued, so its SuperSlab is live
            // (release removes its entries first).
            unsafe {
                fb(slot, |link| {
                    l.head = link.next;
                    link.next = null_mut();
                    link.queued = false;
                })
            }
            l.len -= 1;
            Some((slot, Source::Fallback))
        })
    }

    /// Removes every entry naming a slot in `[base, base + 2 MiB)` from all
    /// lists and fallbacks (nodes back to the pool). Call under the pool
    /// lock, for a SuperSlab with no `Empty` slot left (so no new entry for
    /// it can be pushed meanwhile). Returns how many were removed.
    pub fn remove_superslab(&self, base: usize) -> usize {
        let names = |s: *mut SlotMeta<B>| (s as usize) & !crate::chunkmap::CHUNK_MASK == base;
        let mut removed = 0;
        for class in 0..NUM_CLASSES {
            let head = &self.heads[class];
            // Take the whole list.
            let mut h = head.load(Ordering::SeqCst);
            let top = loop {
                let (tag, top) = unpack(h);
                if top == NIL {
                    break NIL;
                }
                match head.compare_exchange(
                    h,
                    pack(tag.wrapping_add(1), NIL),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => break top,
                    Err(x) => h = x,
                }
            };
            if top == NIL {
                continue;
            }
            // Filter the private chain, keeping order.
            let (mut first, mut last) = (NIL, NIL);
            let mut cur = top;
            while cur != NIL {
                let nx = self.node(cur).next.load(Ordering::Relaxed);
                if names(self.node(cur).entry.load(Ordering::Relaxed)) {
                    self.push_idx(&self.pool, cur);
                    removed += 1;
                } else {
                    if last == NIL {
                        first = cur;
                    } else {
                        self.node(last).next.store(cur, Ordering::Relaxed);
                    }
                    last = cur;
                }
                cur = nx;
            }
            if first == NIL {
                continue;
            }
            // Put the kept chain back on top.
            let mut h = head.load(Ordering::Relaxed);
            loop {
                let (tag, top) = unpack(h);
                self.node(last).next.store(top, Ordering::Relaxed);
                match head.compare_exchange_weak(
                    h,
                    pack(tag.wrapping_add(1), first),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(x) => h = x,
                }
            }
        }
        let _g = self.fallback_lock.lock();
        self.fallback.with_mut(|f| {
            for class in 0..NUM_CLASSES {
                // SAFETY: the fallback lock is held; queued slots are live.
                unsafe {
                    let l = &mut (*f)[class];
                    let mut prev: *mut SlotMeta<B> = null_mut();
                    let mut cur = l.head;
                    while !cur.is_null() {
                        let nx = fb(cur, |link| link.next);
                        if names(cur) {
                            if prev.is_null() {
                                l.head = nx;
                            } else {
                                fb(prev, |link| link.next = nx);
                            }
                            fb(cur, |link| {
                                link.next = null_mut();
                                link.queued = false;
                            });
                            l.len -= 1;
                            removed += 1;
                        } else {
                            prev = cur;
                        }
                        cur = nx;
                    }
                }
            }
        });
        removed
    }

    /// Free nodes in the pool, never-used ones included (quiescent use:
    /// snapshot, tests).
    pub fn free_nodes(&self) -> usize {
        let mut n = self.n_nodes - self.fresh.load(Ordering::Acquire) as usize;
        let (_, mut cur) = unpack(self.pool.load(Ordering::Acquire));
        while cur != NIL {
            n += 1;
            cur = self.node(cur).next.load(Ordering::Relaxed);
        }
        n
    }

    /// The pool size.
    pub fn node_pool(&self) -> usize {
        self.n_nodes
    }

    /// Entries of `class`'s list, head first (quiescent use).
    pub fn entries(&self, class: usize, out: &mut dyn FnMut(*mut SlotMeta<B>)) {
        let (_, mut cur) = unpack(self.heads[class].load(Ordering::Acquire));
        while cur != NIL {
            out(self.node(cur).entry.load(Ordering::Relaxed));
            cur = self.node(cur).next.load(Ordering::Relaxed);
        }
    }

    /// Entries of `class`'s fallback list, head first (quiescent use).
    pub fn fallback_entries(&self, class: usize, out: &mut dyn FnMut(*mut SlotMeta<B>)) {
        let _g = self.fallback_lock.lock();
        self.fallback.with(|f| {
            // SAFETY: the fallback lock is held.
            let mut cur = unsafe { (*f)[class].head };
            while !cur.is_null() {
                out(cur);
                // SAFETY: lock held; queued slots are live.
                cur = unsafe { fb(cur, |link| link.next) };
            }
        });
    }
}

impl<B: Backend> Drop for Stage1<B> {
    fn drop(&mut self) {
        if core::mem::needs_drop::<Node<B>>() {
            for i in 0..self.fresh.load(Ordering::Relaxed) as usize {
                // SAFETY: node `i < fresh` was written by `pool_pop` and is
                // not used any more (checker backends' atomics own resources).
                unsafe { core::ptr::drop_in_place(self.nodes.add(i)) };
            }
        }
        if let Some(p) = NonNull::new(self.nodes.cast::<u8>()) {
            // SAFETY: the mapping made in `new`, no longer used.
            unsafe { os::unmap(p, self.map_bytes, os::OS_PAGE) };
        }
    }
}
