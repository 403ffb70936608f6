//! Configuration: the `HAKMEM_*` environment variables, read once.
//!
//! [`get`] parses the environment the first time it is called and returns
//! the same `&'static Config` ever after. It never allocates and never calls
//! back into the allocator: the variables are read with libc `getenv` (not
//! `std::env`, which builds `OsString`s) and parsed byte by byte. A malformed
//! value is reported on stderr in one line (variable, value, reason, the
//! default used) formatted on the stack, and the default is used: a typo in
//! an environment variable never stops a program.
//!
//! [`Config::from_lookup`] runs the same parser over any lookup function, so
//! tests exercise it without touching the process environment.
//!
//! The README's "Configuration" section documents every variable; keep the
//! two in step.

use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::diag::StackWriter;

/// `1 << 20`.
const MIB: usize = 1 << 20;

/// The allocator's tunables. Every field has a documented default
/// ([`Config::DEFAULT`]) and a range; see the README's "Configuration".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// `HAKMEM_STATS`: print the statistics on stderr at exit.
    pub stats: bool,
    /// `HAKMEM_ARENA_CACHE`: empty SuperSlabs kept mapped for reuse instead of
    /// being unmapped (each is 2 MiB of address space).
    pub arena_cache: usize,
    /// `HAKMEM_PURGE_DELAY_MS`: how long free memory stays committed before it
    /// goes back to the OS — an empty slab before `madvise`, a cached large
    /// mapping before `munmap`. `0` returns memory at once.
    pub purge_delay_ms: u64,
    /// `HAKMEM_LARGE_CACHE`: the most bytes of freed large mappings (up to
    /// 1 MiB of data each) kept for reuse; `0` disables the cache.
    pub large_cache_bytes: usize,
    /// `HAKMEM_PURGE_THRESHOLD`: the most bytes of empty slabs kept
    /// committed, whatever their age: when a slab empties past it, every
    /// empty slab is decommitted at once. `0` decommits each slab as it
    /// empties.
    pub purge_threshold_bytes: usize,
}

/// Bounds of the numeric variables (a value above is rejected, not clamped:
/// it is most likely a typo, and the default is the safer guess).
pub mod limits {
    /// Largest `HAKMEM_ARENA_CACHE` (4096 SuperSlabs = 8 GiB).
    pub const ARENA_CACHE_MAX: u64 = 4096;
    /// Largest `HAKMEM_PURGE_DELAY_MS` (one hour).
    pub const PURGE_DELAY_MS_MAX: u64 = 3_600_000;
    /// Largest `HAKMEM_LARGE_CACHE` (64 GiB).
    pub const LARGE_CACHE_MAX: u64 = 64 << 30;
    /// Largest `HAKMEM_PURGE_THRESHOLD` (64 GiB).
    pub const PURGE_THRESHOLD_MAX: u64 = 64 << 30;
}

impl Config {
    /// The defaults, used for every variable that is unset, empty or
    /// malformed.
    ///
    /// - `arena_cache = 4`: 8 MiB of address space keeps the SuperSlab churn
    ///   of a steady-state program away from mmap/munmap (the C version
    ///   measured 401 → 32 mmap calls with a small cache).
    /// - `purge_delay_ms = 100`: long enough to absorb the free/alloc
    ///   phases of a loop (reuse usually comes within microseconds to
    ///   milliseconds), short enough that an idle program is back near its
    ///   baseline RSS within a blink.
    /// - `large_cache_bytes = 6 MiB`: the extra RSS a program may keep for at
    ///   most the purge delay after freeing a burst of medium blocks; it holds
    ///   e.g. 24 blocks of 256 KiB. Measured on the python3 and sqlite3
    ///   replays (docs/benchmarks-analysis.md, *rss*): 16 MiB kept the peak
    ///   1.4–1.5× glibc's, filled with mappings no later request matched;
    ///   with hits up to two doublings above a request's class, 6 MiB takes
    ///   the same page faults as 16 MiB on python3 (4 MiB takes 17 % more).
    ///   Huge mappings (above 1 MiB) have their own budget, the live large
    ///   bytes, with this as its least.
    /// - `purge_threshold_bytes = 4 MiB` (64 slabs of 64 KiB): bounds what a
    ///   program that frees a burst of small blocks and then goes idle keeps
    ///   (the delay needs later allocator activity to act; the threshold acts
    ///   on the frees themselves).
    pub const DEFAULT: Config = Config {
        stats: false,
        arena_cache: 4,
        purge_delay_ms: 100,
        large_cache_bytes: 6 * MIB,
        purge_threshold_bytes: 4 * MIB,
    };

    /// Parses the configuration from `lookup` (variable name → value bytes,
    /// `None` when unset), printing one line on stderr for each malformed
    /// value. Allocation-free.
    pub fn from_lookup<'a, F>(lookup: F) -> Config
    where
        F: FnMut(&str) -> Option<&'a [u8]>,
    {
        Config::parse(lookup, |w| w.print())
    }

    /// Parses the configuration from `lookup`, handing each malformed value
    /// to `on_warning` instead of printing it. Allocation-free.
    pub fn parse<'a, F, W>(mut lookup: F, mut on_warning: W) -> Config
    where
        F: FnMut(&str) -> Option<&'a [u8]>,
        W: FnMut(&Warning<'_>),
    {
        let d = Config::DEFAULT;
        let mut c = d;
        let mut num = |name: &'static str, default: u64, max: u64, suffixes: bool| -> u64 {
            let Some(value) = lookup(name).filter(|v| !v.is_empty()) else {
                return default;
            };
            match parse_u64(value, suffixes) {
                Ok(v) if v <= max => v,
                Ok(_) => {
                    on_warning(&Warning {
                        var: name,
                        value,
                        reason: Reason::TooLarge(max),
                        default: Shown::Num(default),
                    });
                    default
                }
                Err(reason) => {
                    on_warning(&Warning {
                        var: name,
                        value,
                        reason,
                        default: Shown::Num(default),
                    });
                    default
                }
            }
        };
        c.arena_cache = num(
            "HAKMEM_ARENA_CACHE",
            d.arena_cache as u64,
            limits::ARENA_CACHE_MAX,
            false,
        ) as usize;
        c.purge_delay_ms = num(
            "HAKMEM_PURGE_DELAY_MS",
            d.purge_delay_ms,
            limits::PURGE_DELAY_MS_MAX,
            false,
        );
        c.large_cache_bytes = num(
            "HAKMEM_LARGE_CACHE",
            d.large_cache_bytes as u64,
            limits::LARGE_CACHE_MAX.min(usize::MAX as u64),
            true,
        ) as usize;
        c.purge_threshold_bytes = num(
            "HAKMEM_PURGE_THRESHOLD",
            d.purge_threshold_bytes as u64,
            limits::PURGE_THRESHOLD_MAX.min(usize::MAX as u64),
            true,
        ) as usize;
        if let Some(value) = lookup("HAKMEM_STATS").filter(|v| !v.is_empty()) {
            match parse_bool(value) {
                Some(b) => c.stats = b,
                None => on_warning(&Warning {
                    var: "HAKMEM_STATS",
                    value,
                    reason: Reason::NotBool,
                    default: Shown::Bool(d.stats),
                }),
            }
        }
        c
    }

    /// Parses the process environment (libc `getenv`). Prefer [`get`], which
    /// does this once.
    pub fn from_env() -> Config {
        Config::from_lookup(getenv)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

/// Why a value was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not a decimal number (with an optional `k`/`m`/`g` suffix where
    /// sizes are accepted).
    NotNumber,
    /// The number does not fit in 64 bits.
    Overflow,
    /// Above the variable's maximum (the payload).
    TooLarge(u64),
    /// Not one of `0 1 false true no yes off on`.
    NotBool,
}

/// A default value as shown in a warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    /// A number.
    Num(u64),
    /// A flag.
    Bool(bool),
}

/// One malformed variable: what [`Config::parse`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Warning<'a> {
    /// The variable's name.
    pub var: &'static str,
    /// Its value as found.
    pub value: &'a [u8],
    /// What is wrong with it.
    pub reason: Reason,
    /// The value used instead.
    pub default: Shown,
}

impl fmt::Display for Warning<'_> {
    /// `hakmem: HAKMEM_X="value" ignored (reason); using the default N`,
    /// the value shown with non-printable bytes escaped and cut at
    /// [`Warning::VALUE_SHOWN`] bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.value[..self.value.len().min(Self::VALUE_SHOWN)];
        write!(f, "hakmem: {}=\"{}", self.var, shown.escape_ascii())?;
        if shown.len() < self.value.len() {
            f.write_str("...")?;
        }
        f.write_str("\" ignored (")?;
        match self.reason {
            Reason::NotNumber => f.write_str("not a decimal number")?,
            Reason::Overflow => f.write_str("number too large for 64 bits")?,
            Reason::TooLarge(max) => write!(f, "above the maximum {max}")?,
            Reason::NotBool => f.write_str("expected 0/1, false/true, no/yes or off/on")?,
        }
        f.write_str("); using the default ")?;
        match self.default {
            Shown::Num(n) => write!(f, "{n}"),
            Shown::Bool(b) => write!(f, "{}", b as u8),
        }
    }
}

impl Warning<'_> {
    /// How many bytes of the value a warning shows: at 4 bytes per escaped
    /// byte the line stays within [`Warning::LINE_MAX`].
    pub const VALUE_SHOWN: usize = 48;
    /// The stack buffer of [`Warning::print`].
    pub const LINE_MAX: usize = 512;

    /// Writes the warning as one line on stderr without allocating.
    pub fn print(&self) {
        let mut w = StackWriter::<{ Warning::LINE_MAX }>::new();
        let _ = writeln!(w, "{self}");
        w.flush_to(2);
    }
}

/// Parses a decimal `u64`; with `suffixes`, one trailing `k`, `m` or `g`
/// (either case, binary: KiB, MiB, GiB) multiplies it.
fn parse_u64(bytes: &[u8], suffixes: bool) -> Result<u64, Reason> {
    let (digits, shift) = match bytes.last() {
        Some(b'k' | b'K') if suffixes => (&bytes[..bytes.len() - 1], 10),
        Some(b'm' | b'M') if suffixes => (&bytes[..bytes.len() - 1], 20),
        Some(b'g' | b'G') if suffixes => (&bytes[..bytes.len() - 1], 30),
        _ => (bytes, 0),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Reason::NotNumber);
    }
    let mut v: u64 = 0;
    for &b in digits {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(Reason::Overflow)?;
    }
    if shift > 0 && v.leading_zeros() < shift {
        return Err(Reason::Overflow);
    }
    Ok(v << shift)
}

/// Parses a flag, case-insensitively.
fn parse_bool(bytes: &[u8]) -> Option<bool> {
    const TRUE: [&[u8]; 3] = [b"1", b"true", b"yes"];
    const FALSE: [&[u8]; 3] = [b"0", b"false", b"no"];
    let is = |words: &[&[u8]]| words.iter().any(|w| w.eq_ignore_ascii_case(bytes));
    if is(&TRUE) || bytes.eq_ignore_ascii_case(b"on") {
        Some(true)
    } else if is(&FALSE) || bytes.eq_ignore_ascii_case(b"off") {
        Some(false)
    } else {
        None
    }
}

/// `getenv(name)` as bytes; `None` when unset. `name` is a short ASCII
/// variable name, copied with a NUL onto the stack.
fn getenv(name: &str) -> Option<&'static [u8]> {
    let mut buf = [0u8; 64];
    if name.len() >= buf.len() || name.as_bytes().contains(&0) {
        return None;
    }
    buf[..name.len()].copy_from_slice(name.as_bytes());
    // getenv returns null or a pointer to a NUL-terminated string inside the
    // environment block, which the program does not free (we read it once,
    // before the program is likely to call setenv; the bytes are parsed
    // before `get` returns).
    // SAFETY: `buf` is NUL-terminated; see above for the result.
    let p = unsafe { libc::getenv(buf.as_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: see above: `p` is a valid C string.
    Some(unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes())
}

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;

/// The process-wide configuration, written once by the winner of the
/// `UNINIT → BUSY` race, then `READY` (Release) for everyone.
struct Global {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<Config>>,
}

// SAFETY: `value` is written only by the thread that moved `state` from
// UNINIT to BUSY, and read only after `state == READY` was observed with
// Acquire, which orders the write before the read.
unsafe impl Sync for Global {}

static GLOBAL: Global = Global {
    state: AtomicU8::new(UNINIT),
    value: UnsafeCell::new(MaybeUninit::uninit()),
};

/// The configuration of this process: parsed from the environment on the
/// first call (thread-safe; one thread parses, the others wait), then
/// returned as is. Never allocates, never recurses into the allocator.
pub fn get() -> &'static Config {
    if GLOBAL.state.load(Ordering::Acquire) != READY {
        init_slow();
    }
    // SAFETY: `state == READY` (observed above with Acquire, or set by
    // `init_slow` on this thread): `value` is initialised and never written
    // again.
    unsafe { (*GLOBAL.value.get()).assume_init_ref() }
}

#[cold]
#[inline(never)]
fn init_slow() {
    match GLOBAL
        .state
        .compare_exchange(UNINIT, BUSY, Ordering::Acquire, Ordering::Acquire)
    {
        Ok(_) => {
            let c = Config::from_env();
            // SAFETY: the winner of UNINIT → BUSY is the only writer, and no
            // one reads before READY.
            unsafe { (*GLOBAL.value.get()).write(c) };
            GLOBAL.state.store(READY, Ordering::Release);
        }
        Err(_) => {
            // Another thread is parsing (a few microseconds): wait for it.
            let mut spins = 0u32;
            while GLOBAL.state.load(Ordering::Acquire) != READY {
                if spins < 64 {
                    core::hint::spin_loop();
                    spins += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `vars` (name, value) and collects the warnings' lines.
    fn parse(vars: &[(&str, &'static [u8])]) -> (Config, Vec<String>) {
        let mut warnings = Vec::new();
        let c = Config::parse(
            |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| *v),
            |w| warnings.push(w.to_string()),
        );
        (c, warnings)
    }

    #[test]
    fn unset_and_empty_give_the_defaults() {
        assert_eq!(parse(&[]), (Config::DEFAULT, vec![]));
        let (c, w) = parse(&[("HAKMEM_ARENA_CACHE", b""), ("HAKMEM_STATS", b"")]);
        assert_eq!(c, Config::DEFAULT);
        assert!(w.is_empty());
    }

    #[test]
    fn valid_values() {
        let (c, w) = parse(&[
            ("HAKMEM_STATS", b"1"),
            ("HAKMEM_ARENA_CACHE", b"0"),
            ("HAKMEM_PURGE_DELAY_MS", b"2500"),
            ("HAKMEM_LARGE_CACHE", b"64m"),
            ("HAKMEM_PURGE_THRESHOLD", b"0"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c,
            Config {
                stats: true,
                arena_cache: 0,
                purge_delay_ms: 2500,
                large_cache_bytes: 64 << 20,
                purge_threshold_bytes: 0,
            }
        );
        for (v, expect) in [
            (&b"4096"[..], 4096),
            (b"4k", 4096),
            (b"4K", 4096),
            (b"1G", 1 << 30),
            (b"0", 0),
        ] {
            let (c, w) = parse(&[("HAKMEM_LARGE_CACHE", v)]);
            assert!(w.is_empty());
            assert_eq!(c.large_cache_bytes, expect);
        }
        for (v, expect) in [
            (&b"0"[..], false),
            (b"TRUE", true),
            (b"yes", true),
            (b"off", false),
            (b"On", true),
        ] {
            assert_eq!(parse(&[("HAKMEM_STATS", v)]).0.stats, expect);
        }
    }

    #[test]
    fn malformed_values_warn_and_use_the_default() {
        let (c, w) = parse(&[("HAKMEM_ARENA_CACHE", b"abc")]);
        assert_eq!(c.arena_cache, 4);
        assert_eq!(
            w,
            ["hakmem: HAKMEM_ARENA_CACHE=\"abc\" ignored (not a decimal number); using the default 4"]
        );

        let (c, w) = parse(&[("HAKMEM_PURGE_DELAY_MS", b"99999999999999999999999")]);
        assert_eq!(c.purge_delay_ms, Config::DEFAULT.purge_delay_ms);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("too large for 64 bits"), "{}", w[0]);

        let (c, w) = parse(&[("HAKMEM_ARENA_CACHE", b"5000")]);
        assert_eq!(c.arena_cache, 4);
        assert!(w[0].contains("above the maximum 4096"), "{}", w[0]);

        // A suffix that overflows, a suffix where none is accepted, signs,
        // spaces, a lone suffix.
        for (name, v) in [
            ("HAKMEM_LARGE_CACHE", &b"99999999999g"[..]),
            ("HAKMEM_ARENA_CACHE", b"4k"),
            ("HAKMEM_ARENA_CACHE", b"-1"),
            ("HAKMEM_ARENA_CACHE", b"+1"),
            ("HAKMEM_ARENA_CACHE", b" 4"),
            ("HAKMEM_LARGE_CACHE", b"m"),
            ("HAKMEM_LARGE_CACHE", b"1.5m"),
        ] {
            let (c, w) = parse(&[(name, v)]);
            assert_eq!(c, Config::DEFAULT, "{name}={v:?}");
            assert_eq!(w.len(), 1, "{name}={v:?}");
            assert!(w[0].starts_with(&format!("hakmem: {name}=\"")), "{}", w[0]);
            assert!(w[0].contains("using the default"), "{}", w[0]);
        }

        let (c, w) = parse(&[("HAKMEM_STATS", b"maybe")]);
        assert!(!c.stats);
        assert_eq!(
            w,
            ["hakmem: HAKMEM_STATS=\"maybe\" ignored (expected 0/1, false/true, no/yes or off/on); using the default 0"]
        );
    }

    #[test]
    fn warnings_escape_and_cut_the_value() {
        let long: &'static [u8] = &[b'x'; 100];
        let (_, w) = parse(&[("HAKMEM_ARENA_CACHE", long)]);
        assert!(
            w[0].contains(&format!("\"{}...\"", "x".repeat(Warning::VALUE_SHOWN))),
            "{}",
            w[0]
        );
        let (_, w) = parse(&[("HAKMEM_ARENA_CACHE", b"1\n\xff")]);
        assert!(w[0].contains("\"1\\n\\xff\""), "{}", w[0]);
        assert!(!w[0].contains('\n'));
    }

    #[test]
    fn warning_fits_the_stack_buffer() {
        let long: &'static [u8] = &[0xff; 100];
        let (_, w) = parse(&[("HAKMEM_PURGE_DELAY_MS", long)]);
        assert!(
            w[0].len() + 1 < Warning::LINE_MAX - 4,
            "{} bytes",
            w[0].len()
        );
    }

    #[test]
    fn get_is_stable() {
        let a = get() as *const Config;
        let b = std::thread::spawn(|| get() as *const Config as usize)
            .join()
            .unwrap();
        assert_eq!(a as usize, b);
    }
}
