//! `hktrace stats` and `hktrace validate`: figures of a trace, and its check
//! against the format.

use crate::{open, out_ok, Failure};
use serde::Serialize;
use std::io::{self, Write};
use std::path::Path;
use traces::file::Format;
use traces::stats::{self, Stats};
use traces::Record;

#[derive(Serialize)]
pub(crate) struct StatsReport<'a> {
    pub(crate) file: String,
    pub(crate) format: &'static str,
    #[serde(flatten)]
    pub(crate) stats: &'a Stats,
}

pub(crate) fn cmd_stats(path: &Path, json: bool) -> Result<(), Failure> {
    let (mut r, pb) = open(path, "stats")?;
    let s = stats::collect(&mut r, |_| {});
    pb.finish_and_clear();
    let s = s?;
    let mut out = io::stdout().lock();
    if json {
        let report = StatsReport {
            file: path.display().to_string(),
            format: match r.format() {
                Format::Text => "text",
                Format::Binary => "binary",
            },
            stats: &s,
        };
        let text = serde_json::to_string_pretty(&report)?;
        out_ok(writeln!(out, "{text}"))
    } else {
        out_ok(write!(out, "{}\n{s}", path.display()))
    }
}

#[derive(Serialize)]
pub(crate) struct ValidateReport {
    pub(crate) file: String,
    pub(crate) valid: bool,
    /// Last line read (valid), or the line of the error.
    pub(crate) line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    pub(crate) events: u64,
    pub(crate) comments: u64,
    pub(crate) threads: u64,
    pub(crate) live_blocks_at_end: u64,
}

pub(crate) fn cmd_validate(path: &Path, json: bool) -> Result<(), Failure> {
    let (mut r, pb) = open(path, "validate")?;
    let mut events = 0u64;
    let mut comments = 0u64;
    let result = loop {
        match r.next_record() {
            None => break Ok(()),
            Some(Ok(Record::Event(_))) => events += 1,
            Some(Ok(Record::Comment(_))) => comments += 1,
            Some(Err(e)) => break Err(e),
        }
    };
    pb.finish_and_clear();
    let v = r.validator();
    if json {
        let report = ValidateReport {
            file: path.display().to_string(),
            valid: result.is_ok(),
            line: match &result {
                Ok(()) => Some(r.line()),
                Err(e) => e.line,
            },
            reason: result.as_ref().err().map(|e| e.reason.to_string()),
            events,
            comments,
            threads: v.threads(),
            live_blocks_at_end: v.live_blocks(),
        };
        out_ok(writeln!(
            io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&report)?
        ))?;
        return result.map_err(Failure::from);
    }
    result?;
    out_ok(writeln!(
        io::stdout().lock(),
        "{}: valid: {} lines, {} events, {} comments, {} threads, {} blocks live at end",
        path.display(),
        r.line(),
        events,
        comments,
        v.threads(),
        v.live_blocks()
    ))
}
