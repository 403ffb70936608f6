//! The workloads: one source, compiled into every per-allocator binary.
//!
//! Every workload calls the global allocator through
//! `std::alloc::{alloc, dealloc}` (or, for the churn workload, through the
//! standard collections), so every allocator sees the same calls. Blocks are
//! requested with alignment [`ALIGN`] = 8: that is what `Box<u64>` asks for,
//! and with `align <= 16 && align <= size` the glibc (`System`) and jemalloc
//! wrappers pass the request straight to `malloc(size)` / `free` — the same
//! call a C benchmark makes. (Align 16 would send the 8..15-byte Larson
//! blocks to `posix_memalign` in `System`.)
//!
//! An *op* is one allocator call (one `malloc` or one `free`) in
//! random_mixed and Larson, one malloc-write-free cycle in the false-sharing
//! workloads, and one map entry in the churn workload; see each function.
//!
//! Each workload times only its measured part (fill and warm-up phases and
//! the final clean-up are untimed) and returns an [`Outcome`].

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::hint::black_box;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::Instant;

use crate::rng::Xorshift32;

/// The alignment of every block the workloads request (see the module docs).
pub const ALIGN: usize = 8;

/// What a workload run measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    /// Operations in the timed part (the unit is the workload's own, see its docs).
    pub ops: u64,
    /// Wall-clock seconds of the timed part.
    pub secs: f64,
}

/// One workload with its parameters. Its textual form ([`Workload::to_args`],
/// [`Workload::parse`]) is the command line of a per-allocator binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    /// `random_mixed CYCLES WS SEED MIN MAX`, the C benchmark: one draw per
    /// iteration picks the slot and (tied to it) the size.
    RandomMixed(MixedParams),
    /// `random_mixed_indep CYCLES WS SEED MIN MAX`: the same, with the size
    /// drawn independently of the slot.
    RandomMixedIndep(MixedParams),
    /// `larson THREADS ROUNDS PER_ROUND BLOCKS MIN MAX SEED`.
    Larson(LarsonParams),
    /// `cache_thrash THREADS ITERATIONS SIZE WRITES`.
    CacheThrash(SharingParams),
    /// `cache_scratch THREADS ITERATIONS SIZE WRITES`.
    CacheScratch(SharingParams),
    /// `churn ROUNDS ENTRIES SEED`.
    Churn(ChurnParams),
    /// `replay FILE PASSES MIN_EVENTS`: a corpus trace replayed by `hktrace
    /// replay --repeat PASSES --min-events MIN_EVENTS` (not by a worker
    /// binary; see `runner::replay_command`).
    Replay(ReplayParams),
}

/// The corpus traces (`traces/corpus/`) the bench replays, one row each.
pub const CORPUS: &[&str] = &[
    "random_mixed_ws256.hkt.zst",
    "random_mixed_ws8192.hkt.zst",
    "c7_only.hkt.gz",
    "larson_t2.hkt.zst",
    "larson_t4.hkt",
    "python3_single.hkt.zst",
    "python3_pool.hkt.zst",
    "cc1.hkt.zst",
    "cc_driver.hkt.zst",
    "git_init.hkt.zst",
    "git_add.hkt.zst",
    "git_commit.hkt.zst",
    "git_log.hkt.zst",
    "sqlite3.hkt.zst",
    "xz_t2.hkt.zst",
];

/// Parameters of a trace replay row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayParams {
    /// The file in `traces/corpus/` (one of [`CORPUS`]).
    pub trace: &'static str,
    /// At least this many passes on the same threads; the figures are those
    /// of the passes after the first (warm; the first, cold, pays heap
    /// set-up and first-touch faults).
    pub repeat: u32,
    /// More passes until the timed ones hold this many events (the short
    /// traces of the corpus take microseconds a pass).
    pub min_events: u64,
}

/// Parameters of random_mixed and its variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MixedParams {
    /// Timed iterations (= ops); the untimed warm-up runs `cycles / 10`.
    pub cycles: u64,
    /// Working set: the number of slots.
    pub ws: u32,
    /// Seed of the timed part; the warm-up uses [`warm_up_seed`]`(seed)`.
    pub seed: u32,
    /// Smallest block size (sizes are clamped to `[min, max]`).
    pub min: u32,
    /// Largest block size.
    pub max: u32,
}

/// Parameters of the Larson-like workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LarsonParams {
    /// Threads, each holding one array of blocks at a time (and filling two).
    pub threads: u32,
    /// Rounds per thread; after each one the thread hands its array over.
    pub rounds: u32,
    /// Block replacements per thread and round.
    pub per_round: u32,
    /// Blocks per array.
    pub blocks: u32,
    /// Smallest block size.
    pub min: u32,
    /// Largest block size.
    pub max: u32,
    /// Seed; thread `t` uses `seed + t`.
    pub seed: u32,
}

/// Parameters of the false-sharing workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharingParams {
    /// Threads.
    pub threads: u32,
    /// malloc-write-free cycles per thread.
    pub iterations: u32,
    /// Object size in bytes.
    pub size: u32,
    /// How many times each byte of the object is written per cycle.
    pub writes: u32,
}

/// Parameters of the Rust churn workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChurnParams {
    /// Maps built and dropped.
    pub rounds: u32,
    /// Entries per map.
    pub entries: u32,
    /// Seed.
    pub seed: u32,
}

impl Workload {
    /// The workload's name, the first word of its command line.
    pub fn name(&self) -> &'static str {
        match self {
            Workload::RandomMixed(_) => "random_mixed",
            Workload::RandomMixedIndep(_) => "random_mixed_indep",
            Workload::Larson(_) => "larson",
            Workload::CacheThrash(_) => "cache_thrash",
            Workload::CacheScratch(_) => "cache_scratch",
            Workload::Churn(_) => "churn",
            Workload::Replay(_) => "replay",
        }
    }

    /// The command line of a worker binary: the name, then the parameters.
    pub fn to_args(&self) -> Vec<String> {
        if let Workload::Replay(p) = self {
            return vec![
                "replay".into(),
                p.trace.into(),
                p.repeat.to_string(),
                p.min_events.to_string(),
            ];
        }
        let nums: Vec<u64> = match *self {
            Workload::RandomMixed(p) | Workload::RandomMixedIndep(p) => vec![
                p.cycles,
                p.ws.into(),
                p.seed.into(),
                p.min.into(),
                p.max.into(),
            ],
            Workload::Larson(p) => [
                p.threads,
                p.rounds,
                p.per_round,
                p.blocks,
                p.min,
                p.max,
                p.seed,
            ]
            .map(u64::from)
            .to_vec(),
            Workload::CacheThrash(p) | Workload::CacheScratch(p) => {
                [p.threads, p.iterations, p.size, p.writes]
                    .map(u64::from)
                    .to_vec()
            }
            Workload::Churn(p) => [p.rounds, p.entries, p.seed].map(u64::from).to_vec(),
            Workload::Replay(_) => Vec::new(),
        };
        std::iter::once(self.name().to_string())
            .chain(nums.iter().map(u64::to_string))
            .collect()
    }

    /// Parses [`to_args`](Self::to_args)' form, checking the parameters.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let (name, rest) = args.split_first().ok_or("no workload given")?;
        if name == "replay" {
            let [file, repeat, min_events] = rest else {
                return Err("replay takes FILE PASSES MIN_EVENTS".into());
            };
            let trace = CORPUS
                .iter()
                .find(|c| *c == file)
                .ok_or_else(|| format!("replay: {file:?} is not a corpus trace"))?;
            let repeat = repeat
                .parse::<u32>()
                .ok()
                .filter(|&r| r > 0)
                .ok_or_else(|| format!("replay: PASSES {repeat:?} is not a positive number"))?;
            let min_events = min_events
                .parse::<u64>()
                .map_err(|_| format!("replay: MIN_EVENTS {min_events:?} is not a number"))?;
            return Ok(Workload::Replay(ReplayParams {
                trace,
                repeat,
                min_events,
            }));
        }
        let nums: Vec<u64> = rest
            .iter()
            .map(|a| a.parse::<u64>().map_err(|e| format!("{a:?}: {e}")))
            .collect::<Result<_, _>>()?;
        let want = |n: usize| -> Result<(), String> {
            if nums.len() == n {
                Ok(())
            } else {
                Err(format!("{name} takes {n} numbers, got {}", nums.len()))
            }
        };
        let u32_at = |i: usize| -> Result<u32, String> {
            u32::try_from(nums[i]).map_err(|_| format!("{name}: {} is too large", nums[i]))
        };
        let w = match name.as_str() {
            "random_mixed" | "random_mixed_indep" => {
                want(5)?;
                let p = MixedParams {
                    cycles: nums[0],
                    ws: u32_at(1)?,
                    seed: u32_at(2)?,
                    min: u32_at(3)?,
                    max: u32_at(4)?,
                };
                if p.ws == 0 || p.min == 0 || p.min > p.max || p.max > 1 << 20 {
                    return Err(format!("{name}: need WS > 0 and 0 < MIN <= MAX <= 1 MiB"));
                }
                if name == "random_mixed" {
                    Workload::RandomMixed(p)
                } else {
                    Workload::RandomMixedIndep(p)
                }
            }
            "larson" => {
                want(7)?;
                let p = LarsonParams {
                    threads: u32_at(0)?,
                    rounds: u32_at(1)?,
                    per_round: u32_at(2)?,
                    blocks: u32_at(3)?,
                    min: u32_at(4)?,
                    max: u32_at(5)?,
                    seed: u32_at(6)?,
                };
                if p.threads == 0 || p.blocks == 0 || p.min == 0 || p.min > p.max {
                    return Err("larson: need THREADS, BLOCKS > 0 and 0 < MIN <= MAX".into());
                }
                Workload::Larson(p)
            }
            "cache_thrash" | "cache_scratch" => {
                want(4)?;
                let p = SharingParams {
                    threads: u32_at(0)?,
                    iterations: u32_at(1)?,
                    size: u32_at(2)?,
                    writes: u32_at(3)?,
                };
                if p.threads == 0 || p.size == 0 {
                    return Err(format!("{name}: need THREADS, SIZE > 0"));
                }
                if name == "cache_thrash" {
                    Workload::CacheThrash(p)
                } else {
                    Workload::CacheScratch(p)
                }
            }
            "churn" => {
                want(3)?;
                Workload::Churn(ChurnParams {
                    rounds: u32_at(0)?,
                    entries: u32_at(1)?,
                    seed: u32_at(2)?,
                })
            }
            other => return Err(format!("unknown workload {other:?}")),
        };
        Ok(w)
    }

    /// Whether the workload has a floor run (the no-op heap): the
    /// random_mixed family, and the replays (`hktrace replay --alloc noop`).
    pub fn has_floor(&self) -> bool {
        matches!(
            self,
            Workload::RandomMixed(_) | Workload::RandomMixedIndep(_) | Workload::Replay(_)
        )
    }

    /// Runs the workload on the global allocator; `None` for a replay,
    /// which `hktrace replay` runs, not a worker.
    pub fn run(&self) -> Option<Outcome> {
        Some(match *self {
            Workload::RandomMixed(p) => random_mixed(&mut GlobalHeap, p, SizeDraw::FromSlotDraw),
            Workload::RandomMixedIndep(p) => {
                random_mixed(&mut GlobalHeap, p, SizeDraw::Independent)
            }
            Workload::Larson(p) => larson(p),
            Workload::CacheThrash(p) => cache_thrash(p),
            Workload::CacheScratch(p) => cache_scratch(p),
            Workload::Churn(p) => churn(p),
            Workload::Replay(_) => return None,
        })
    }

    /// Runs the workload's floor (the same loop on the no-op heap), if it has one.
    pub fn run_floor(&self) -> Option<Outcome> {
        match *self {
            Workload::RandomMixed(p) => Some(random_mixed(
                &mut FloorHeap::new(p),
                p,
                SizeDraw::FromSlotDraw,
            )),
            Workload::RandomMixedIndep(p) => Some(random_mixed(
                &mut FloorHeap::new(p),
                p,
                SizeDraw::Independent,
            )),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// random_mixed

/// Where random_mixed's block size comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeDraw {
    /// `16 + (r & 0x3FF)` of the draw `r` that chose the slot (the C definition).
    FromSlotDraw,
    /// `16 + (r2 & 0x3FF)` of a second draw `r2`.
    Independent,
}

/// The warm-up's seed: "another seed" than the timed part's.
pub fn warm_up_seed(seed: u32) -> u32 {
    seed ^ 0x5bd1_e995
}

/// The allocator as random_mixed sees it. The slot index is passed so that
/// the floor can hand out each slot's pre-allocated line; the real heap
/// ignores it.
pub trait SlotHeap {
    /// Allocates for slot `slot` a block of `layout` (the floor: a block
    /// valid for its first byte only, which is all random_mixed touches);
    /// null on failure.
    ///
    /// # Safety
    /// `layout.size()` is not zero.
    unsafe fn alloc(&mut self, slot: usize, layout: Layout) -> *mut u8;

    /// Frees `ptr`, allocated for `slot` with `layout`.
    ///
    /// # Safety
    /// `ptr` came from [`SlotHeap::alloc`] of this heap with the same `slot`
    /// and `layout`, and is not used afterwards.
    unsafe fn dealloc(&mut self, slot: usize, ptr: *mut u8, layout: Layout);
}

/// The global allocator (`#[global_allocator]` of the binary).
pub struct GlobalHeap;

impl SlotHeap for GlobalHeap {
    #[inline(always)]
    unsafe fn alloc(&mut self, _slot: usize, layout: Layout) -> *mut u8 {
        // SAFETY: the caller guarantees a non-zero size.
        unsafe { alloc(layout) }
    }

    #[inline(always)]
    unsafe fn dealloc(&mut self, _slot: usize, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` came from `alloc(layout)`.
        unsafe { dealloc(ptr, layout) }
    }
}

/// The floor's bytes per slot: one cache line.
pub const FLOOR_LINE: usize = 64;

/// The floor: every slot has its own cache line, pre-allocated in one
/// contiguous array before the loop; "allocating" returns the slot's line
/// and "freeing" does nothing. What is left is the cost of the loop itself
/// (draw, slot test, size computation, the first byte written), so
/// `time(allocator) − time(floor)` is the allocator's own cost.
///
/// The lines are as small and as close together as they can be (WS × 64 B:
/// 16 KiB for WS 256, 512 KiB for WS 8192), smaller than any allocator's
/// live set, so the floor's first-byte write is never slower than an
/// allocator's and the floor stays a lower bound. (A full MAX-byte block per
/// slot would spread WS 8192 over 8.5 MB and make the floor *slower* than
/// an allocator that reuses hot blocks.)
pub struct FloorHeap {
    lines: *mut u8,
    layout: Layout,
}

impl FloorHeap {
    /// Pre-allocates one cache line per slot.
    pub fn new(p: MixedParams) -> Self {
        let layout = Layout::from_size_align(p.ws as usize * FLOOR_LINE, FLOOR_LINE)
            .expect("WS × 64 fits a Layout");
        // SAFETY: WS > 0 (checked by `Workload::parse` and `random_mixed`),
        // so the size is not zero.
        let lines = unsafe { alloc(layout) };
        if lines.is_null() {
            handle_alloc_error(layout);
        }
        Self { lines, layout }
    }
}

impl Drop for FloorHeap {
    fn drop(&mut self) {
        // SAFETY: `lines` came from `alloc(self.layout)` in `new`.
        unsafe { dealloc(self.lines, self.layout) };
    }
}

impl SlotHeap for FloorHeap {
    #[inline(always)]
    unsafe fn alloc(&mut self, slot: usize, _layout: Layout) -> *mut u8 {
        debug_assert!((slot + 1) * FLOOR_LINE <= self.layout.size());
        // SAFETY: slot < WS (random_mixed draws `r % WS`), so the line is
        // inside the array.
        unsafe { self.lines.add(slot * FLOOR_LINE) }
    }

    #[inline(always)]
    unsafe fn dealloc(&mut self, _slot: usize, _ptr: *mut u8, _layout: Layout) {}
}

/// The slots of random_mixed: a pointer (null = empty) and its block size.
struct Slots {
    ptrs: Vec<*mut u8>,
    sizes: Vec<u32>,
}

/// One random_mixed iteration sequence of `iters` iterations from `seed`.
#[inline(always)]
fn mixed_steps<H: SlotHeap>(
    heap: &mut H,
    slots: &mut Slots,
    iters: u64,
    seed: u32,
    p: MixedParams,
    draw: SizeDraw,
) {
    let ws = p.ws;
    let mut rng = Xorshift32::new(seed);
    for _ in 0..iters {
        let r = rng.next();
        let i = (r % ws) as usize;
        let old = slots.ptrs[i];
        if !old.is_null() {
            let size = slots.sizes[i] as usize;
            // SAFETY: ALIGN is a power of two and size <= 1 MiB (checked).
            let layout = unsafe { Layout::from_size_align_unchecked(size, ALIGN) };
            // SAFETY: `old` came from `heap.alloc(i, layout)` below (same slot,
            // same size) and is forgotten right after.
            unsafe { heap.dealloc(i, old, layout) };
            slots.ptrs[i] = ptr::null_mut();
        } else {
            let raw = match draw {
                SizeDraw::FromSlotDraw => 16 + (r & 0x3FF),
                SizeDraw::Independent => 16 + (rng.next() & 0x3FF),
            };
            let size = raw.clamp(p.min, p.max);
            // SAFETY: ALIGN is a power of two and size <= 1 MiB (checked).
            let layout = unsafe { Layout::from_size_align_unchecked(size as usize, ALIGN) };
            // SAFETY: size >= MIN > 0.
            let b = unsafe { heap.alloc(i, layout) };
            if b.is_null() {
                handle_alloc_error(layout);
            }
            // SAFETY: `b` is a fresh block of at least one byte.
            unsafe { b.write(r as u8) };
            slots.ptrs[i] = black_box(b);
            slots.sizes[i] = size;
        }
    }
}

/// The untimed warm-up (a separate symbol so that instruction counting can
/// leave it out).
#[inline(never)]
fn mixed_warm_up<H: SlotHeap>(heap: &mut H, slots: &mut Slots, p: MixedParams, draw: SizeDraw) {
    mixed_steps(heap, slots, p.cycles / 10, warm_up_seed(p.seed), p, draw);
}

/// The timed loop. `bench/callgrind.sh` counts instructions inside this
/// function (`--toggle-collect=*mixed_timed_loop*`): keep the name.
#[inline(never)]
fn mixed_timed_loop<H: SlotHeap>(heap: &mut H, slots: &mut Slots, p: MixedParams, draw: SizeDraw) {
    mixed_steps(heap, slots, p.cycles, p.seed, p, draw);
}

/// random_mixed on `heap`: WS slots, initially empty; per iteration one draw
/// `r`, slot `r % WS`; an occupied slot is freed, an empty one gets a block
/// of `clamp(16 + (r & 0x3FF), MIN, MAX)` bytes (or from a second draw, with
/// [`SizeDraw::Independent`]) and its first byte written. An untimed warm-up
/// of `CYCLES / 10` iterations from [`warm_up_seed`] comes first, on the same
/// slots; the blocks left at the end are freed untimed. ops = CYCLES.
pub fn random_mixed<H: SlotHeap>(heap: &mut H, p: MixedParams, draw: SizeDraw) -> Outcome {
    assert!(p.ws > 0 && p.min > 0 && p.min <= p.max && p.max <= 1 << 20);
    let mut slots = Slots {
        ptrs: vec![ptr::null_mut(); p.ws as usize],
        sizes: vec![0; p.ws as usize],
    };
    mixed_warm_up(heap, &mut slots, p, draw);
    let t0 = Instant::now();
    mixed_timed_loop(heap, &mut slots, p, draw);
    let secs = t0.elapsed().as_secs_f64();
    for (i, (&b, &size)) in slots.ptrs.iter().zip(&slots.sizes).enumerate() {
        if !b.is_null() {
            // SAFETY: as in `mixed_steps`: the slot's block and its size.
            unsafe {
                heap.dealloc(
                    i,
                    b,
                    Layout::from_size_align_unchecked(size as usize, ALIGN),
                )
            };
        }
    }
    Outcome {
        ops: p.cycles,
        secs,
    }
}

// ---------------------------------------------------------------------------
// Larson

/// A block of a Larson array: address (0 = empty) and size.
#[derive(Clone, Copy)]
struct LBlock {
    addr: usize,
    size: u32,
}

fn block_layout(size: u32) -> Layout {
    // `size` is at most u32::MAX and ALIGN a power of two: always valid.
    Layout::from_size_align(size as usize, ALIGN).expect("valid layout")
}

/// Allocates `size` bytes and writes the first byte; returns the address.
fn alloc_block(size: u32, tag: u8) -> usize {
    let layout = block_layout(size);
    // SAFETY: sizes are >= MIN > 0 (checked by `Workload::parse` / callers).
    let b = unsafe { alloc(layout) };
    if b.is_null() {
        handle_alloc_error(layout);
    }
    // SAFETY: a fresh block of at least one byte.
    unsafe { b.write(tag) };
    black_box(b) as usize
}

/// Frees a block made by [`alloc_block`] with the same size.
///
/// # Safety
/// `addr` came from `alloc_block(size, _)` and is not used afterwards.
unsafe fn free_block(addr: usize, size: u32) {
    // SAFETY: the caller's contract.
    unsafe { dealloc(addr as *mut u8, block_layout(size)) }
}

/// One Larson array and the thread that held it last.
struct LArray {
    blocks: Vec<LBlock>,
    holder: usize,
}

/// Larson-like server simulation. Each of the T threads fills two arrays
/// of BLOCKS blocks (untimed), keeps one and puts the other in a common
/// pool of idle arrays. Then, ROUNDS times, it replaces PER_ROUND random
/// blocks of the array it holds (pick `r % BLOCKS`, free it, put a new
/// block of `MIN + r2 % (MAX - MIN + 1)` bytes there, first byte written)
/// and hands the array over: it puts it at the back of the pool and takes
/// the oldest idle array that another thread held last. So from the first
/// hand-over on, the blocks a thread frees at the start of a round were
/// allocated by another thread (with T = 1 the thread alternates between
/// its two arrays: no remote frees).
///
/// The hand-over is the only synchronisation. It replaces a barrier after
/// every round (`std::sync::Barrier`: every thread but the last sleeps on a
/// futex until the slowest arrives; with rounds of ~0.1 ms the threads of
/// a T = 2 run spent most of their time there, for every allocator — see
/// docs/benchmarks-analysis.md, *larson*). Here a thread waits only when
/// the pool holds no array from another thread (it is a whole round ahead
/// of all of them), and then spins and yields instead of sleeping. Each thread times itself from the
/// common start to the end of its last round (thread exit is not timed);
/// the run's time is from the earliest start to the latest end. The blocks
/// left are freed afterwards, untimed. ops = allocator calls = 2 × T ×
/// ROUNDS × PER_ROUND.
pub fn larson(p: LarsonParams) -> Outcome {
    assert!(p.threads > 0 && p.blocks > 0 && p.min > 0 && p.min <= p.max);
    let t_n = p.threads as usize;
    let pool: Mutex<VecDeque<LArray>> = Mutex::new(VecDeque::with_capacity(2 * t_n));
    // Threads still in their rounds: the last one takes its own arrays.
    let running = AtomicUsize::new(t_n);
    let start = Barrier::new(t_n);
    let span = p.max - p.min + 1;
    let fill = |rng: &mut Xorshift32, t: usize| LArray {
        blocks: (0..p.blocks)
            .map(|_| {
                let size = p.min + rng.next() % span;
                LBlock {
                    addr: alloc_block(size, t as u8),
                    size,
                }
            })
            .collect(),
        holder: t,
    };
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..t_n)
            .map(|t| {
                let (pool, running, start, fill) = (&pool, &running, &start, &fill);
                s.spawn(move || {
                    let mut rng = Xorshift32::new(p.seed.wrapping_add(t as u32));
                    let mut cur = fill(&mut rng, t);
                    let idle = fill(&mut rng, t);
                    pool.lock().expect("no panics while held").push_back(idle);
                    start.wait();
                    let t0 = Instant::now();
                    for k in 0..p.rounds {
                        for _ in 0..p.per_round {
                            let i = (rng.next() % p.blocks) as usize;
                            let size = p.min + rng.next() % span;
                            let old = cur.blocks[i];
                            // SAFETY: every array entry holds a live block
                            // with its size (filled above, replaced here).
                            unsafe { free_block(old.addr, old.size) };
                            cur.blocks[i] = LBlock {
                                addr: alloc_block(size, k as u8),
                                size,
                            };
                        }
                        cur.holder = t;
                        pool.lock().expect("no panics while held").push_back(cur);
                        cur = take_foreign(pool, t, running);
                    }
                    let t1 = Instant::now();
                    cur.holder = t;
                    pool.lock().expect("no panics while held").push_back(cur);
                    running.fetch_sub(1, Ordering::Release);
                    (t0, t1)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("larson worker panicked"))
            .collect()
    });
    let t0 = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("at least one thread");
    let t1 = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("at least one thread");
    for arr in pool.into_inner().expect("no panics while held") {
        for b in arr.blocks {
            // SAFETY: every entry holds a live block with its size.
            unsafe { free_block(b.addr, b.size) };
        }
    }
    Outcome {
        ops: 2 * u64::from(p.threads) * u64::from(p.rounds) * u64::from(p.per_round),
        secs: (t1 - t0).as_secs_f64(),
    }
}

/// Takes the oldest idle array that a thread other than `t` held last,
/// spinning and then yielding while there is none; the oldest of all once
/// `t` is the only thread still running (`running == 1`).
///
/// This never waits forever: while two threads or more run, not all of them
/// can wait (every array would be idle, and the idle arrays cannot all have
/// been held last by each waiter), so one that runs will hand over an array
/// the waiter did not hold; a thread that finishes hands its last array
/// over before it stops counting as running.
fn take_foreign(pool: &Mutex<VecDeque<LArray>>, t: usize, running: &AtomicUsize) -> LArray {
    let mut tries = 0u32;
    loop {
        {
            let mut q = pool.lock().expect("no panics while held");
            let pick = if running.load(Ordering::Acquire) == 1 {
                Some(0)
            } else {
                q.iter().position(|a| a.holder != t)
            };
            if let Some(a) = pick.and_then(|i| q.remove(i)) {
                return a;
            }
        }
        tries += 1;
        if tries < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

// ---------------------------------------------------------------------------
// False sharing

/// Writes every byte of the `size`-byte block at `b` `writes` times, reading
/// each back (volatile, so the accesses happen); returns a checksum.
///
/// # Safety
/// `b` points to `size` writable bytes.
unsafe fn touch(b: *mut u8, size: u32, writes: u32) -> u8 {
    let mut sum = 0u8;
    for w in 0..writes {
        for k in 0..size as usize {
            // SAFETY: k < size, the block's length (caller's contract).
            unsafe {
                let q = b.add(k);
                q.write_volatile((w as usize + k) as u8);
                sum = sum.wrapping_add(q.read_volatile());
            }
        }
    }
    sum
}

/// One malloc-write-free cycle of the false-sharing workloads.
fn sharing_cycle(layout: Layout, size: u32, writes: u32) -> u8 {
    // SAFETY: size > 0 (checked by the callers).
    let b = unsafe { alloc(layout) };
    if b.is_null() {
        handle_alloc_error(layout);
    }
    // SAFETY: `b` is a fresh block of `size` bytes; freed once, right after.
    unsafe {
        let sum = touch(black_box(b), size, writes);
        dealloc(b, layout);
        sum
    }
}

/// Runs `body(t)` on `threads` threads started together; returns the seconds
/// from the common start to the last exit.
fn timed_threads(threads: u32, body: impl Fn(usize) -> u8 + Sync) -> f64 {
    let start = Barrier::new(threads as usize + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads as usize)
            .map(|t| {
                let (start, body) = (&start, &body);
                s.spawn(move || {
                    start.wait();
                    black_box(body(t));
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        for w in workers {
            w.join().expect("worker panicked");
        }
        t0.elapsed().as_secs_f64()
    })
}

/// Active false sharing (Hoard's cache-thrash): each thread repeatedly
/// allocates a SIZE-byte object, writes each byte WRITES times and frees it.
/// An allocator that carves the threads' objects from one cache line makes
/// the threads' caches fight. ops = malloc-write-free cycles = T × ITERATIONS.
pub fn cache_thrash(p: SharingParams) -> Outcome {
    assert!(p.threads > 0 && p.size > 0);
    let layout = block_layout(p.size);
    let secs = timed_threads(p.threads, |_| {
        let mut sum = 0u8;
        for _ in 0..p.iterations {
            sum = sum.wrapping_add(sharing_cycle(layout, p.size, p.writes));
        }
        sum
    });
    Outcome {
        ops: u64::from(p.threads) * u64::from(p.iterations),
        secs,
    }
}

/// Passive false sharing (Hoard's cache-scratch): the main thread allocates
/// T SIZE-byte objects one after the other (so likely on one cache line) and
/// hands object `t` to thread `t`, which frees it and then repeatedly
/// allocates, writes (each byte WRITES times) and frees a SIZE-byte object.
/// An allocator that gives thread `t` the memory it just freed keeps the
/// threads writing to one cache line. ops = T × ITERATIONS.
pub fn cache_scratch(p: SharingParams) -> Outcome {
    assert!(p.threads > 0 && p.size > 0);
    let layout = block_layout(p.size);
    let handed: Vec<usize> = (0..p.threads)
        .map(|t| alloc_block(p.size, t as u8))
        .collect();
    let secs = timed_threads(p.threads, |t| {
        // SAFETY: `handed[t]` is a live block of `size` bytes that only
        // thread `t` uses and frees.
        unsafe {
            touch(handed[t] as *mut u8, p.size, p.writes);
            free_block(handed[t], p.size);
        }
        let mut sum = 0u8;
        for _ in 0..p.iterations {
            sum = sum.wrapping_add(sharing_cycle(layout, p.size, p.writes));
        }
        sum
    });
    Outcome {
        ops: u64::from(p.threads) * u64::from(p.iterations),
        secs,
    }
}

// ---------------------------------------------------------------------------
// Rust churn

/// The churn workload's map: std's `HashMap` with a fixed-key hasher, so that
/// every run (and every allocator) sees the same sequence of allocations.
type ChurnMap = HashMap<String, Vec<u64>, BuildHasherDefault<DefaultHasher>>;

/// Realistic Rust churn: ROUNDS times, build a map of ENTRIES formatted
/// string keys, each value a vector grown by pushes to a random length
/// (0..63, so reallocations), with a growing log vector of cloned keys of
/// which every eighth entry pops one and removes it from the map; then drop
/// everything. ops = map insertions = ROUNDS × ENTRIES.
pub fn churn(p: ChurnParams) -> Outcome {
    let mut rng = Xorshift32::new(p.seed);
    let t0 = Instant::now();
    let mut check = 0usize;
    for _ in 0..p.rounds {
        let mut map = ChurnMap::default();
        let mut log: Vec<String> = Vec::new();
        for e in 0..p.entries {
            let r = rng.next();
            let key = format!("key-{r:08x}-{e}");
            let mut value = Vec::new();
            for j in 0..r % 64 {
                value.push(u64::from(j ^ r));
            }
            if r % 4 == 0 {
                log.push(key.clone());
            }
            if r % 8 == 1 {
                if let Some(k) = log.pop() {
                    map.remove(&k);
                }
            }
            map.insert(key, value);
        }
        check = check.wrapping_add(black_box(&map).len() + black_box(&log).len());
    }
    black_box(check);
    Outcome {
        ops: u64::from(p.rounds) * u64::from(p.entries),
        secs: t0.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A heap that records every call and forwards to the global allocator.
    #[derive(Default)]
    struct RecordingHeap {
        /// (slot, size, true = alloc / false = free)
        log: Vec<(usize, usize, bool)>,
    }

    impl SlotHeap for RecordingHeap {
        unsafe fn alloc(&mut self, slot: usize, layout: Layout) -> *mut u8 {
            assert_eq!(layout.align(), ALIGN);
            self.log.push((slot, layout.size(), true));
            // SAFETY: forwarded contract.
            unsafe { GlobalHeap.alloc(slot, layout) }
        }
        unsafe fn dealloc(&mut self, slot: usize, ptr: *mut u8, layout: Layout) {
            self.log.push((slot, layout.size(), false));
            // SAFETY: forwarded contract.
            unsafe { GlobalHeap.dealloc(slot, ptr, layout) }
        }
    }

    /// The definition from issue 7, written out again as plainly as possible
    /// (occupancy as sizes, no pointers): the expected call log.
    fn expected_log(p: MixedParams, draw: SizeDraw) -> (Vec<(usize, usize, bool)>, usize) {
        let mut occ: Vec<Option<usize>> = vec![None; p.ws as usize];
        let mut log = Vec::new();
        let mut warm_len = 0;
        for (iters, seed) in [(p.cycles / 10, warm_up_seed(p.seed)), (p.cycles, p.seed)] {
            let mut x = seed;
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x
            };
            for _ in 0..iters {
                let r = next();
                let slot = (r % p.ws) as usize;
                match occ[slot] {
                    Some(size) => {
                        log.push((slot, size, false));
                        occ[slot] = None;
                    }
                    None => {
                        let base = if draw == SizeDraw::Independent {
                            next()
                        } else {
                            r
                        };
                        let size = (16 + (base & 0x3FF)).max(p.min).min(p.max) as usize;
                        log.push((slot, size, true));
                        occ[slot] = Some(size);
                    }
                }
            }
            if warm_len == 0 {
                warm_len = log.len();
            }
        }
        for (slot, o) in occ.iter().enumerate() {
            if let Some(size) = o {
                log.push((slot, *size, false));
            }
        }
        (log, warm_len)
    }

    fn check_mixed(p: MixedParams, draw: SizeDraw) {
        let mut heap = RecordingHeap::default();
        let out = random_mixed(&mut heap, p, draw);
        assert_eq!(out.ops, p.cycles);
        let (want, warm_len) = expected_log(p, draw);
        assert_eq!(heap.log, want);
        // Every iteration is exactly one call: warm-up + CYCLES timed calls,
        // then one free per block left over.
        let leftover = want.len() - warm_len - p.cycles as usize;
        let allocs = want.iter().filter(|e| e.2).count();
        assert_eq!(allocs, want.len() - allocs, "every block freed once");
        assert!(leftover <= p.ws as usize);
    }

    #[test]
    fn random_mixed_with_one_slot_alternates_alloc_and_free() {
        // WS = 1: warm-up of 10 iterations (5 allocs, 5 frees, slot ends
        // empty), then 100 timed iterations: 50 allocs, 50 frees, nothing left.
        let p = MixedParams {
            cycles: 100,
            ws: 1,
            seed: 7,
            min: 16,
            max: 1040,
        };
        let mut heap = RecordingHeap::default();
        let out = random_mixed(&mut heap, p, SizeDraw::FromSlotDraw);
        assert_eq!(out.ops, 100);
        assert_eq!(heap.log.len(), 110);
        for (k, e) in heap.log.iter().enumerate() {
            assert_eq!(e.2, k % 2 == 0, "call {k} alternates");
        }
        let timed_allocs = heap.log[10..].iter().filter(|e| e.2).count();
        assert_eq!(timed_allocs, 50);
    }

    #[test]
    fn random_mixed_first_calls_for_seed_1() {
        // Seed 1's first draws are 0x42021 and 0x4080601 (see rng.rs).
        // No warm-up (CYCLES < 10). WS 256: slot 0x21 = 33, size 16 + 0x21 = 49;
        // slot 0x01, size 16 + 0x201 = 529.
        let p = MixedParams {
            cycles: 2,
            ws: 256,
            seed: 1,
            min: 16,
            max: 1040,
        };
        let mut heap = RecordingHeap::default();
        random_mixed(&mut heap, p, SizeDraw::FromSlotDraw);
        assert_eq!(
            heap.log,
            vec![
                (33, 49, true),
                (1, 529, true),
                (1, 529, false),
                (33, 49, false)
            ]
        );
    }

    #[test]
    fn random_mixed_matches_the_definition_for_small_runs() {
        for (ws, min, max) in [
            (256, 16, 1040),
            (8192, 16, 1040),
            (64, 1024, 1024),
            (256, 257, 768),
        ] {
            for draw in [SizeDraw::FromSlotDraw, SizeDraw::Independent] {
                check_mixed(
                    MixedParams {
                        cycles: 20_000,
                        ws,
                        seed: 42,
                        min,
                        max,
                    },
                    draw,
                );
            }
        }
    }

    #[test]
    fn clamping_keeps_sizes_within_min_max() {
        let p = MixedParams {
            cycles: 5_000,
            ws: 256,
            seed: 3,
            min: 257,
            max: 768,
        };
        let mut heap = RecordingHeap::default();
        random_mixed(&mut heap, p, SizeDraw::FromSlotDraw);
        assert!(heap.log.iter().all(|e| (257..=768).contains(&e.1)));
        assert!(heap.log.iter().any(|e| e.1 == 257) && heap.log.iter().any(|e| e.1 == 768));
    }

    #[test]
    fn floor_heap_hands_out_each_slots_line() {
        let p = MixedParams {
            cycles: 1000,
            ws: 4,
            seed: 9,
            min: 16,
            max: 64,
        };
        let mut floor = FloorHeap::new(p);
        let l = Layout::from_size_align(16, ALIGN).unwrap();
        // SAFETY: non-zero size; the floor heap's dealloc does nothing.
        unsafe {
            let a = floor.alloc(2, l);
            assert_eq!(a, floor.lines.add(2 * FLOOR_LINE));
            floor.dealloc(2, a, l);
            assert_eq!(floor.alloc(2, l), a);
        }
        assert_eq!(
            random_mixed(&mut floor, p, SizeDraw::FromSlotDraw).ops,
            1000
        );
    }

    #[test]
    fn workload_args_round_trip() {
        let all = [
            Workload::RandomMixed(MixedParams {
                cycles: 10_000_000,
                ws: 8192,
                seed: 42,
                min: 16,
                max: 1040,
            }),
            Workload::RandomMixedIndep(MixedParams {
                cycles: 1,
                ws: 2,
                seed: 3,
                min: 4,
                max: 5,
            }),
            Workload::Larson(LarsonParams {
                threads: 2,
                rounds: 3,
                per_round: 4,
                blocks: 5,
                min: 8,
                max: 1000,
                seed: 6,
            }),
            Workload::CacheThrash(SharingParams {
                threads: 2,
                iterations: 3,
                size: 8,
                writes: 4,
            }),
            Workload::CacheScratch(SharingParams {
                threads: 2,
                iterations: 3,
                size: 8,
                writes: 4,
            }),
            Workload::Churn(ChurnParams {
                rounds: 1,
                entries: 2,
                seed: 3,
            }),
        ];
        for w in all {
            assert_eq!(Workload::parse(&w.to_args()), Ok(w.clone()));
        }
        let bad = |s: &str| Workload::parse(&s.split(' ').map(String::from).collect::<Vec<_>>());
        assert!(bad("random_mixed 10 0 1 16 32").is_err());
        assert!(bad("random_mixed 10 4 1 64 32").is_err());
        assert!(bad("random_mixed 10 4 1 16").is_err());
        assert!(bad("larson 0 1 1 1 8 16 1").is_err());
        assert!(bad("nothing 1").is_err());
    }

    #[test]
    fn larson_counts_two_calls_per_replacement() {
        // Four threads: the last to finish take their own arrays instead of
        // waiting for hand-overs from threads that have stopped.
        let out = larson(LarsonParams {
            threads: 4,
            rounds: 3,
            per_round: 50,
            blocks: 16,
            min: 8,
            max: 1000,
            seed: 1,
        });
        assert_eq!(out.ops, 2 * 4 * 3 * 50);
    }

    #[test]
    fn larson_hands_over_the_oldest_foreign_array() {
        let arr = |holder, tag| LArray {
            blocks: vec![LBlock { addr: tag, size: 0 }],
            holder,
        };
        let pool = Mutex::new(VecDeque::from([arr(1, 10), arr(0, 11), arr(1, 12)]));
        let running = AtomicUsize::new(2);
        // Thread 1 skips its own arrays; thread 0 takes the oldest overall.
        assert_eq!(take_foreign(&pool, 1, &running).blocks[0].addr, 11);
        assert_eq!(take_foreign(&pool, 0, &running).blocks[0].addr, 10);
        // The last thread running takes its own.
        running.store(1, Ordering::Relaxed);
        assert_eq!(take_foreign(&pool, 1, &running).blocks[0].addr, 12);
    }

    #[test]
    fn sharing_and_churn_count_their_units() {
        let p = SharingParams {
            threads: 2,
            iterations: 10,
            size: 8,
            writes: 2,
        };
        assert_eq!(cache_thrash(p).ops, 20);
        assert_eq!(cache_scratch(p).ops, 20);
        let c = churn(ChurnParams {
            rounds: 2,
            entries: 100,
            seed: 5,
        });
        assert_eq!(c.ops, 200);
    }
}
