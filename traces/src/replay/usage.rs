//! Resource use of the replaying process: peak and current RSS, minor
//! faults.

use super::PAGE;

/// Resource use of this process so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Peak resident set, KiB ([`vm_hwm_kib`], else `getrusage` `ru_maxrss`).
    pub peak_rss_kib: u64,
    /// Minor page faults.
    pub minflt: u64,
}

/// Minor page faults of this process so far (`getrusage`; 0 if unknown).
pub(super) fn minflt() -> u64 {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable `rusage`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    ru.ru_minflt.max(0) as u64
}

/// `getrusage(RUSAGE_SELF)`.
pub fn usage() -> Usage {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable `rusage`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Usage::default();
    }
    Usage {
        peak_rss_kib: vm_hwm_kib().unwrap_or(ru.ru_maxrss.max(0) as u64),
        minflt: ru.ru_minflt.max(0) as u64,
    }
}

/// The peak resident set of this process's own address space, KiB
/// (`VmHWM` of `/proc/self/status`). Preferred to `ru_maxrss`, which Linux
/// carries across `exec`: a process started by `posix_spawn` (vfork) gets
/// its *parent's* peak as its floor (a driver of 7 MiB made every worker
/// report at least 7 MiB). Read into a stack buffer: no allocation.
pub fn vm_hwm_kib() -> Option<u64> {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    let mut f = std::fs::File::open("/proc/self/status").ok()?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The current resident set in KiB (`/proc/self/statm`), 0 if unknown.
pub fn current_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * (PAGE as u64) / 1024)
}
