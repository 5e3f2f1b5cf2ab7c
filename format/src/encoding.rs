//! Column encodings and compression.
//!
//! Every integer column is stored with whichever of four encodings makes it
//! smallest, chosen per chunk by counting bytes in one pass (no trial
//! encoding): plain varints (small ids), zigzag delta varints (timestamps,
//! frame ids), run-length (thread, depth in straight-line code) and
//! run-length over deltas (`seq`, which grows by exactly one: a chunk's whole
//! column becomes one run). The encoded bytes are then LZ4-compressed, or
//! stored raw when LZ4 does not shrink them.
//!
//! Decoding treats the bytes as hostile: every count is checked against the
//! caller's expectation before anything is allocated, and a run can never
//! produce more values than expected.

use crate::generated::trace_capnp::{Compression, Encoding};

/// Largest number of values one column of one chunk may hold.
pub const MAX_COLUMN_VALUES: usize = 1 << 22;
/// Largest encoded (uncompressed) size of one column of one chunk.
pub const MAX_COLUMN_BYTES: usize = 1 << 28;
/// LZ4 cannot expand data by more than this factor (255 plus a little slack).
const LZ4_MAX_RATIO: usize = 256;

/// An integer type stored in a column.
pub(crate) trait ColumnInt: Copy + Default {
    fn to_u64(self) -> u64;
    fn from_u64(v: u64) -> Option<Self>;
}

macro_rules! column_int {
    ($($t:ty),*) => {$(
        impl ColumnInt for $t {
            fn to_u64(self) -> u64 {
                u64::from(self)
            }
            fn from_u64(v: u64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
        }
    )*};
}
column_int!(u8, u32, u64);

fn zigzag(delta: i64) -> u64 {
    ((delta << 1) ^ (delta >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Bytes of the varint of a value with `n` leading zero bits, for n in 0..=64.
const VARINT_LEN: [u8; 65] = {
    let mut table = [0u8; 65];
    let mut zeros = 0;
    while zeros <= 64 {
        let bits = if zeros == 64 { 1 } else { 64 - zeros };
        table[zeros] = bits.div_ceil(7) as u8;
        zeros += 1;
    }
    table
};

#[inline]
fn varint_len(v: u64) -> usize {
    VARINT_LEN[v.leading_zeros() as usize] as usize
}

#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads LEB128 varints from a byte slice, refusing overlong encodings.
pub(crate) struct VarintReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> VarintReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        VarintReader { bytes, pos: 0 }
    }

    #[inline]
    pub(crate) fn next(&mut self) -> Result<u64, String> {
        match self.bytes.get(self.pos) {
            Some(&byte) if byte < 0x80 => {
                self.pos += 1;
                Ok(u64::from(byte))
            }
            _ => self.next_long(),
        }
    }

    fn next_long(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.bytes.get(self.pos) else {
                return Err("column data ends inside a varint".into());
            };
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err("varint overflows 64 bits".into());
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    /// A run length: at least 1 and at most `room` (the values still expected).
    fn run_length(&mut self, room: usize) -> Result<usize, String> {
        let length = self.next()?;
        if length == 0 || length > room as u64 {
            return Err(format!("run of {length} values does not fit the column"));
        }
        Ok(length as usize)
    }

    pub(crate) fn is_done(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

/// The encodings an integer column can take, in the order [`sizes`] gives
/// their sizes (the first of equal sizes is chosen).
const INT_ENCODINGS: [Encoding; 4] = [
    Encoding::Varint,
    Encoding::DeltaVarint,
    Encoding::Rle,
    Encoding::DeltaRle,
];

/// Encoded sizes of `values` under each of [`INT_ENCODINGS`], in one pass.
/// Run lengths are counted as one byte each (exact below 128): long runs
/// are where run-length encoding wins by far anyway.
fn sizes<T: ColumnInt>(values: &[T]) -> [usize; 4] {
    let Some((first, rest)) = values.split_first() else {
        return [0; 4];
    };
    // The first value starts a run in both run-length forms; its delta is
    // from 0.
    let first = first.to_u64();
    let first_delta = zigzag(first as i64);
    let (mut plain, mut delta) = (varint_len(first), varint_len(first_delta));
    let (mut rle, mut delta_rle) = (plain + 1, delta + 1);
    let (mut previous, mut previous_delta) = (first, first_delta);
    for v in rest {
        let v = v.to_u64();
        let d = zigzag(v.wrapping_sub(previous) as i64);
        let (v_len, d_len) = (varint_len(v), varint_len(d));
        plain += v_len;
        delta += d_len;
        rle += usize::from(v != previous) * (v_len + 1);
        delta_rle += usize::from(d != previous_delta) * (d_len + 1);
        previous = v;
        previous_delta = d;
    }
    [plain, delta, rle, delta_rle]
}

/// The zigzag deltas of `values`, the first from 0.
fn deltas<T: ColumnInt>(values: &[T]) -> impl Iterator<Item = u64> + '_ {
    let mut previous = 0u64;
    values.iter().map(move |v| {
        let v = v.to_u64();
        let delta = zigzag(v.wrapping_sub(previous) as i64);
        previous = v;
        delta
    })
}

/// Appends the varints of `values`, which take exactly `size` bytes: into
/// bytes already in place, with no capacity check per byte (what `push`
/// costs is most of the encoding).
fn put_varints(out: &mut Vec<u8>, size: usize, values: impl Iterator<Item = u64>) {
    let start = out.len();
    out.resize(start + size, 0);
    let bytes = &mut out[start..];
    let mut at = 0;
    for mut v in values {
        while v >= 0x80 {
            bytes[at] = (v as u8) | 0x80;
            at += 1;
            v >>= 7;
        }
        bytes[at] = v as u8;
        at += 1;
    }
    debug_assert_eq!(at, size, "sizes() counts what put_varints writes");
}

/// Appends `values` as (value, run length) pairs.
fn put_runs(out: &mut Vec<u8>, mut values: impl Iterator<Item = u64>) {
    let Some(mut value) = values.next() else {
        return;
    };
    let mut length = 1u64;
    for v in values {
        if v == value {
            length += 1;
        } else {
            put_varint(out, value);
            put_varint(out, length);
            (value, length) = (v, 1);
        }
    }
    put_varint(out, value);
    put_varint(out, length);
}

/// Encodes `values` with the smallest encoding; returns it with the bytes.
pub(crate) fn encode_ints<T: ColumnInt>(values: &[T], out: &mut Vec<u8>) -> Encoding {
    let sizes = sizes(values);
    let mut chosen = 0;
    for (i, &size) in sizes.iter().enumerate() {
        if size < sizes[chosen] {
            chosen = i;
        }
    }
    out.reserve(sizes[chosen]);
    let plain = values.iter().map(|v| v.to_u64());
    match INT_ENCODINGS[chosen] {
        Encoding::Varint => put_varints(out, sizes[chosen], plain),
        Encoding::DeltaVarint => put_varints(out, sizes[chosen], deltas(values)),
        Encoding::Rle => put_runs(out, plain),
        _ => put_runs(out, deltas(values)),
    }
    INT_ENCODINGS[chosen]
}

/// Decodes exactly `count` integers into `out`.
pub(crate) fn decode_ints<T: ColumnInt>(
    encoding: Encoding,
    bytes: &[u8],
    count: usize,
    out: &mut Vec<T>,
) -> Result<(), String> {
    if count > MAX_COLUMN_VALUES {
        return Err(format!("column claims {count} values"));
    }
    let (delta, rle) = match encoding {
        Encoding::Varint => (false, false),
        Encoding::DeltaVarint => (true, false),
        Encoding::Rle => (false, true),
        Encoding::DeltaRle => (true, true),
        Encoding::Bytes => return Err("integer column stored as bytes".into()),
    };
    if !rle && bytes.len() < count {
        return Err(format!("{} bytes cannot hold {count} varints", bytes.len()));
    }
    out.clear();
    out.reserve_exact(count);
    let mut reader = VarintReader::new(bytes);
    let narrow = |value: u64| {
        T::from_u64(value).ok_or_else(|| format!("value {value} too large for its column"))
    };
    let mut previous = 0u64;
    match (delta, rle) {
        (false, false) => {
            for _ in 0..count {
                out.push(narrow(reader.next()?)?);
            }
        }
        (true, false) => {
            for _ in 0..count {
                previous = previous.wrapping_add(unzigzag(reader.next()?) as u64);
                out.push(narrow(previous)?);
            }
        }
        (false, true) => {
            while out.len() < count {
                let value = narrow(reader.next()?)?;
                let length = reader.run_length(count - out.len())?;
                out.extend(std::iter::repeat_n(value, length));
            }
        }
        (true, true) => {
            while out.len() < count {
                let step = unzigzag(reader.next()?) as u64;
                let length = reader.run_length(count - out.len())?;
                for _ in 0..length {
                    previous = previous.wrapping_add(step);
                    out.push(narrow(previous)?);
                }
            }
        }
    }
    if !reader.is_done() {
        return Err("column has bytes after its last value".into());
    }
    Ok(())
}

/// Compresses encoded column bytes; returns how they are stored.
pub(crate) fn compress(raw: Vec<u8>) -> (Compression, Vec<u8>) {
    if raw.len() < 32 {
        return (Compression::None, raw);
    }
    let compressed = lz4_flex::block::compress(&raw);
    if compressed.len() < raw.len() {
        (Compression::Lz4, compressed)
    } else {
        (Compression::None, raw)
    }
}

/// Undoes [`compress`], checking `raw_len` before allocating for it.
pub(crate) fn decompress<'a>(
    compression: Compression,
    data: &'a [u8],
    raw_len: usize,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], String> {
    match compression {
        Compression::None => {
            if data.len() != raw_len {
                return Err(format!(
                    "stored {} bytes, header says {raw_len}",
                    data.len()
                ));
            }
            Ok(data)
        }
        Compression::Lz4 => {
            if raw_len > MAX_COLUMN_BYTES || raw_len > data.len().saturating_mul(LZ4_MAX_RATIO) {
                return Err(format!(
                    "{} compressed bytes cannot expand to {raw_len}",
                    data.len()
                ));
            }
            scratch.clear();
            scratch.resize(raw_len, 0);
            let written = lz4_flex::block::decompress_into(data, scratch)
                .map_err(|e| format!("LZ4 data is damaged: {e}"))?;
            if written != raw_len {
                return Err(format!(
                    "LZ4 data expands to {written} bytes, expected {raw_len}"
                ));
            }
            Ok(scratch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: ColumnInt + std::fmt::Debug + PartialEq>(values: &[T]) -> Encoding {
        let mut bytes = Vec::new();
        let encoding = encode_ints(values, &mut bytes);
        let mut back: Vec<T> = Vec::new();
        decode_ints(encoding, &bytes, values.len(), &mut back).expect("decodes");
        assert_eq!(back, values);
        encoding
    }

    #[test]
    fn sequences_pick_the_encoding_that_suits_them() {
        let seq: Vec<u64> = (1000..2000).collect();
        assert_eq!(round_trip(&seq), Encoding::DeltaRle);
        let thread = vec![3u32; 500];
        assert!(matches!(
            round_trip(&thread),
            Encoding::Rle | Encoding::DeltaRle
        ));
        let ids: Vec<u32> = (0..300u32).map(|i| (i * i * 31 + i / 3) % 13).collect();
        assert_eq!(round_trip(&ids), Encoding::Varint);
        let ts: Vec<u64> = (0..300u64)
            .map(|i| 5_000_000_000 + i * 97 + (i * i * 13) % 37)
            .collect();
        assert_eq!(round_trip(&ts), Encoding::DeltaVarint);
    }

    proptest::proptest! {
        /// Any column round-trips, and the varint encodings fill exactly
        /// the bytes `sizes` counted for them (what `put_varints` relies on).
        #[test]
        fn any_column_round_trips(
            values in proptest::collection::vec(
                proptest::prop_oneof![0u64..4, 0u64..300, proptest::num::u64::ANY], 0..400),
        ) {
            round_trip(&values);
            let sizes = sizes(&values);
            for (i, encoding) in INT_ENCODINGS.iter().enumerate().take(2) {
                let mut bytes = Vec::new();
                match encoding {
                    Encoding::Varint => put_varints(&mut bytes, sizes[i], values.iter().copied()),
                    _ => put_varints(&mut bytes, sizes[i], deltas(&values)),
                }
                let mut back: Vec<u64> = Vec::new();
                decode_ints(*encoding, &bytes, values.len(), &mut back).expect("decodes");
                proptest::prop_assert_eq!(&back, &values);
            }
        }
    }

    #[test]
    fn varint_lengths_match_the_encoder() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX / 2,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(varint_len(v), out.len(), "{v}");
        }
    }

    #[test]
    fn extremes_round_trip() {
        round_trip(&[u64::MAX, 0, u64::MAX, 1, u64::MAX / 2]);
        round_trip(&[u8::MAX, 0, 7]);
        round_trip::<u32>(&[]);
    }

    #[test]
    fn hostile_columns_are_rejected_without_allocating() {
        let mut out: Vec<u64> = Vec::new();
        // One run claiming 2^62 values.
        let mut bytes = Vec::new();
        put_varint(&mut bytes, 5);
        put_varint(&mut bytes, 1 << 62);
        assert!(decode_ints(Encoding::Rle, &bytes, 10, &mut out).is_err());
        assert!(decode_ints(Encoding::Varint, &[0x80; 11], 1, &mut out).is_err());
        assert!(decode_ints(Encoding::Varint, &[1, 2], 5, &mut out).is_err());
        assert!(decode_ints(Encoding::Varint, &[1, 2, 3], 2, &mut out).is_err());
        assert!(decode_ints(Encoding::Varint, &[], usize::MAX, &mut out).is_err());
        let mut narrow: Vec<u8> = Vec::new();
        assert!(decode_ints(Encoding::Varint, &[0x80, 0x02], 1, &mut narrow).is_err());
        let mut scratch = Vec::new();
        assert!(decompress(Compression::Lz4, &[0; 4], 1 << 30, &mut scratch).is_err());
        assert!(decompress(Compression::Lz4, &[0xff; 16], 64, &mut scratch).is_err());
    }

    #[test]
    fn compression_falls_back_to_raw() {
        let (c, data) = compress(vec![1, 2, 3]);
        assert_eq!((c, data.len()), (Compression::None, 3));
        let raw = vec![7u8; 4096];
        let (c, data) = compress(raw.clone());
        assert_eq!(c, Compression::Lz4);
        let mut scratch = Vec::new();
        assert_eq!(
            decompress(c, &data, raw.len(), &mut scratch).expect("ok"),
            &raw[..]
        );
    }
}
