//! Every decoder of untrusted bytes, callable on its own: the entry points
//! the fuzz targets (`fuzz/`) and the property tests (`tests/entry_points.rs`)
//! feed arbitrary input to. Each returns an error for bad input; none may
//! panic, hang or allocate beyond what the input's own size justifies.

use crate::block::BlockKind;
use crate::chunk::{ColumnMask, decode_chunk};
use crate::encoding::{decode_ints, decompress};
use crate::footer::Footer;
use crate::generated::trace_capnp::{Compression, Encoding};
use crate::header::HeaderInfo;
use crate::metadata::Tables;
use crate::reader::TraceReader;

/// A whole file: opened (header, metadata, footer or scan), then every chunk
/// decoded with every column. Returns the number of events read.
pub fn read_file(bytes: &[u8]) -> usize {
    let Ok(reader) = TraceReader::from_bytes("fuzz.clog", bytes) else {
        return 0;
    };
    (0..reader.chunks().len())
        .filter_map(|i| reader.read_chunk(i, ColumnMask::ALL).ok())
        .map(|batch| batch.len())
        .sum()
}

/// The body of a header block.
pub fn header(body: &[u8]) -> Result<(), String> {
    HeaderInfo::decode(body).map(|_| ())
}

/// The body of a metadata block, applied to empty tables.
pub fn metadata(body: &[u8]) -> Result<(), String> {
    Tables::default().apply(body)
}

/// The body of a footer block.
pub fn footer(body: &[u8]) -> Result<(), String> {
    Footer::decode(body).map(|_| ())
}

/// The body of a chunk block, every column decoded.
pub fn chunk(body: &[u8]) -> Result<usize, String> {
    decode_chunk(body, ColumnMask::ALL).map(|(_, batch)| batch.len())
}

/// One column's bytes: `compression` (0 none, 1 LZ4) then `encoding`
/// (1 varint, 2 delta varint, 3 RLE, 4 delta RLE), `count` values of
/// `raw_len` bytes before compression.
pub fn column(
    compression: u8,
    encoding: u8,
    count: usize,
    raw_len: usize,
    data: &[u8],
) -> Result<usize, String> {
    let compression = match compression {
        0 => Compression::None,
        1 => Compression::Lz4,
        other => return Err(format!("compression {other}")),
    };
    let encoding = match encoding {
        1 => Encoding::Varint,
        2 => Encoding::DeltaVarint,
        3 => Encoding::Rle,
        4 => Encoding::DeltaRle,
        other => return Err(format!("encoding {other}")),
    };
    let mut scratch = Vec::new();
    let raw = decompress(compression, data, raw_len, &mut scratch)?;
    let mut out: Vec<u64> = Vec::new();
    decode_ints(encoding, raw, count, &mut out)?;
    Ok(out.len())
}

/// The intact blocks of a file from its start, in order, with the name of
/// the entry point that decodes each body (`header`, `metadata`, `chunk`,
/// `footer`): seeds for the fuzz corpus.
pub fn blocks(bytes: &[u8]) -> Vec<(&'static str, &[u8])> {
    let mut found = Vec::new();
    let mut offset = crate::block::PRELUDE_LEN as u64;
    while let Ok(block) = crate::block::read_block(bytes, offset) {
        let name = match block.kind {
            BlockKind::Header => "header",
            BlockKind::Metadata => "metadata",
            BlockKind::Chunk => "chunk",
            BlockKind::Footer => "footer",
        };
        found.push((name, block.body));
        offset += block.len;
    }
    found
}
