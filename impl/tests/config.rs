//! The configuration as a program sees it: a malformed variable prints one
//! warning line and the program runs on with the default. (The parser
//! itself is unit-tested through `Config::parse` in `src/config.rs`.)

mod common;

use std::alloc::{alloc, dealloc, Layout};

#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

/// Child side: allocates small and large blocks (so that the allocator reads
/// its configuration, wherever it does) and reports what it parsed.
fn run_program() {
    let mut v: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    v.sort();
    for size in [16usize, 1000, 5000, 100_000, 3 << 20] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: non-zero size; freed with its layout.
        unsafe {
            let p = alloc(layout);
            assert!(!p.is_null());
            p.write_bytes(1, size);
            dealloc(p, layout);
        }
    }
    let c = hakmem::config::get();
    println!(
        "RAN arena_cache={} purge_delay_ms={} large_cache_bytes={} stats={} ({} strings)",
        c.arena_cache,
        c.purge_delay_ms,
        c.large_cache_bytes,
        c.stats,
        v.len()
    );
}

#[test]
fn malformed_variable_warns_once_and_the_program_runs() {
    if common::scenario().as_deref() == Some("program") {
        run_program();
        return;
    }
    let out = common::run_child(
        "malformed_variable_warns_once_and_the_program_runs",
        "program",
        &[("HAKMEM_ARENA_CACHE", "abc"), ("HAKMEM_LARGE_CACHE", "8m")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed: {}\n{stderr}",
        out.status
    );
    let d = hakmem::config::Config::DEFAULT;
    assert!(
        stdout.contains(&format!(
            "RAN arena_cache={} purge_delay_ms={} large_cache_bytes={} stats=false (1000 strings)",
            d.arena_cache,
            d.purge_delay_ms,
            8 << 20
        )),
        "{stdout}"
    );
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("hakmem:"))
        .collect();
    assert_eq!(
        warnings,
        [format!(
            "hakmem: HAKMEM_ARENA_CACHE=\"abc\" ignored (not a decimal number); using the default {}",
            d.arena_cache
        )],
        "stderr:\n{stderr}"
    );
}

#[test]
fn valid_variables_are_silent() {
    if common::scenario().as_deref() == Some("valid") {
        run_program();
        return;
    }
    let out = common::run_child(
        "valid_variables_are_silent",
        "valid",
        &[
            ("HAKMEM_ARENA_CACHE", "2"),
            ("HAKMEM_PURGE_DELAY_MS", "0"),
            ("HAKMEM_LARGE_CACHE", "1g"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed: {}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(
            "RAN arena_cache=2 purge_delay_ms=0 large_cache_bytes=1073741824 stats=false"
        ),
        "{stdout}"
    );
    assert!(!stderr.contains("hakmem:"), "{stderr}");
}
