//! Helpers shared by the integration tests: child processes, RSS, patterns.
#![allow(dead_code)]

use std::process::{Command, Output};

/// The environment variable that tells a re-executed test binary which
/// scenario to run.
pub const SCENARIO_VAR: &str = "HAKMEM_TEST_SCENARIO";

/// The scenario this process was started for, if it is a child.
pub fn scenario() -> Option<String> {
    std::env::var(SCENARIO_VAR).ok()
}

/// A command prefix (e.g. `qemu-aarch64`) that starts child test binaries
/// when they cannot be executed directly (a cross target without
/// binfmt_misc); `.ci/aarch64-tests` sets it.
pub const RUNNER_VAR: &str = "HAKMEM_TEST_RUNNER";

/// A command that runs this test binary, through [`RUNNER_VAR`] if set.
pub fn self_command() -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let runner = std::env::var(RUNNER_VAR).unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(words).arg(exe);
            cmd
        }
        None => Command::new(exe),
    }
}

/// Re-runs this test binary for the single test `test` (which must run
/// `scenario` when it sees [`SCENARIO_VAR`]), with `env` added.
pub fn run_child(test: &str, scenario: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = self_command();
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(SCENARIO_VAR, scenario)
        .env_remove("RUST_BACKTRACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn the test binary")
}

/// The resident set size of this process, from `/proc/self/statm`.
pub fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("statm: resident field");
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    pages * page
}

/// The byte at offset `i` of the block with identity `id`.
#[inline]
pub fn pattern(id: u64, i: usize) -> u8 {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
        ^ (i as u8).wrapping_mul(31)
        ^ (i >> 9) as u8
}

/// Fills `len` bytes at `p` with the pattern of `id` (every byte up to 4 KiB,
/// then every 61st byte and the last one).
///
/// # Safety
/// `p` is valid for `len` bytes of writes.
pub unsafe fn fill(p: *mut u8, len: usize, id: u64) {
    let dense = len.min(4096);
    for i in 0..dense {
        // SAFETY: `i < len`.
        unsafe { p.add(i).write(pattern(id, i)) };
    }
    for i in (dense..len).step_by(61).chain(len.checked_sub(1)) {
        // SAFETY: `i < len`.
        unsafe { p.add(i).write(pattern(id, i)) };
    }
}

/// Checks the pattern of `id` over the first `len` bytes at `p` (as written
/// by [`fill`] with a length ≥ `len`); panics naming the first bad offset.
///
/// # Safety
/// `p` is valid for `len` bytes of reads.
pub unsafe fn check(p: *const u8, len: usize, id: u64) {
    let dense = len.min(4096);
    for i in (0..dense).chain((dense..len).step_by(61)) {
        // SAFETY: `i < len`.
        let got = unsafe { p.add(i).read() };
        assert_eq!(
            got,
            pattern(id, i),
            "block {id} at {p:p}: byte {i} of {len}"
        );
    }
}

/// Whether `len` bytes at `p` are all zero.
///
/// # Safety
/// `p` is valid for `len` bytes of reads.
pub unsafe fn all_zero(p: *const u8, len: usize) -> bool {
    // SAFETY: contract.
    unsafe { std::slice::from_raw_parts(p, len) }
        .iter()
        .all(|&b| b == 0)
}

/// A small xorshift generator: deterministic, allocation-free.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
