//! The reader: memory-maps a trace and finds its chunks, through the footer
//! when the writer finished, by scanning block by block when it did not.
//!
//! The file is untrusted input. Every offset and length is checked against
//! the file before use, every block's checksum is verified before its body
//! is parsed, and nothing is allocated from a size read off disk without a
//! bound. A damaged block is reported (see [`Damage`]) and skipped; scanning
//! resumes at the next block magic on an 8-byte boundary.

use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;

use crate::block::{
    BLOCK_HEADER_LEN, BlockError, BlockKind, END_MAGIC, FILE_MAGIC, PRELUDE_LEN, TRAILER_LEN,
    next_block_candidate, read_block,
};
use crate::chunk::{ColumnMask, decode_chunk, read_stats};
use crate::error::{FormatError, Result};
use crate::event::EventBatch;
use crate::footer::{ChunkEntry, Footer};
use crate::header::HeaderInfo;
use crate::metadata::Tables;

/// A stretch of the file that could not be used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub offset: u64,
    pub length: u64,
    pub reason: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bytes {}..{}: {}",
            self.offset,
            self.offset + self.length,
            self.reason
        )
    }
}

/// How the chunk index was obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FooterStatus {
    /// The footer was read and every block it names was found.
    Intact,
    /// The file has no trailer (its writer did not finish): it was scanned.
    Missing,
    /// The trailer or footer is damaged: the file was scanned.
    Damaged(String),
}

impl std::fmt::Display for FooterStatus {
    /// `intact`, `missing` or `damaged: REASON`, as `info` and `check` print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FooterStatus::Intact => f.write_str("intact"),
            FooterStatus::Missing => f.write_str("missing"),
            FooterStatus::Damaged(reason) => write!(f, "damaged: {reason}"),
        }
    }
}

/// The bytes of a trace: mapped from a file, or owned (kept 8-byte aligned
/// so Cap'n Proto bodies can be read in place).
#[derive(Debug)]
enum Backing {
    Mapped(Mmap),
    Owned { words: Vec<u64>, len: usize },
}

impl Deref for Backing {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Backing::Mapped(map) => map,
            Backing::Owned { words, len } => {
                // SAFETY: a Vec<u64> of `words.len()` elements is
                // `8 * words.len()` initialised bytes, and `len` never
                // exceeds that (see `TraceReader::from_bytes`); u8 has no
                // alignment or validity requirements.
                let bytes = unsafe {
                    std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8)
                };
                &bytes[..*len]
            }
        }
    }
}

/// An open trace. See the module documentation.
#[derive(Debug)]
pub struct TraceReader {
    path: PathBuf,
    data: Backing,
    minor: u16,
    header: HeaderInfo,
    tables: Tables,
    chunks: Vec<ChunkEntry>,
    metadata_blocks: Vec<u64>,
    damage: Vec<Damage>,
    footer: FooterStatus,
}

impl TraceReader {
    /// Opens and indexes the trace at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<TraceReader> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| FormatError::io(path, e))?;
        let metadata = file.metadata().map_err(|e| FormatError::io(path, e))?;
        if metadata.is_dir() {
            return Err(FormatError::io(
                path,
                std::io::Error::other("is a directory"),
            ));
        }
        if metadata.len() == 0 {
            return Err(FormatError::NotATrace { path: path.into() });
        }
        // SAFETY: the map is read-only and chronolog never writes to a trace
        // it reads. Another process truncating the file while it is mapped
        // would make reads fault (SIGBUS); that is the documented caveat of
        // reading a file that is being replaced, not a memory-safety issue
        // within this process's own writes.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| FormatError::io(path, e))?;
        TraceReader::index(path.to_path_buf(), Backing::Mapped(map))
    }

    /// Reads a trace held in memory; `name` is used in messages.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: &[u8]) -> Result<TraceReader> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
            let mut padded = [0u8; 8];
            padded[..chunk.len()].copy_from_slice(chunk);
            *word = u64::from_ne_bytes(padded);
        }
        TraceReader::index(
            name.into(),
            Backing::Owned {
                words,
                len: bytes.len(),
            },
        )
    }

    fn index(path: PathBuf, data: Backing) -> Result<TraceReader> {
        let bytes: &[u8] = &data;
        let cut = |what: &str| FormatError::Truncated {
            path: path.clone(),
            what: what.into(),
        };
        if bytes.len() < FILE_MAGIC.len() {
            return Err(if FILE_MAGIC.starts_with(bytes) {
                cut("the file ends inside its magic bytes")
            } else {
                FormatError::NotATrace { path }
            });
        }
        if bytes[..8] != FILE_MAGIC {
            return Err(FormatError::NotATrace { path });
        }
        if bytes.len() < PRELUDE_LEN {
            return Err(cut("the file ends inside its prelude"));
        }
        let major = u16::from_le_bytes([bytes[8], bytes[9]]);
        let minor = u16::from_le_bytes([bytes[10], bytes[11]]);
        if major > crate::FORMAT_MAJOR {
            return Err(FormatError::NewerVersion { path, major, minor });
        }
        if major < crate::FORMAT_MAJOR {
            return Err(FormatError::Corrupt {
                path,
                offset: 8,
                reason: format!("unknown format version {major}.{minor}"),
            });
        }
        let header_block = match read_block(bytes, PRELUDE_LEN as u64) {
            Ok(block) if block.kind == BlockKind::Header => block,
            Ok(_) => {
                return Err(corrupt(
                    &path,
                    PRELUDE_LEN as u64,
                    "the first block is not a header",
                ));
            }
            Err(BlockError::Truncated { .. }) => {
                return Err(cut("the file ends inside its header"));
            }
            Err(BlockError::Invalid(reason)) => {
                return Err(corrupt(&path, PRELUDE_LEN as u64, &reason));
            }
        };
        let header = HeaderInfo::decode(header_block.body)
            .map_err(|reason| corrupt(&path, PRELUDE_LEN as u64, &format!("header: {reason}")))?;
        let data_start = PRELUDE_LEN as u64 + header_block.len;

        let mut reader = TraceReader {
            path,
            data,
            minor,
            header,
            tables: Tables::default(),
            chunks: Vec::new(),
            metadata_blocks: Vec::new(),
            damage: Vec::new(),
            footer: FooterStatus::Missing,
        };
        match reader.read_footer(data_start) {
            Ok(()) => reader.footer = FooterStatus::Intact,
            Err(status) => {
                reader.footer = status;
                reader.scan(data_start);
            }
        }
        Ok(reader)
    }

    /// Indexes through the footer; on any inconsistency, says why.
    fn read_footer(&mut self, data_start: u64) -> std::result::Result<(), FooterStatus> {
        let bytes: &[u8] = &self.data;
        let len = bytes.len() as u64;
        let damaged = |reason: &str| FooterStatus::Damaged(reason.to_string());
        if len < data_start + (BLOCK_HEADER_LEN + TRAILER_LEN) as u64
            || bytes[bytes.len() - 8..] != END_MAGIC
        {
            return Err(FooterStatus::Missing);
        }
        let trailer = &bytes[bytes.len() - TRAILER_LEN..];
        let footer_offset = u64::from_le_bytes(trailer[..8].try_into().unwrap_or_default());
        let footer_end = len - TRAILER_LEN as u64;
        if footer_offset < data_start || footer_offset >= footer_end {
            return Err(damaged("the trailer points outside the file"));
        }
        let block =
            read_block(bytes, footer_offset).map_err(|e| damaged(&format!("footer: {e}")))?;
        if block.kind != BlockKind::Footer || footer_offset + block.len != footer_end {
            return Err(damaged("the trailer does not point at the footer"));
        }
        let footer = Footer::decode(block.body).map_err(|e| damaged(&format!("footer: {e}")))?;
        let mut previous_end = data_start;
        for chunk in &footer.chunks {
            let end = chunk.offset.checked_add(chunk.length);
            if chunk.offset < previous_end || end.is_none_or(|end| end > footer_offset) {
                return Err(damaged(
                    "the footer lists a chunk outside the file or out of order",
                ));
            }
            previous_end = end.unwrap_or(footer_offset);
        }
        let mut tables = Tables::default();
        for &offset in &footer.metadata_blocks {
            if offset < data_start || offset >= footer_offset {
                return Err(damaged(
                    "the footer lists a metadata block outside the file",
                ));
            }
            let block = read_block(bytes, offset)
                .map_err(|e| damaged(&format!("metadata block at {offset}: {e}")))?;
            if block.kind != BlockKind::Metadata {
                return Err(damaged("the footer lists a metadata block that is not one"));
            }
            tables
                .apply(block.body)
                .map_err(|e| damaged(&format!("metadata block at {offset}: {e}")))?;
        }
        self.tables = tables;
        self.chunks = footer.chunks;
        self.metadata_blocks = footer.metadata_blocks;
        Ok(())
    }

    /// Indexes by walking the blocks from the start.
    fn scan(&mut self, data_start: u64) {
        let bytes: &[u8] = &self.data;
        let len = bytes.len() as u64;
        let mut pos = data_start;
        while pos < len {
            let block = match read_block(bytes, pos) {
                Ok(block) => block,
                Err(error) => {
                    let next = next_block_candidate(bytes, pos + 1).unwrap_or(len);
                    let reason = match error {
                        BlockError::Truncated { missing } if next == len => {
                            format!("the file ends inside a block ({missing} bytes missing)")
                        }
                        other => other.to_string(),
                    };
                    self.damage.push(Damage {
                        offset: pos,
                        length: next - pos,
                        reason,
                    });
                    pos = next;
                    continue;
                }
            };
            let problem = match block.kind {
                BlockKind::Metadata => {
                    let applied = self.tables.apply(block.body);
                    if applied.is_ok() {
                        self.metadata_blocks.push(pos);
                    }
                    applied.err().map(|e| format!("metadata: {e}"))
                }
                BlockKind::Chunk => match read_stats(block.body) {
                    Ok(stats) => {
                        self.chunks.push(ChunkEntry {
                            offset: pos,
                            length: block.len,
                            stats,
                        });
                        None
                    }
                    Err(e) => Some(format!("chunk: {e}")),
                },
                BlockKind::Footer => break,
                BlockKind::Header => Some("a second header block".into()),
            };
            if let Some(reason) = problem {
                self.damage.push(Damage {
                    offset: pos,
                    length: block.len,
                    reason,
                });
            }
            pos += block.len;
        }
    }

    /// The path (or name) the trace was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the trace in bytes.
    pub fn file_len(&self) -> u64 {
        self.data.len() as u64
    }

    /// Format version (major, minor) of the file.
    pub fn version(&self) -> (u16, u16) {
        (crate::FORMAT_MAJOR, self.minor)
    }

    /// The header block's contents.
    pub fn header(&self) -> &HeaderInfo {
        &self.header
    }

    /// Strings, code objects, threads, sources and metadata facts.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Every intact chunk, in file order.
    pub fn chunks(&self) -> &[ChunkEntry] {
        &self.chunks
    }

    /// Offsets of the intact metadata blocks, in file order.
    pub fn metadata_blocks(&self) -> &[u64] {
        &self.metadata_blocks
    }

    /// Damage found while indexing (chunks are checked fully only on read).
    pub fn damage(&self) -> &[Damage] {
        &self.damage
    }

    /// How the chunk index was obtained.
    pub fn footer_status(&self) -> &FooterStatus {
        &self.footer
    }

    /// Number of events in the intact chunks.
    pub fn event_count(&self) -> u64 {
        self.chunks
            .iter()
            .map(|c| u64::from(c.stats.event_count))
            .sum()
    }

    /// Number of variable changes in the intact chunks.
    pub fn var_count(&self) -> u64 {
        self.chunks
            .iter()
            .map(|c| u64::from(c.stats.var_count))
            .sum()
    }

    /// The raw bytes of the block at `offset`, header included (for repair).
    pub(crate) fn block_bytes(&self, offset: u64) -> Option<&[u8]> {
        let block = read_block(&self.data, offset).ok()?;
        let start = usize::try_from(offset).ok()?;
        self.data
            .get(start..start + usize::try_from(block.len).ok()?)
    }

    /// The header block, verbatim (for repair).
    pub(crate) fn header_bytes(&self) -> Option<&[u8]> {
        self.block_bytes(PRELUDE_LEN as u64)
    }

    /// Decodes chunk `index` with the `mask` columns.
    pub fn read_chunk(&self, index: usize, mask: ColumnMask) -> Result<EventBatch> {
        let entry = self.chunks.get(index).ok_or_else(|| {
            FormatError::Bug(format!("chunk {index} of {} requested", self.chunks.len()))
        })?;
        let fail = |reason: String| FormatError::Corrupt {
            path: self.path.clone(),
            offset: entry.offset,
            reason,
        };
        let block =
            read_block(&self.data, entry.offset).map_err(|e| fail(format!("chunk: {e}")))?;
        if block.kind != BlockKind::Chunk || block.len != entry.length {
            return Err(fail("the index does not point at a chunk".into()));
        }
        let (stats, batch) =
            decode_chunk(block.body, mask).map_err(|e| fail(format!("chunk: {e}")))?;
        if stats != entry.stats {
            return Err(fail("chunk statistics disagree with the footer".into()));
        }
        Ok(batch)
    }

    /// Decodes every chunk in parallel and reports those that fail, with the
    /// damage found while indexing: the full list of what is unreadable.
    pub fn verify(&self) -> Vec<Damage> {
        let failures: Vec<Damage> = (0..self.chunks.len())
            .into_par_iter()
            .filter_map(|i| {
                let entry = &self.chunks[i];
                self.read_chunk(i, ColumnMask::ALL).err().map(|e| Damage {
                    offset: entry.offset,
                    length: entry.length,
                    reason: match e {
                        FormatError::Corrupt { reason, .. } => reason,
                        other => other.to_string(),
                    },
                })
            })
            .collect();
        let mut all = self.damage.clone();
        all.extend(failures);
        all.sort_by_key(|d| d.offset);
        all
    }
}

fn corrupt(path: &Path, offset: u64, reason: &str) -> FormatError {
    FormatError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.to_string(),
    }
}
