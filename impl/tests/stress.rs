//! Many threads on few cores: blocks of every size class and alignments up
//! to 64 KiB, handed to other threads through channels and shared slots,
//! grown and shrunk with realloc; every block carries a pattern derived from
//! its id, verified before every realloc and free.

mod common;

use common::{check, fill, Rng};
use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Barrier};
use std::time::Instant;

#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

const THREADS: usize = 12;
const OPS_PER_THREAD: usize = 30_000;
const SLOTS: usize = 64;
const LOCAL_MAX: usize = 48;

/// One block and what is needed to check and free it.
struct Block {
    ptr: *mut u8,
    layout: Layout,
    id: u64,
}

// SAFETY: a block is owned by exactly one thread at a time (moved through a
// channel or a slot); the allocator under test allows freeing anywhere.
unsafe impl Send for Block {}

impl Block {
    fn new(rng: &mut Rng, id: u64) -> Block {
        let size = random_size(rng);
        let align = random_align(rng);
        let layout = Layout::from_size_align(size, align).unwrap();
        let zeroed = rng.below(4) == 0;
        // SAFETY: non-zero size.
        let ptr = unsafe {
            if zeroed {
                alloc_zeroed(layout)
            } else {
                alloc(layout)
            }
        };
        assert!(!ptr.is_null(), "{layout:?}");
        assert_eq!(ptr as usize % align, 0, "{layout:?}");
        // SAFETY: a live block of `size` bytes.
        unsafe {
            if zeroed {
                assert!(
                    common::all_zero(ptr, size.min(1 << 16)),
                    "{layout:?} not zeroed"
                );
            }
            fill(ptr, size, id);
        }
        Block { ptr, layout, id }
    }

    fn verify(&self) {
        // SAFETY: a live block of `layout.size()` bytes filled for `id`.
        unsafe { check(self.ptr, self.layout.size(), self.id) };
    }

    fn resize(&mut self, rng: &mut Rng) {
        self.verify();
        let old = self.layout.size();
        let new = match rng.below(3) {
            0 => (old * 2).min(8 << 20),
            1 => (old / 2).max(1),
            _ => random_size(rng),
        };
        // SAFETY: live block with `layout`; `new` is non-zero.
        let p = unsafe { realloc(self.ptr, self.layout, new) };
        assert!(!p.is_null());
        assert_eq!(p as usize % self.layout.align(), 0);
        // SAFETY: `p` holds `new` bytes, the first `min` of which were kept.
        unsafe {
            check(p, old.min(new), self.id);
            fill(p, new, self.id);
        }
        self.ptr = p;
        self.layout = Layout::from_size_align(new, self.layout.align()).unwrap();
    }

    fn free(self) {
        self.verify();
        // SAFETY: live block with `layout`, not used afterwards.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

/// 60%: 1..=1024 (every small class); 25%: to 32 KiB; 14%: to 512 KiB; 1%:
/// to 4 MiB (every byte filled costs a page fault there: keep them rare).
fn random_size(rng: &mut Rng) -> usize {
    let r = rng.below(100);
    let (lo, hi) = match r {
        0..60 => (1, 1024),
        60..85 => (1025, 32 << 10),
        85..99 => ((32 << 10) + 1, 512 << 10),
        _ => ((512 << 10) + 1, 4 << 20),
    };
    lo + rng.below((hi - lo + 1) as u64) as usize
}

/// 70%: 8 or 16; else any power of two up to 64 KiB.
fn random_align(rng: &mut Rng) -> usize {
    if rng.below(10) < 7 {
        8 << rng.below(2)
    } else {
        1 << rng.below(17)
    }
}

static FREED: AtomicU64 = AtomicU64::new(0);
static MADE: AtomicU64 = AtomicU64::new(0);

fn worker(
    t: usize,
    rx: Receiver<Block>,
    txs: Vec<Sender<Block>>,
    slots: Arc<Vec<AtomicPtr<Block>>>,
    barrier: Arc<Barrier>,
) {
    let mut rng = Rng(0x9E37_79B9 ^ ((t as u64 + 1) * 0x1234_5678_9ABC_DEF1));
    let mut local: Vec<Block> = Vec::new();
    let mut next_id = (t as u64) << 40;
    let free_one = |b: Block| {
        b.free();
        FREED.fetch_add(1, Ordering::Relaxed);
    };
    for _ in 0..OPS_PER_THREAD {
        while let Ok(b) = rx.try_recv() {
            b.verify();
            local.push(b);
        }
        let r = rng.below(100);
        if r < 40 || local.is_empty() {
            next_id += 1;
            local.push(Block::new(&mut rng, next_id));
            MADE.fetch_add(1, Ordering::Relaxed);
        } else {
            let i = rng.below(local.len() as u64) as usize;
            match r {
                40..55 => {
                    let to = (t + 1 + rng.below(THREADS as u64 - 1) as usize) % THREADS;
                    txs[to].send(local.swap_remove(i)).unwrap();
                }
                55..65 => {
                    let b = Box::into_raw(Box::new(local.swap_remove(i)));
                    let s = rng.below(SLOTS as u64) as usize;
                    let old = slots[s].swap(b, Ordering::AcqRel);
                    if !old.is_null() {
                        // SAFETY: slots hold `Box<Block>`s; the swap gave
                        // this one to us alone.
                        let old = unsafe { Box::from_raw(old) };
                        old.verify();
                        local.push(*old);
                    }
                }
                65..75 => local[i].resize(&mut rng),
                _ => free_one(local.swap_remove(i)),
            }
        }
        if local.len() > LOCAL_MAX {
            free_one(local.swap_remove(0));
        }
    }
    // Everyone has sent everything before anyone drains for the last time.
    barrier.wait();
    while let Ok(b) = rx.try_recv() {
        local.push(b);
    }
    for b in local {
        free_one(b);
    }
}

#[test]
fn threads_hand_blocks_around() {
    let start = Instant::now();
    let slots: Arc<Vec<AtomicPtr<Block>>> = Arc::new(
        (0..SLOTS)
            .map(|_| AtomicPtr::new(std::ptr::null_mut()))
            .collect(),
    );
    let barrier = Arc::new(Barrier::new(THREADS));
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| channel::<Block>()).unzip();
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let (txs, slots, barrier) = (txs.clone(), slots.clone(), barrier.clone());
            std::thread::spawn(move || worker(t, rx, txs, slots, barrier))
        })
        .collect();
    for h in handles {
        h.join().expect("worker panicked");
    }
    for s in slots.iter() {
        let p = s.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            // SAFETY: a `Box<Block>` left in a slot, ours now.
            unsafe { Box::from_raw(p) }.free();
            FREED.fetch_add(1, Ordering::Relaxed);
        }
    }
    let (made, freed) = (MADE.load(Ordering::Relaxed), FREED.load(Ordering::Relaxed));
    assert_eq!(made, freed, "every block made was verified and freed once");
    assert!(made > (THREADS * OPS_PER_THREAD / 3) as u64);
    let elapsed = start.elapsed();
    eprintln!("stress: {made} blocks, {THREADS} threads, {elapsed:?}");
    eprintln!("stress: {:?}", hakmem::large::stats());
}
