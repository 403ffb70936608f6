//! What the report says about the machine and the build: CPU, cores,
//! kernel, load, toolchain, library versions, and the date.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The machine and build, as printed at the top of the report.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    /// CPU model name (`/proc/cpuinfo`).
    pub cpu: String,
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// Kernel (`/proc/sys/kernel/ostype` and `osrelease`).
    pub kernel: String,
    /// `rustc -V`.
    pub rustc: String,
    /// glibc version (`gnu_get_libc_version`).
    pub glibc: String,
    /// `name version` of the peer crates, from Cargo.lock.
    pub crates: Vec<String>,
}

/// The workspace's Cargo.lock as it was when the driver was built.
const CARGO_LOCK: &str = include_str!("../../Cargo.lock");

/// The crates whose versions the report names.
const REPORTED_CRATES: [&str; 4] = [
    "mimalloc",
    "libmimalloc-sys",
    "tikv-jemallocator",
    "tikv-jemalloc-sys",
];

impl Machine {
    /// Reads everything; a part that cannot be read says "unknown".
    pub fn probe() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string());
        let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
        let kernel = match (
            read("/proc/sys/kernel/ostype"),
            read("/proc/sys/kernel/osrelease"),
        ) {
            (Ok(t), Ok(r)) => format!("{t} {r}"),
            _ => "unknown".into(),
        };
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let rustc = Command::new(rustc)
            .arg("-V")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        Self {
            cpu: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel,
            rustc,
            glibc: glibc_version(),
            crates: REPORTED_CRATES
                .iter()
                .filter_map(|c| lock_version(CARGO_LOCK, c).map(|v| format!("{c} {v}")))
                .collect(),
        }
    }
}

/// The first `model name` of a `/proc/cpuinfo` text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim().to_string())
    })
}

/// The version of package `name` in a Cargo.lock text (the first entry).
pub fn lock_version(lock: &str, name: &str) -> Option<String> {
    let want = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l.trim() == want {
            let v = lines.next()?.trim();
            return Some(
                v.strip_prefix("version = \"")?
                    .strip_suffix('"')?
                    .to_string(),
            );
        }
    }
    None
}

#[cfg(target_env = "gnu")]
fn glibc_version() -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string.
    let p = unsafe { libc::gnu_get_libc_version() };
    // SAFETY: `p` is a valid C string that lives for the whole process.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(not(target_env = "gnu"))]
fn glibc_version() -> String {
    "not glibc".into()
}

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`), if readable.
pub fn load_average() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Now, as `YYYY-MM-DD HH:MM UTC`.
pub fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_string(secs)
}

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_string(secs: u64) -> String {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc_string(0), "1970-01-01 00:00 UTC");
        // 2000-02-29 12:34 UTC = 951827640 (a leap day of a /400 year).
        assert_eq!(utc_string(951_827_640), "2000-02-29 12:34 UTC");
        // 2024-12-31 23:59 UTC = 1735689540.
        assert_eq!(utc_string(1_735_689_540), "2024-12-31 23:59 UTC");
    }

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let info = "processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\nflags: x\n\
                    processor\t: 1\nmodel name\t: Other\n";
        assert_eq!(cpu_model(info).as_deref(), Some("Some CPU @ 2.0GHz"));
        assert_eq!(cpu_model("flags: x"), None);
    }

    #[test]
    fn lock_versions_are_found() {
        let lock = "[[package]]\nname = \"mimalloc\"\nversion = \"0.1.52\"\n";
        assert_eq!(lock_version(lock, "mimalloc").as_deref(), Some("0.1.52"));
        assert_eq!(lock_version(lock, "jemalloc"), None);
        assert!(lock_version(CARGO_LOCK, "mimalloc").is_some());
    }
}
