//! The per-allocator worker: the `main` of every `src/bin/bench-*.rs`.
//!
//! A worker runs one workload once and prints one machine-readable line on
//! stdout, which the driver parses with [`Sample::parse`]:
//!
//! ```text
//! bench-result ops=10000000 secs=0.123456789 maxrss_kib=2104 minflt=312
//! ```
//!
//! `maxrss_kib` is the worker's own peak resident set in KiB (`VmHWM`, see
//! [`vm_hwm_kib`]) and `minflt` its minor page faults
//! (`getrusage(RUSAGE_SELF)`), both at the end of the run.

use crate::workloads::Workload;

/// Which loop a worker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The workload on the binary's `#[global_allocator]`.
    Allocator,
    /// The workload's floor (the no-op heap); only the random_mixed family.
    Floor,
}

/// What one worker process measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Operations in the timed part.
    pub ops: u64,
    /// Seconds of the timed part.
    pub secs: f64,
    /// Peak resident set of the whole process, KiB.
    pub maxrss_kib: u64,
    /// Minor page faults of the whole process.
    pub minflt: u64,
}

/// The first word of the result line.
pub const RESULT_TAG: &str = "bench-result";
/// The first word of the line a stand-in binary prints (see `bench-hakmem`).
pub const STAND_IN_TAG: &str = "bench-stand-in";

impl Sample {
    /// The result line.
    pub fn to_line(&self) -> String {
        format!(
            "{RESULT_TAG} ops={} secs={:.9} maxrss_kib={} minflt={}",
            self.ops, self.secs, self.maxrss_kib, self.minflt
        )
    }

    /// Finds and parses the result line in a worker's stdout.
    pub fn parse(stdout: &str) -> Result<Self, String> {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(RESULT_TAG))
            .ok_or("no result line")?;
        let field = |key: &str| -> Result<&str, String> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .ok_or(format!("no {key} in {line:?}"))
        };
        let int = |key: &str| -> Result<u64, String> {
            field(key)?.parse().map_err(|e| format!("{key}: {e}"))
        };
        let secs: f64 = field("secs")?.parse().map_err(|e| format!("secs: {e}"))?;
        let s = Self {
            ops: int("ops")?,
            secs,
            maxrss_kib: int("maxrss_kib")?,
            minflt: int("minflt")?,
        };
        if s.ops == 0 || !(s.secs > 0.0 && s.secs.is_finite()) {
            return Err(format!("empty measurement in {line:?}"));
        }
        Ok(s)
    }
}

/// `getrusage(RUSAGE_SELF)`: (peak RSS in KiB, minor faults).
pub fn self_rusage() -> (u64, u64) {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable `rusage`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage failed");
    let maxrss = vm_hwm_kib().unwrap_or(ru.ru_maxrss.max(0) as u64);
    (maxrss, ru.ru_minflt.max(0) as u64)
}

/// The peak resident set of this process's own address space, KiB: see
/// [`traces::replay::vm_hwm_kib`] (why not `ru_maxrss`).
pub use traces::replay::vm_hwm_kib;

/// The worker's `main`. `allocator` names the binary's allocator in messages;
/// `stand_in` says what really serves the allocations when the binary is a
/// temporary stand-in (printed so that the driver can flag the column).
pub fn main(allocator: &str, mode: Mode, stand_in: Option<&str>) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let workload = match Workload::parse(&args) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("bench-{allocator}: {e}");
            eprintln!("usage: bench-{allocator} WORKLOAD NUMBERS... (see bench/src/workloads.rs)");
            std::process::exit(2);
        }
    };
    if let Some(what) = stand_in {
        println!("{STAND_IN_TAG} {what}");
    }
    let outcome = match mode {
        Mode::Allocator => match workload.run() {
            Some(o) => o,
            None => {
                eprintln!(
                    "bench-{allocator}: {} runs through `hktrace replay`",
                    workload.name()
                );
                std::process::exit(2);
            }
        },
        Mode::Floor => match workload.run_floor() {
            Some(o) => o,
            None => {
                eprintln!("bench-{allocator}: {} has no floor", workload.name());
                std::process::exit(2);
            }
        },
    };
    let (maxrss_kib, minflt) = self_rusage();
    let s = Sample {
        ops: outcome.ops,
        secs: outcome.secs,
        maxrss_kib,
        minflt,
    };
    println!("{}", s.to_line());
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_rss_of_this_process_is_read() {
        let hwm = super::vm_hwm_kib().expect("VmHWM in /proc/self/status");
        assert!(hwm > 0 && hwm < 1 << 30, "{hwm} KiB");
    }

    use super::*;

    #[test]
    fn result_line_round_trips() {
        let s = Sample {
            ops: 1000,
            secs: 0.25,
            maxrss_kib: 2048,
            minflt: 17,
        };
        let out = format!("{STAND_IN_TAG} x\n{}\n", s.to_line());
        assert_eq!(Sample::parse(&out), Ok(s));
    }

    #[test]
    fn missing_or_empty_results_are_errors() {
        assert!(Sample::parse("").is_err());
        assert!(Sample::parse("bench-result ops=1 secs=0.1 maxrss_kib=1").is_err());
        assert!(Sample::parse("bench-result ops=0 secs=0.1 maxrss_kib=1 minflt=0").is_err());
        assert!(Sample::parse("bench-result ops=1 secs=0 maxrss_kib=1 minflt=0").is_err());
    }

    #[test]
    fn rusage_reports_a_resident_process() {
        let (rss, _) = self_rusage();
        assert!(rss > 0);
    }
}
