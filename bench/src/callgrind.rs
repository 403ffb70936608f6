//! Instructions per operation under callgrind: `bench callgrind`.
//!
//! Each worker runs under `valgrind --tool=callgrind` with collection
//! switched on only inside `mixed_timed_loop` (and everything it calls), so
//! the count is the timed loop's: CYCLES iterations of the benchmark loop
//! plus the allocator's work. The floor's count per iteration is the loop
//! alone; the difference is the allocator's instructions per malloc/free.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// The symbol pattern of the timed loop (see `workloads::mixed_timed_loop`).
pub const TOGGLE: &str = "*mixed_timed_loop*";

/// The instruction count (`Ir`) in a callgrind output file: the `totals:`
/// line, else the `summary:` line.
pub fn total_ir(out_file_text: &str) -> Option<u64> {
    let find = |tag: &str| {
        out_file_text
            .lines()
            .find_map(|l| l.strip_prefix(tag))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    find("totals:").or_else(|| find("summary:"))
}

/// Runs `worker` (a worker command line) under callgrind and returns the
/// instructions counted inside the timed loop, and the worker's stand-in
/// line if it printed one. `scratch` is a directory for the output file.
pub fn count(worker: &Command, scratch: &Path, tag: &str) -> Result<(u64, Option<String>), String> {
    let out_file = scratch.join(format!("callgrind.{tag}.out"));
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(format!("--toggle-collect={TOGGLE}"))
        .arg(worker.get_program())
        .args(worker.get_args());
    for (k, v) in worker.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd
        .output()
        .map_err(|e| format!("valgrind: {e} (is valgrind installed?)"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "valgrind {}: {}",
            out.status,
            err.lines().last().unwrap_or("")
        ));
    }
    let text =
        std::fs::read_to_string(&out_file).map_err(|e| format!("{}: {e}", out_file.display()))?;
    let _ = std::fs::remove_file(&out_file);
    let stand_in = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(crate::worker::STAND_IN_TAG))
        .map(|s| s.trim().to_string());
    match total_ir(&text) {
        Some(0) | None => Err(format!(
            "no instructions collected in {TOGGLE} (symbol renamed or inlined?)"
        )),
        Some(n) => Ok((n, stand_in)),
    }
}

/// One line of the callgrind table.
#[derive(Clone, Debug)]
pub struct IrRow {
    /// Row name.
    pub row: String,
    /// (column label, instructions per op or an error).
    pub cells: Vec<(String, Result<f64, String>)>,
}

/// The Markdown (and terminal) table: instructions per op, and the same
/// minus the floor's where the floor was counted.
pub fn table(rows: &[IrRow], cycles: u64, date: &str, stand_in: Option<&str>) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# Instructions per operation (callgrind)\n");
    if let Some(what) = stand_in {
        let _ = writeln!(
            w,
            "> **Warning: the hakmem column is not hakmem.** {what}.\n"
        );
    }
    let _ = writeln!(
        w,
        "Written by `cargo run --release -p bench -- callgrind --cycles {cycles}` on {date}. \
         Instructions inside the timed loop ÷ CYCLES; in parentheses, minus the floor's \
         (the allocator's own instructions per malloc or free). Deterministic: no rounds needed. \
         One operation is one malloc or one free (about half each), so the allocator's figure \
         is the mean of its malloc and free paths, including the call into it: hakmem's malloc \
         and free are inlined into the loop by fat LTO, while the C peers are called through \
         their Rust wrappers.\n"
    );
    let labels: Vec<&str> = rows
        .first()
        .map(|r| r.cells.iter().map(|c| c.0.as_str()).collect())
        .unwrap_or_default();
    let _ = write!(w, "| row |");
    for l in &labels {
        let _ = write!(w, " {l} |");
    }
    let _ = writeln!(w, "\n|{}", " --- |".repeat(labels.len() + 1));
    for r in rows {
        let floor = r
            .cells
            .iter()
            .find(|c| c.0 == "floor")
            .and_then(|c| c.1.as_ref().ok().copied());
        let _ = write!(w, "| {} |", r.row);
        for (label, v) in &r.cells {
            let cell = match (v, floor) {
                (Ok(v), Some(f)) if label != "floor" => format!("{v:.1} ({:+.1})", v - f),
                (Ok(v), _) => format!("{v:.1}"),
                (Err(e), _) => format!("failed: {}", e.replace('|', "/")),
            };
            let _ = write!(w, " {cell} |");
        }
        let _ = writeln!(w);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_line_is_read() {
        let text = "version: 1\nevents: Ir\nfn=(1) x\n5 10\nsummary: 1234\ntotals: 1200\n";
        assert_eq!(total_ir(text), Some(1200));
        assert_eq!(total_ir("summary: 77\n"), Some(77));
        assert_eq!(total_ir("events: Ir\n"), None);
    }

    #[test]
    fn table_subtracts_the_floor() {
        let rows = vec![IrRow {
            row: "fixed_16".into(),
            cells: vec![
                ("system".into(), Ok(60.0)),
                ("hakmem".into(), Err("crashed".into())),
                ("floor".into(), Ok(20.0)),
            ],
        }];
        let t = table(&rows, 1000, "today", Some("glibc stands in"));
        assert!(t.contains("not hakmem"));
        assert!(
            t.contains("| fixed_16 | 60.0 (+40.0) | failed: crashed | 20.0 |"),
            "{t}"
        );
    }
}
