//! What the preload suite runs: the programs compiled from
//! `bench/preload/`, `libhakmem.so`, and the columns (glibc, hakmem, the
//! Debian peers that are installed).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::programs::{Program, Source};
use crate::runner::workspace_root;
use crate::suite::Column;

/// Where Debian puts the peers' shared libraries.
pub const LIBDIR: &str = "/usr/lib/x86_64-linux-gnu";

/// The peers, as (library file, Debian package).
pub const PEERS: [(&str, &str); 3] = [
    ("libmimalloc.so.2", "libmimalloc2.0"),
    ("libjemalloc.so.2", "libjemalloc2"),
    ("libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
];

/// A column of the suite and the library its runs preload (`None`: glibc).
#[derive(Clone, Debug)]
pub struct Allocator {
    /// The report's column.
    pub column: Column,
    /// `LD_PRELOAD` of its runs.
    pub preload: Option<PathBuf>,
}

/// The columns in run order (glibc, the installed peers, hakmem) and the
/// peers that are not installed, as "label (package)". `hakmem_so` is the
/// library built by [`build_hakmem`]; `libdir` is [`LIBDIR`] but for tests.
pub fn allocators(hakmem_so: &Path, libdir: &Path) -> (Vec<Allocator>, Vec<String>) {
    let mut cols = vec![Allocator {
        column: Column::System,
        preload: None,
    }];
    let mut missing = Vec::new();
    for (file, package) in PEERS {
        let path = libdir.join(file);
        let column = Column::preload(path.clone());
        if path.is_file() {
            cols.push(Allocator {
                column,
                preload: Some(path),
            });
        } else {
            missing.push(format!("{} ({package})", column.label()));
        }
    }
    cols.push(Allocator {
        column: Column::Hakmem,
        preload: Some(hakmem_so.to_path_buf()),
    });
    (cols, missing)
}

/// Builds `libhakmem.so` (`cargo build --release -p hakmem-capi`) into the
/// driver's target directory and returns its path.
pub fn build_hakmem(bin_dir: &Path, no_build: bool) -> Result<PathBuf, String> {
    let so = bin_dir.join("libhakmem.so");
    if !no_build {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let target_dir = bin_dir
            .parent()
            .ok_or("the driver is not in a cargo target directory")?;
        eprintln!("building libhakmem.so (cargo build --release -p hakmem-capi)…");
        let status = Command::new(&cargo)
            .args(["build", "--release", "-p", "hakmem-capi", "--target-dir"])
            .arg(target_dir)
            .current_dir(workspace_root())
            .status()
            .map_err(|e| format!("starting {cargo:?}: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build -p hakmem-capi failed: {status}"));
        }
    }
    if so.is_file() {
        Ok(so)
    } else {
        Err(format!("{} not found", so.display()))
    }
}

/// Compiles every built program of `programs` into `out` (`cc -O2` for C,
/// `c++ -O2` for C++, both `-pthread`) and returns each row's executable,
/// in the order of `programs` (`sqlite3` and `redis-server` from `PATH` for
/// the Debian programs' rows). A compiler or program that is missing is an
/// error naming its package.
pub fn build_programs(programs: &[Program], out: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let src = workspace_root().join("bench/preload");
    let mut done: Vec<(&str, PathBuf)> = Vec::new();
    let mut exes = Vec::new();
    for p in programs {
        let exe = match p.source {
            Source::Sqlite => find_on_path("sqlite3").ok_or(
                "sqlite3 not found on PATH (Debian package sqlite3; the README's set-up installs it)",
            )?,
            Source::Redis => {
                redis_client()?;
                find_on_path("redis-server").ok_or(
                    "redis-server not found on PATH (Debian package redis-server; the README's \
                     set-up installs it)",
                )?
            }
            Source::Built(file) => {
                if let Some((_, e)) = done.iter().find(|(f, _)| *f == file) {
                    exes.push(e.clone());
                    continue;
                }
                let cxx = file.ends_with(".cc");
                let (compiler, package) = if cxx { ("c++", "g++") } else { ("cc", "gcc") };
                let exe = out.join(p.binary());
                let o = Command::new(compiler)
                    .args(["-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", "-o"])
                    .arg(&exe)
                    .arg(src.join(file))
                    .output()
                    .map_err(|e| format!("{compiler} (Debian package {package}): {e}"))?;
                if !o.status.success() {
                    return Err(format!(
                        "{compiler} {file} failed:\n{}",
                        String::from_utf8_lossy(&o.stderr)
                    ));
                }
                done.push((file, exe.clone()));
                exe
            }
        };
        exes.push(exe);
    }
    Ok(exes)
}

/// `redis-benchmark`, the redis row's client.
pub fn redis_client() -> Result<PathBuf, String> {
    find_on_path("redis-benchmark").ok_or_else(|| {
        "redis-benchmark not found on PATH (Debian package redis-tools, with redis-server)".into()
    })
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_peer_is_a_skipped_column_named_with_its_package() {
        let dir = std::env::temp_dir().join(format!("preload-peers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libjemalloc.so.2"), b"").unwrap();
        let (cols, missing) = allocators(Path::new("/x/libhakmem.so"), &dir);
        let labels: Vec<&str> = cols.iter().map(|a| a.column.label()).collect();
        assert_eq!(labels, ["system", "jemalloc", "hakmem"]);
        assert_eq!(
            missing,
            [
                "mimalloc (libmimalloc2.0)",
                "tcmalloc (libtcmalloc-minimal4)"
            ]
        );
        assert!(cols[0].preload.is_none());
        assert_eq!(
            cols[2].preload.as_deref(),
            Some(Path::new("/x/libhakmem.so"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
