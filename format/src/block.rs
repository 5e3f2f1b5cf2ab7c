//! Framing: the fixed-width bytes around the Cap'n Proto bodies.
//!
//! ```text
//! file     = prelude block* [footer-block trailer]
//! prelude  = magic[8] "\x89CLOG\r\n\x1a" | major u16 | minor u16 | reserved u32 (0)   16 bytes
//! block    = "CLBK" | kind u8 | reserved[3] (0) | body_len u32 | crc32 u32 | body     16 + body_len bytes
//! trailer  = footer_offset u64 | end magic[8] "\x89CLOGEND"                            16 bytes
//! ```
//!
//! All integers are little-endian. Every block starts at a multiple of 8
//! (bodies are Cap'n Proto messages, whole 8-byte words), so bodies can be
//! read in place from a memory map. The CRC-32 (IEEE) covers the block
//! header's `kind`, reserved and `body_len` bytes followed by the body, so a
//! damaged length is caught as surely as a damaged body.

use crate::FORMAT_MAJOR;

/// First bytes of every trace. The high byte and the CR LF / ^Z sequence
/// catch transfers that mangle binary files, as PNG's signature does.
pub const FILE_MAGIC: [u8; 8] = *b"\x89CLOG\r\n\x1a";
/// Last bytes of a trace whose writer finished.
pub const END_MAGIC: [u8; 8] = *b"\x89CLOGEND";
/// First bytes of every block.
pub const BLOCK_MAGIC: [u8; 4] = *b"CLBK";
/// Size of the prelude.
pub const PRELUDE_LEN: usize = 16;
/// Size of a block header.
pub const BLOCK_HEADER_LEN: usize = 16;
/// Size of the trailer.
pub const TRAILER_LEN: usize = 16;

/// What a block holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    Header = 1,
    Metadata = 2,
    Chunk = 3,
    Footer = 4,
}

impl BlockKind {
    fn from_code(code: u8) -> Option<BlockKind> {
        match code {
            1 => Some(BlockKind::Header),
            2 => Some(BlockKind::Metadata),
            3 => Some(BlockKind::Chunk),
            4 => Some(BlockKind::Footer),
            _ => None,
        }
    }
}

/// The prelude for the given version.
pub(crate) fn prelude(minor: u16) -> [u8; PRELUDE_LEN] {
    let mut out = [0u8; PRELUDE_LEN];
    out[..8].copy_from_slice(&FILE_MAGIC);
    out[8..10].copy_from_slice(&FORMAT_MAJOR.to_le_bytes());
    out[10..12].copy_from_slice(&minor.to_le_bytes());
    out
}

/// The header of a block of `kind` holding `body` (a whole number of
/// 8-byte words).
pub(crate) fn block_header(kind: BlockKind, body: &[u8]) -> [u8; BLOCK_HEADER_LEN] {
    debug_assert_eq!(body.len() % 8, 0);
    let mut out = [0u8; BLOCK_HEADER_LEN];
    out[..4].copy_from_slice(&BLOCK_MAGIC);
    out[4] = kind as u8;
    out[8..12].copy_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    let crc = block_crc(&out[4..12], body);
    out[12..].copy_from_slice(&crc.to_le_bytes());
    out
}

fn block_crc(header: &[u8], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(body);
    hasher.finalize()
}

/// The trailer pointing at the footer block.
pub(crate) fn trailer(footer_offset: u64) -> [u8; TRAILER_LEN] {
    let mut out = [0u8; TRAILER_LEN];
    out[..8].copy_from_slice(&footer_offset.to_le_bytes());
    out[8..].copy_from_slice(&END_MAGIC);
    out
}

/// A block found and checked in a byte buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockRef<'a> {
    pub kind: BlockKind,
    pub body: &'a [u8],
    /// Length of the whole block, header included.
    pub len: u64,
}

/// Why no valid block starts at an offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BlockError {
    /// The buffer ends before the block does: a truncated file.
    Truncated { missing: u64 },
    /// The bytes there are not a valid block.
    Invalid(String),
}

impl std::fmt::Display for BlockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockError::Truncated { missing } => {
                write!(f, "block cut short ({missing} bytes missing)")
            }
            BlockError::Invalid(reason) => f.write_str(reason),
        }
    }
}

/// Reads and verifies the block that starts at `offset` of `data`.
pub(crate) fn read_block(data: &[u8], offset: u64) -> Result<BlockRef<'_>, BlockError> {
    let start =
        usize::try_from(offset).map_err(|_| BlockError::Invalid("offset out of range".into()))?;
    if start % 8 != 0 {
        return Err(BlockError::Invalid(format!(
            "block offset {offset} is not 8-byte aligned"
        )));
    }
    let Some(header) = data
        .get(start..)
        .and_then(|rest| rest.get(..BLOCK_HEADER_LEN))
    else {
        let have = data.len().saturating_sub(start);
        return Err(BlockError::Truncated {
            missing: (BLOCK_HEADER_LEN - have.min(BLOCK_HEADER_LEN)) as u64,
        });
    };
    if header[..4] != BLOCK_MAGIC {
        return Err(BlockError::Invalid(
            "no block starts here (bad block magic)".into(),
        ));
    }
    let kind = BlockKind::from_code(header[4])
        .ok_or_else(|| BlockError::Invalid(format!("unknown block kind {}", header[4])))?;
    let body_len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let stored_crc = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    if header[5..8] != [0, 0, 0] || !body_len.is_multiple_of(8) {
        return Err(BlockError::Invalid("malformed block header".into()));
    }
    let body_start = start + BLOCK_HEADER_LEN;
    let available = data.len() - body_start;
    if body_len > available {
        // A damaged length looks the same; the scanner resynchronises either way.
        return Err(BlockError::Truncated {
            missing: (body_len - available) as u64,
        });
    }
    let body = &data[body_start..body_start + body_len];
    if block_crc(&header[4..12], body) != stored_crc {
        return Err(BlockError::Invalid("checksum mismatch".into()));
    }
    Ok(BlockRef {
        kind,
        body,
        len: (BLOCK_HEADER_LEN + body_len) as u64,
    })
}

/// Offset of the next position at or after `from` where a block magic
/// stands on an 8-byte boundary, if any.
pub(crate) fn next_block_candidate(data: &[u8], from: u64) -> Option<u64> {
    let mut start = usize::try_from(from).ok()?.next_multiple_of(8);
    while start < data.len() {
        let found = memchr::memmem::find(&data[start..], &BLOCK_MAGIC)? + start;
        if found % 8 == 0 {
            return Some(found as u64);
        }
        start = (found + 1).next_multiple_of(8);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_block_reads_back_and_any_flip_is_caught() {
        let body = vec![7u8; 24];
        let block = [&block_header(BlockKind::Chunk, &body)[..], &body].concat();
        let read = read_block(&block, 0).expect("valid");
        assert_eq!(
            (read.kind, read.body, read.len),
            (BlockKind::Chunk, &body[..], 40)
        );
        for i in 0..block.len() {
            let mut damaged = block.clone();
            damaged[i] ^= 0x10;
            assert!(
                read_block(&damaged, 0).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        assert!(matches!(
            read_block(&block[..30], 0),
            Err(BlockError::Truncated { missing: 10 })
        ));
    }

    #[test]
    fn candidates_are_aligned_magics() {
        let mut data = vec![0u8; 64];
        data[3..7].copy_from_slice(&BLOCK_MAGIC);
        data[40..44].copy_from_slice(&BLOCK_MAGIC);
        assert_eq!(next_block_candidate(&data, 0), Some(40));
        assert_eq!(next_block_candidate(&data, 41), None);
    }
}
