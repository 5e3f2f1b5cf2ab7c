//! `check` and `repair`: what of a trace is intact, and a new file holding
//! exactly that.
//!
//! Repair never re-encodes: it copies the header, every intact metadata block
//! and every chunk that decodes, byte for byte, and writes a fresh footer.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use rayon::prelude::*;

use crate::block::{BlockKind, block_header, prelude, trailer};
use crate::chunk::ColumnMask;
use crate::error::{FormatError, Result};
use crate::footer::{ChunkEntry, Footer};
use crate::reader::{Damage, FooterStatus, TraceReader};

/// The result of checking every block of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    pub footer: FooterStatus,
    /// Chunks that decode completely.
    pub good_chunks: usize,
    /// Events and variable changes in those chunks.
    pub events: u64,
    pub vars: u64,
    /// Everything that could not be read, by offset.
    pub damage: Vec<Damage>,
}

impl CheckReport {
    /// True when the file is complete and undamaged.
    pub fn is_clean(&self) -> bool {
        self.footer == FooterStatus::Intact && self.damage.is_empty()
    }
}

fn good_chunks(reader: &TraceReader) -> Vec<bool> {
    (0..reader.chunks().len())
        .into_par_iter()
        .map(|i| reader.read_chunk(i, ColumnMask::ALL).is_ok())
        .collect()
}

/// Decodes every chunk and reports what is intact.
pub fn check(reader: &TraceReader) -> CheckReport {
    let good = good_chunks(reader);
    let kept = reader.chunks().iter().zip(&good).filter(|(_, ok)| **ok);
    let (events, vars) = kept.fold((0, 0), |(e, v), (c, _)| {
        (
            e + u64::from(c.stats.event_count),
            v + u64::from(c.stats.var_count),
        )
    });
    CheckReport {
        footer: reader.footer_status().clone(),
        good_chunks: good.iter().filter(|ok| **ok).count(),
        events,
        vars,
        damage: reader.verify(),
    }
}

/// Writes the intact part of `reader`'s trace to `out` as a complete trace.
pub fn repair(reader: &TraceReader, out: &Path) -> Result<CheckReport> {
    if let (Ok(a), Ok(b)) = (out.canonicalize(), reader.path().canonicalize())
        && a == b
    {
        return Err(FormatError::io(
            out,
            std::io::Error::other(
                "refusing to overwrite the trace being repaired; choose another output path",
            ),
        ));
    }
    let report = check(reader);
    let good = good_chunks(reader);
    let header = reader
        .header_bytes()
        .ok_or_else(|| FormatError::Bug("an opened trace has no header block".into()))?;

    // Blocks to copy, in file order: (offset, chunk index if a chunk).
    let mut blocks: Vec<(u64, Option<usize>)> = reader
        .metadata_blocks()
        .iter()
        .map(|&o| (o, None))
        .collect();
    blocks.extend(
        (0..reader.chunks().len())
            .filter(|&i| good[i])
            .map(|i| (reader.chunks()[i].offset, Some(i))),
    );
    blocks.sort_unstable();

    let file = File::create(out).map_err(|e| FormatError::io(out, e))?;
    let mut w = BufWriter::new(file);
    let io = |e| FormatError::io(out, e);
    let mut offset = 0u64;
    let mut put = |w: &mut BufWriter<File>, bytes: &[u8]| -> Result<u64> {
        w.write_all(bytes).map_err(io)?;
        let at = offset;
        offset += bytes.len() as u64;
        Ok(at)
    };
    put(&mut w, &prelude(reader.version().1))?;
    put(&mut w, header)?;
    let mut footer = Footer::default();
    for (old_offset, chunk) in blocks {
        let bytes = reader
            .block_bytes(old_offset)
            .ok_or_else(|| FormatError::Bug(format!("block at {old_offset} vanished")))?;
        let at = put(&mut w, bytes)?;
        match chunk {
            Some(i) => footer.chunks.push(ChunkEntry {
                offset: at,
                length: bytes.len() as u64,
                stats: reader.chunks()[i].stats.clone(),
            }),
            None => footer.metadata_blocks.push(at),
        }
    }
    let body = footer.encode();
    let footer_offset = put(&mut w, &block_header(BlockKind::Footer, &body))?;
    put(&mut w, &body)?;
    put(&mut w, &trailer(footer_offset))?;
    w.flush().map_err(io)?;
    Ok(report)
}
