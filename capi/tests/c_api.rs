//! The C API's edge cases (`tests/c/api.c`) against `libhakmem.so`, both
//! linked (`-lhakmem`) and preloaded, and the invalid-pointer reports
//! (`tests/c/bad_free.c`) in child processes.

// The product runs on itself.
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

mod common;

use common::{compile_c, lib, run, scratch};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

fn check_api_output(o: &std::process::Output, how: &str) {
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && out.contains("checks passed"),
        "api.c {how}: {:?}\nstdout:\n{out}\nstderr:\n{err}",
        o.status
    );
}

/// `api.c` checks zero sizes, overflow (calloc, reallocarray, huge sizes),
/// alignments 1..1 MiB for every aligned function (and posix_memalign's
/// EINVAL cases), realloc grow/shrink/NULL/0 and failure, usable size ≥
/// requested, errno values, cross-thread frees, and fork while another
/// thread allocates. It also checks that hakmem is the allocator in use
/// (`malloc_usable_size(malloc(1)) == 16`).
#[test]
fn api_edge_cases_linked() {
    let dir = scratch("api_linked");
    let libdir = lib().parent().unwrap().to_str().unwrap().to_owned();
    let exe = dir.join("api");
    compile_c(
        "api.c",
        &exe,
        &[
            &format!("-L{libdir}"),
            "-lhakmem",
            &format!("-Wl,-rpath,{libdir}"),
        ],
    );
    check_api_output(&run(Command::new(&exe), false), "linked with -lhakmem");
}

#[test]
fn api_edge_cases_preloaded() {
    let dir = scratch("api_preloaded");
    let exe = dir.join("api");
    compile_c("api.c", &exe, &[]);
    check_api_output(&run(Command::new(&exe), true), "under LD_PRELOAD");
}

/// Runs `bad_free <case>` preloaded; it must die of SIGABRT with one line
/// on stderr that contains every piece of `want`.
fn bad(exe: &std::path::Path, case: &str, want: &[&str]) {
    let mut c = Command::new(exe);
    c.arg(case);
    let o = run(c, true);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGABRT),
        "{case}: expected an abort, got {:?}; stderr: {err}",
        o.status
    );
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("hakmem:")).collect();
    assert_eq!(
        lines.len(),
        1,
        "{case}: one hakmem line expected; stderr: {err}"
    );
    for w in want {
        // `a|b`: either.
        assert!(
            w.split('|').any(|alt| lines[0].contains(alt)),
            "{case}: {w:?} not in {:?}",
            lines[0]
        );
    }
    let ptr = err.lines().find(|l| l.starts_with("ptr=")).map(|l| &l[4..]);
    if let Some(p) = ptr {
        assert!(
            lines[0].contains(p),
            "{case}: the message names {p}: {:?}",
            lines[0]
        );
    }
}

#[test]
fn invalid_pointers_abort_with_one_line() {
    let dir = scratch("bad_free");
    let exe = dir.join("bad_free");
    compile_c("bad_free.c", &exe, &[]);
    let inv = "invalid pointer 0x";
    bad(
        &exe,
        "stack",
        &["hakmem: free(): ", inv, "not allocated by hakmem"],
    );
    bad(&exe, "double", &["hakmem: free(): ", inv, "double free"]);
    // A large block's mapping is cached or unmapped at its free: a second
    // free is "double free" while a live large block shares its 2 MiB
    // chunk, else its chunk no longer counts a large block.
    bad(
        &exe,
        "double-large",
        &["hakmem: free(): ", inv, "double free|already freed"],
    );
    bad(
        &exe,
        "misaligned",
        &["hakmem: free(): ", inv, "not the start of a 64-byte block"],
    );
    bad(
        &exe,
        "misaligned-large",
        &["hakmem: free(): ", inv, "misaligned"],
    );
    bad(
        &exe,
        "realloc-stack",
        &["hakmem: realloc(): ", inv, "not allocated by hakmem"],
    );
    bad(
        &exe,
        "realloc-misaligned",
        &[
            "hakmem: realloc(): ",
            inv,
            "not the start of a 64-byte block",
        ],
    );
    bad(
        &exe,
        "usable-stack",
        &[
            "hakmem: malloc_usable_size(): ",
            inv,
            "not allocated by hakmem",
        ],
    );
    // The child's case list is complete: an unknown case exits 2.
    let mut c = Command::new(&exe);
    c.arg("none");
    assert_eq!(run(c, true).status.code(), Some(2));
}

/// libhakmem.so loaded late with `dlopen` (its initial-exec TLS word then
/// takes a place in glibc's static TLS surplus): `tests/c/dlopen_threads.c`
/// calls its malloc/free from threads that existed before the `dlopen`,
/// threads created after it and main, with remote frees and a `dlclose`.
#[test]
fn dlopen_late_from_several_threads() {
    let dir = scratch("dlopen_threads");
    let exe = dir.join("dlopen_threads");
    compile_c("dlopen_threads.c", &exe, &["-ldl"]);
    let mut c = Command::new(&exe);
    c.arg(lib());
    let o = run(c, false);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("dlopen ok"),
        "{:?}\nstdout:\n{out}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

/// C++ under `LD_PRELOAD` (`tests/c/cxx_new.cpp`): every `operator new` and
/// `operator delete` form and glibc's `__libc_*` aliases resolve to
/// libhakmem.so, serve blocks of the right size and alignment (hakmem's
/// usable sizes), and fail as C++ wants (`std::bad_alloc` after the
/// new-handler, null for `nothrow`).
#[test]
fn cxx_operators_preloaded() {
    let dir = scratch("cxx_new");
    let exe = dir.join("cxx_new");
    compile_c(
        "cxx_new.cpp",
        &exe,
        &["-std=c++17", "-O0", "-lstdc++", "-ldl"],
    );
    let o = run(Command::new(&exe), true);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("cxx checks passed"),
        "{:?}\nstdout:\n{out}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    // On glibc the same program must fail its "served by hakmem" checks:
    // the test can tell the two apart.
    let o = run(Command::new(&exe), false);
    assert!(!o.status.success(), "cxx_new.cpp passed without hakmem");
}

/// The exported fast paths make no call (x86-64): no `__tls_get_addr` (the
/// heap word is initial-exec TLS), no stack frame, and their slow paths are
/// tail jumps. Read from `objdump -d` of the built libhakmem.so.
#[test]
#[cfg(target_arch = "x86_64")]
fn exported_fast_paths_make_no_call() {
    let so = lib();
    let nm = Command::new("nm")
        .args(["-D", "-S", "--defined-only"])
        .arg(so)
        .output()
        .expect("run nm (binutils)");
    let nm = String::from_utf8_lossy(&nm.stdout);
    for name in [
        "malloc", "free", "_Znwm", "_Znam", "_ZdlPv", "_ZdlPvm", "_ZdaPv",
    ] {
        let (addr, size) = nm
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 4 && f[3] == name).then(|| {
                    (
                        u64::from_str_radix(f[0], 16).unwrap(),
                        u64::from_str_radix(f[1], 16).unwrap(),
                    )
                })
            })
            .unwrap_or_else(|| panic!("{name} not exported"));
        let d = Command::new("objdump")
            .args(["-d", "--no-show-raw-insn"])
            .arg(format!("--start-address={addr}"))
            .arg(format!("--stop-address={}", addr + size))
            .arg(so)
            .output()
            .expect("run objdump (binutils)");
        let text = String::from_utf8_lossy(&d.stdout);
        let body: Vec<&str> = text.lines().filter(|l| l.contains(":\t")).collect();
        assert!(body.len() > 5, "{name}: no disassembly:\n{text}");
        for l in &body {
            assert!(
                !l.contains("call") && !l.contains("__tls_get_addr") && !l.contains("push"),
                "{name}: `{l}` in its fast path:\n{}",
                body.join("\n")
            );
        }
    }
}
