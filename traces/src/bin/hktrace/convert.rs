//! `hktrace convert` (text ↔ binary, compression) and `hktrace synth`
//! (generated traces).

use crate::cli::{CompressArg, FormatArg, SynthCmd};
use crate::{open, out_ok, progress, Failure};
use indicatif::ProgressBar;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use traces::compress::Compression;
use traces::file::{copy, CopyError, Format, TraceWriter};
use traces::synth::{Larson, LarsonGen, RandomMixed, RandomMixedGen};
use traces::Record;

/// Writes a trace to `output` through a temporary file renamed on success,
/// so that a failure leaves no half-written output.
pub(crate) fn write_trace(
    output: &Path,
    format: Option<Format>,
    compression: Option<Compression>,
    body: impl FnOnce(&mut TraceWriter<io::BufWriter<File>>) -> Result<u64, Failure>,
) -> Result<u64, Failure> {
    let format = format.or_else(|| Format::from_path(output)).ok_or_else(|| {
        Failure(format!(
            "{}: cannot tell text from binary by the name: use .hkt or .hkb (then optionally .gz or .zst), or --to",
            output.display()
        ))
    })?;
    let compression = compression.unwrap_or_else(|| Compression::from_path(output));
    let mut tmp = output.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut w = TraceWriter::create(&tmp, Some(format), Some(compression))
            .map_err(|e| Failure(format!("{}: {e}", tmp.display())))?;
        let n = body(&mut w)?;
        w.finish()
            .map_err(|e| Failure(format!("{}: {e}", tmp.display())))?;
        fs::rename(&tmp, output).map_err(|e| Failure(format!("{}: {e}", output.display())))?;
        Ok(n)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub(crate) fn cmd_convert(
    input: &Path,
    output: &Path,
    to: Option<FormatArg>,
    compress: Option<CompressArg>,
) -> Result<(), Failure> {
    let (mut r, pb) = open(input, "convert")?;
    let format = to.map(|t| match t {
        FormatArg::Text => Format::Text,
        FormatArg::Binary => Format::Binary,
    });
    let compression = compress.map(|c| match c {
        CompressArg::None => Compression::None,
        CompressArg::Gzip => Compression::Gzip,
        CompressArg::Zstd => Compression::Zstd,
    });
    let n = write_trace(output, format, compression, |w| {
        copy(&mut r, w, |_| {}).map_err(|e| match e {
            CopyError::Read(e) => Failure(e.to_string()),
            CopyError::Write(e) => Failure(format!("{}: {e}", output.display())),
        })
    });
    pb.finish_and_clear();
    let n = n?;
    out_ok(writeln!(
        io::stdout().lock(),
        "{} -> {}: {n} records",
        input.display(),
        output.display()
    ))
}

pub(crate) fn emit_all(
    gen: impl Iterator<Item = Record>,
    w: &mut TraceWriter<io::BufWriter<File>>,
    pb: &ProgressBar,
    output: &Path,
) -> Result<u64, Failure> {
    let mut n = 0u64;
    for rec in gen {
        w.write_record(&rec)
            .map_err(|e| Failure(format!("{}: {e}", output.display())))?;
        n += 1;
        if n % (64 << 10) == 0 {
            pb.set_position(n);
        }
    }
    Ok(n)
}

pub(crate) fn cmd_synth(kind: SynthCmd) -> Result<(), Failure> {
    let (n, output) = match kind {
        SynthCmd::RandomMixed {
            cycles,
            ws,
            seed,
            min,
            max,
            output,
        } => {
            let gen = RandomMixedGen::new(RandomMixed {
                cycles,
                ws,
                seed,
                min,
                max,
            })
            .map_err(|e| Failure(format!("random_mixed: {e}")))?;
            let pb = progress(None, "synth");
            let n = write_trace(&output, None, None, |w| emit_all(gen, w, &pb, &output));
            pb.finish_and_clear();
            (n?, output)
        }
        SynthCmd::Larson {
            threads,
            slots,
            rounds,
            ops,
            seed,
            min,
            max,
            output,
        } => {
            let gen = LarsonGen::new(Larson {
                threads,
                slots,
                rounds,
                ops,
                seed,
                min,
                max,
            })
            .map_err(|e| Failure(format!("larson: {e}")))?;
            let pb = progress(None, "synth");
            let n = write_trace(&output, None, None, |w| emit_all(gen, w, &pb, &output));
            pb.finish_and_clear();
            (n?, output)
        }
    };
    out_ok(writeln!(
        io::stdout().lock(),
        "{}: {n} records",
        output.display()
    ))
}
