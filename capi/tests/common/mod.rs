//! Shared by the integration tests: the built `libhakmem.so`, a scratch
//! directory, a C compiler, and running commands with and without the
//! preload library.

#![allow(dead_code)] // each test binary uses a part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The release `libhakmem.so`, freshly built.
///
/// The tests run from `<target>/release/deps/`; the cdylib is
/// `<target>/release/libhakmem.so`. `cargo test` does not rebuild a
/// cdylib for integration tests, so it is built here with the same cargo
/// and target directory (a no-op when it is up to date; cargo releases its
/// build lock before running tests).
pub fn lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps");
        let so = profile_dir.join("libhakmem.so");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target = profile_dir.parent().expect("target dir");
        let st = Command::new(&cargo)
            .args(["build", "--release", "-p", "hakmem-capi", "--target-dir"])
            .arg(target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
        assert!(st.success(), "cargo build --release -p hakmem-capi failed");
        assert!(
            so.exists(),
            "{} not found after `cargo build --release -p hakmem-capi` \
             (these tests expect a release build: `cargo test --release`)",
            so.display()
        );
        so
    })
}

/// A fresh scratch directory for `name` (under the target directory, which
/// is on an executable file system).
pub fn scratch(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("capi-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles the C file `capi/tests/c/<src>` into `out` with `extra` flags.
pub fn compile_c(src: &str, out: &Path, extra: &[&str]) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(src);
    let o = Command::new("cc")
        .args([
            "-O1",
            "-fno-builtin",
            "-Wall",
            "-Wno-alloc-size-larger-than",
        ])
        .args([
            "-Wno-use-after-free",
            "-Wno-unknown-warning-option",
            "-pthread",
            "-o",
        ])
        .arg(out)
        .arg(&src)
        .args(extra)
        .output()
        .expect("run cc (install gcc: apt-get install -y gcc)");
    assert!(
        o.status.success(),
        "cc {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Runs `cmd` with the preload library (`preload`) or on glibc.
pub fn run(mut cmd: Command, preload: bool) -> Output {
    if preload {
        cmd.env("LD_PRELOAD", lib());
    } else {
        cmd.env_remove("LD_PRELOAD");
    }
    cmd.env_remove("HAKMEM_TRACE");
    cmd.env_remove("HAKMEM_TRACE_PID");
    cmd.output().expect("spawn")
}

/// Whether `prog` can be run (found on PATH).
pub fn have(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
