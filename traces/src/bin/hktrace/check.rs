//! `hktrace check`: a trace replayed through verify's lockstep against the
//! model.

use crate::{out_ok, progress, Failure};
use indicatif::ProgressStyle;
use serde::Serialize;
use std::io::{self, Write};
use std::path::Path;
use traces::file::TraceReader;

#[derive(Serialize)]
pub(crate) struct CheckJson<'a> {
    pub(crate) file: String,
    #[serde(flatten)]
    pub(crate) report: &'a traces::check::Report,
    pub(crate) divergences: u64,
    pub(crate) seconds: f64,
    pub(crate) events_per_second: f64,
}

pub(crate) fn cmd_check(
    path: &Path,
    json: bool,
    limit: Option<u64>,
    full_every: u64,
) -> Result<(), Failure> {
    use traces::check::{self, CheckError, Options};
    let name = path.display().to_string();
    if name == "-" {
        return Err(Failure(
            "check: needs a file, not stdin (the trace is read twice)".into(),
        ));
    }
    let opts = Options {
        limit,
        full_every: full_every.max(1),
        instance: hakmem::InstanceConfig {
            // Deterministic: no purge by age (the threshold purge stays).
            purge_delay_ms: u64::MAX,
            ..hakmem::InstanceConfig::DEFAULT
        },
    };
    let pb = progress(None, "check: reading");
    let start = std::time::Instant::now();
    let mut replaying = false;
    let bar =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let r = check::check::<verify::backends::record::Record>(
        &name,
        || TraceReader::open(path),
        &opts,
        |done, total| {
            if let (Some(total), false) = (total, replaying) {
                replaying = true;
                pb.set_style(bar.clone());
                pb.set_length(total);
                pb.set_message("check: replaying");
                pb.reset();
            }
            pb.set_position(done);
        },
    );
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let mut out = io::stdout().lock();
    match r {
        Ok(rep) => {
            if json {
                let j = CheckJson {
                    file: name,
                    report: &rep,
                    divergences: 0,
                    seconds: secs,
                    events_per_second: rep.checked as f64 / secs.max(1e-9),
                };
                out_ok(writeln!(out, "{}", serde_json::to_string_pretty(&j)?))?;
            } else {
                let mut text = format!(
                    "{name}: {} events, {} threads ({} logical, {} heaps reused), peak live {} bytes in {} blocks\n",
                    rep.events,
                    rep.threads,
                    rep.logical_threads,
                    rep.reused_heaps,
                    rep.peak_live_bytes,
                    rep.peak_live_blocks
                );
                if rep.checked < rep.events {
                    text += &format!(
                        "  prefix: the first {} of {} events replayed\n",
                        rep.checked, rep.events
                    );
                }
                text += &format!(
                    "  {} large allocations, reallocs {} in place / {} moved, {} remote frees ({} after the allocating thread ended)\n",
                    rep.large_allocs, rep.realloc_in_place, rep.realloc_moved, rep.remote_frees, rep.frees_after_exit
                );
                text += &format!(
                    "  {} model steps; {} whole-state and {} touched-parts comparisons; {:.2} s, {:.0} events/s\n",
                    rep.steps,
                    rep.full_checks,
                    rep.touched_checks,
                    secs,
                    rep.checked as f64 / secs.max(1e-9)
                );
                text += &format!("checked {} events, 0 divergences\n", rep.checked);
                out_ok(write!(out, "{text}"))?;
            }
            Ok(())
        }
        Err(CheckError::Trace(e)) => Err(Failure(e.to_string())),
        Err(e) => {
            if json {
                let (line, index, event, kind) = match &e {
                    CheckError::Divergence {
                        line,
                        index,
                        event,
                        divergence,
                        ..
                    } => (*line, Some(*index), Some(event.clone()), divergence.kind()),
                    CheckError::Memory { line, .. } => (*line, None, None, "memory"),
                    CheckError::Unsupported { line, .. } => (*line, None, None, "unsupported"),
                    CheckError::Trace(_) => unreachable!("handled above"),
                };
                let j = serde_json::json!({
                    "file": name,
                    "divergences": 1,
                    "line": line,
                    "index": index,
                    "event": event,
                    "kind": kind,
                    "message": e.to_string(),
                });
                out_ok(writeln!(out, "{}", serde_json::to_string_pretty(&j)?))?;
            }
            Err(Failure(e.to_string()))
        }
    }
}
