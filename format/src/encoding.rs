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
//! Timestamps defeat all of these: their deltas (tens to hundreds of
//! nanoseconds, the low bits noise) take two varint bytes each and LZ4
//! finds nothing to match, so on a real recording they were over half the
//! file. A fifth encoding packs the deltas less their minimum at one bit
//! width, the few wider ones patched after (`deltaPacked`); it is kept when
//! it is smaller than the best of the others after compression, so columns
//! whose repeats LZ4 exploits (lines, kinds) stay byte-aligned.
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

/// An integer column as stored in a chunk.
pub(crate) struct StoredInts {
    pub(crate) encoding: Encoding,
    pub(crate) compression: Compression,
    /// Encoded length before compression.
    pub(crate) raw_len: usize,
    pub(crate) data: Vec<u8>,
}

/// Encodes and compresses `values` into the fewest bytes: the smallest of
/// the byte-aligned encodings, LZ4-compressed when that helps, unless
/// packing the deltas is smaller still.
pub(crate) fn store_ints<T: ColumnInt>(values: &[T]) -> StoredInts {
    let mut raw = Vec::new();
    let encoding = encode_ints(values, &mut raw);
    let raw_len = raw.len();
    let (compression, data) = compress(raw);
    // Packing takes at least a bit a value unless every delta is equal,
    // where a run-length encoding takes a few bytes: below that, no try.
    if data.len() * 8 > values.len() {
        let packing = Packing::choose(values);
        if packing.size < data.len() {
            let mut packed = Vec::with_capacity(packing.size);
            packing.put(values, &mut packed);
            debug_assert_eq!(packed.len(), packing.size, "Packing counts what it writes");
            return StoredInts {
                encoding: Encoding::DeltaPacked,
                compression: Compression::None,
                raw_len: packed.len(),
                data: packed,
            };
        }
    }
    StoredInts {
        encoding,
        compression,
        raw_len,
        data,
    }
}

/// The layout of a `deltaPacked` column: the zigzag varint of `base`, the
/// smallest delta `v[i] - v[i-1]` (`v[-1] = 0`, wrapping, as a signed
/// 64-bit number); one byte `width` (0–64); the varint number of patches;
/// `ceil(count * width / 8)` bytes holding each value's offset (its delta
/// less `base`) cut to its low `width` bits, least significant bit first;
/// then per patch (an offset wider than `width`, in ascending order) the
/// varint of its index less the previous patch's index plus one (the first:
/// its index) and the varint of the offset's bits above `width` (not 0).
struct Packing {
    base: i64,
    width: usize,
    patches: usize,
    /// Exact encoded size.
    size: usize,
}

impl Packing {
    /// The width that makes `values` smallest, in two passes: the smallest
    /// delta, then a histogram of the offsets' bit lengths.
    fn choose<T: ColumnInt>(values: &[T]) -> Packing {
        let mut base = i64::MAX;
        for delta in signed_deltas(values) {
            base = base.min(delta);
        }
        let mut lengths = [0usize; 65];
        for delta in signed_deltas(values) {
            lengths[bit_length(offset(delta, base))] += 1;
        }
        // A patch is counted as its index gap's byte (most are one byte
        // when patches are rare, which is when packing pays) and its high
        // bits' varint; the chosen width's size is then made exact.
        let count = values.len();
        let (mut best_width, mut best_size) = (0, usize::MAX);
        let mut wider: usize = lengths[1..].iter().sum();
        let mut high_bytes: usize = (1..=64)
            .map(|bits| lengths[bits] * varint_len_of_bits(bits))
            .sum();
        for width in 0..=64 {
            let size = (count * width).div_ceil(8) + wider + high_bytes;
            if size < best_size {
                (best_width, best_size) = (width, size);
            }
            if width < 64 {
                wider -= lengths[width + 1];
                high_bytes = (width + 2..=64)
                    .map(|bits| lengths[bits] * varint_len_of_bits(bits - width - 1))
                    .sum();
            }
        }
        let mut packing = Packing {
            base,
            width: best_width,
            patches: (best_width + 1..=64).map(|bits| lengths[bits]).sum(),
            size: 0,
        };
        packing.size = packing.exact_size(values);
        packing
    }

    fn exact_size<T: ColumnInt>(&self, values: &[T]) -> usize {
        let mut size = varint_len(zigzag(self.base))
            + 1
            + varint_len(self.patches as u64)
            + (values.len() * self.width).div_ceil(8);
        self.for_each_patch(values, |gap, high| {
            size += varint_len(gap) + varint_len(high)
        });
        size
    }

    /// Calls `f(gap, high bits)` for each patch, in order.
    fn for_each_patch<T: ColumnInt>(&self, values: &[T], mut f: impl FnMut(u64, u64)) {
        if self.width == 64 {
            return;
        }
        let mut next = 0;
        for (i, delta) in signed_deltas(values).enumerate() {
            let high = offset(delta, self.base) >> self.width;
            if high != 0 {
                f((i - next) as u64, high);
                next = i + 1;
            }
        }
    }

    fn put<T: ColumnInt>(&self, values: &[T], out: &mut Vec<u8>) {
        put_varint(out, zigzag(self.base));
        out.push(self.width as u8);
        put_varint(out, self.patches as u64);
        let mask = low_mask(self.width);
        let (mut pending, mut bits) = (0u128, 0);
        for delta in signed_deltas(values) {
            pending |= u128::from(offset(delta, self.base) & mask) << bits;
            bits += self.width;
            while bits >= 8 {
                out.push(pending as u8);
                pending >>= 8;
                bits -= 8;
            }
        }
        if bits > 0 {
            out.push(pending as u8);
        }
        self.for_each_patch(values, |gap, high| {
            put_varint(out, gap);
            put_varint(out, high);
        });
    }
}

/// The deltas `v[i] - v[i-1]` (wrapping, as signed numbers), the first from 0.
fn signed_deltas<T: ColumnInt>(values: &[T]) -> impl Iterator<Item = i64> + '_ {
    let mut previous = 0u64;
    values.iter().map(move |v| {
        let v = v.to_u64();
        let delta = v.wrapping_sub(previous) as i64;
        previous = v;
        delta
    })
}

/// `delta - base`, for `delta >= base`: always fits 64 unsigned bits.
fn offset(delta: i64, base: i64) -> u64 {
    delta.wrapping_sub(base) as u64
}

fn bit_length(v: u64) -> usize {
    64 - v.leading_zeros() as usize
}

/// Bytes of the varint of a number of `bits` significant bits.
fn varint_len_of_bits(bits: usize) -> usize {
    bits.max(1).div_ceil(7)
}

fn low_mask(width: usize) -> u64 {
    if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    }
}

/// Decodes a `deltaPacked` column (layout at [`Packing`]).
fn decode_packed<T: ColumnInt>(bytes: &[u8], count: usize, out: &mut Vec<T>) -> Result<(), String> {
    let mut header = VarintReader::new(bytes);
    let base = unzigzag(header.next()?) as u64;
    let width = usize::from(
        *bytes
            .get(header.pos)
            .ok_or("packed column ends in its header")?,
    );
    header.pos += 1;
    if width > 64 {
        return Err(format!("packed width {width} is over 64 bits"));
    }
    let patch_count = header.next()?;
    let rest = &bytes[header.pos..];
    let packed_len = (count * width).div_ceil(8);
    if packed_len > rest.len() {
        return Err(format!(
            "{} bytes cannot hold {count} values of {width} bits",
            rest.len()
        ));
    }
    let (packed, patch_bytes) = rest.split_at(packed_len);
    // A patch takes two bytes at least; none can widen a 64-bit value.
    if patch_count > (patch_bytes.len() / 2) as u64 || (patch_count > 0 && width == 64) {
        return Err(format!("{patch_count} patches do not fit the column"));
    }
    let mut patches = Patches {
        reader: VarintReader::new(patch_bytes),
        remaining: patch_count,
        count,
    };
    out.clear();
    out.reserve_exact(count);
    let mask = low_mask(width);
    let mut next_patch = patches.next_index(0)?;
    let (mut pending, mut bits, mut at) = (0u128, 0, 0);
    let mut previous = 0u64;
    for i in 0..count {
        while bits < width {
            pending |= u128::from(packed[at]) << bits;
            at += 1;
            bits += 8;
        }
        let mut offset = pending as u64 & mask;
        pending >>= width;
        bits -= width;
        if next_patch == Some(i) {
            let high = patches.reader.next()?;
            if high == 0 || (width > 0 && high >> (64 - width) != 0) {
                return Err(format!("patch {high} does not fit above {width} bits"));
            }
            offset |= high << width;
            next_patch = patches.next_index(i + 1)?;
        }
        previous = previous.wrapping_add(base.wrapping_add(offset));
        let value = T::from_u64(previous)
            .ok_or_else(|| format!("value {previous} too large for its column"))?;
        out.push(value);
    }
    if next_patch.is_some() || !patches.reader.is_done() {
        return Err("packed column has bytes after its last value".into());
    }
    Ok(())
}

/// The patches of a `deltaPacked` column, read as the values are.
struct Patches<'a> {
    reader: VarintReader<'a>,
    remaining: u64,
    count: usize,
}

impl Patches<'_> {
    /// The index of the next patch, which follows `from` (the index after
    /// the previous patch), if one is left.
    fn next_index(&mut self, from: usize) -> Result<Option<usize>, String> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        let gap = self.reader.next()?;
        match (from as u64).checked_add(gap) {
            Some(index) if index < self.count as u64 => Ok(Some(index as usize)),
            _ => Err("a patch lies past the column's end".into()),
        }
    }
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
        Encoding::DeltaPacked => return decode_packed(bytes, count, out),
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
            packed_round_trip(&values);
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

    /// Packs `values` at the width `Packing` chooses and decodes them back.
    fn packed_round_trip(values: &[u64]) -> Vec<u8> {
        let packing = Packing::choose(values);
        let mut bytes = Vec::new();
        packing.put(values, &mut bytes);
        assert_eq!(bytes.len(), packing.size, "Packing counts what it writes");
        let mut back: Vec<u64> = Vec::new();
        decode_ints(Encoding::DeltaPacked, &bytes, values.len(), &mut back).expect("decodes");
        assert_eq!(back, values);
        bytes
    }

    /// Timestamps as a recorder writes them: 40–250 ns apart with noise in
    /// the low bits, now and then a slow line.
    fn timestamps(count: usize) -> Vec<u64> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut ts = 1_500_000_000u64;
        (0..count)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ts += 40 + state % 211 + if i % 97 == 0 { 30_000 } else { 0 };
                ts
            })
            .collect()
    }

    #[test]
    fn noisy_timestamps_are_packed_and_lines_are_not() {
        let ts = timestamps(65_536);
        let stored = store_ints(&ts);
        assert_eq!(stored.encoding, Encoding::DeltaPacked);
        let mut varints = Vec::new();
        assert_eq!(encode_ints(&ts, &mut varints), Encoding::DeltaVarint);
        // 8 bits a value and the patches, against 2 bytes a value.
        assert!(
            stored.data.len() < varints.len() * 6 / 10,
            "{}",
            stored.data.len()
        );
        let mut back: Vec<u64> = Vec::new();
        decode_ints(stored.encoding, &stored.data, ts.len(), &mut back).expect("decodes");
        assert_eq!(back, ts);
        // A loop's lines repeat: LZ4 over their varints beats any packing.
        let lines: Vec<u32> = (0..65_536u32).map(|i| 120 + (i % 7) * 3).collect();
        assert_ne!(store_ints(&lines).encoding, Encoding::DeltaPacked);
    }

    #[test]
    fn packing_edges_round_trip() {
        packed_round_trip(&[]);
        packed_round_trip(&[0]);
        packed_round_trip(&[7; 100]);
        packed_round_trip(&[u64::MAX, 0, u64::MAX, 1, u64::MAX / 2]);
        packed_round_trip(&[5, 4, 3, 2, 1, 0]);
        let mut wide: Vec<u64> = (0..200).map(|i| i * 3).collect();
        wide[50] = 1 << 40;
        wide[51] = 1 << 40;
        wide[199] = u64::MAX;
        packed_round_trip(&wide);
        let bytes = packed_round_trip(&timestamps(1_000));
        assert_eq!(bytes[1], 8, "timestamps 40–250 ns apart pack at 8 bits");
    }

    #[test]
    fn hostile_packed_columns_are_rejected() {
        let good = packed_round_trip(&timestamps(300));
        let mut out: Vec<u64> = Vec::new();
        let decode = |bytes: &[u8], count: usize, out: &mut Vec<u64>| {
            decode_ints(Encoding::DeltaPacked, bytes, count, out)
        };
        assert!(decode(&good, 300, &mut out).is_ok());
        for cut in 0..good.len() {
            assert!(decode(&good[..cut], 300, &mut out).is_err(), "cut at {cut}");
        }
        assert!(decode(&good, 301, &mut out).is_err());
        let mut longer = good.clone();
        longer.push(0);
        assert!(decode(&longer, 300, &mut out).is_err());
        // Width over 64; a 64-bit width with a patch; a patch past the end;
        // a patch of no bits; a patch overflowing 64 bits; 2^40 patches.
        assert!(decode(&[0, 65, 0], 0, &mut out).is_err());
        let mut wide = vec![0, 64, 1];
        wide.extend([0; 8]);
        wide.extend([0, 1]);
        assert!(decode(&wide, 1, &mut out).is_err());
        assert!(decode(&[0, 1, 1, 0, 5, 1], 2, &mut out).is_err());
        assert!(decode(&[0, 1, 1, 0, 0, 0], 2, &mut out).is_err());
        let mut overflow = vec![0, 60, 1];
        overflow.extend([0; 8]);
        overflow.extend([0, 0x20]);
        assert!(decode(&overflow, 1, &mut out).is_err());
        let mut many = vec![0, 1];
        put_varint(&mut many, 1 << 40);
        many.extend([0; 4]);
        assert!(decode(&many, 8, &mut out).is_err());
        // A value too wide for a narrower column.
        let mut narrow: Vec<u8> = Vec::new();
        let bytes = packed_round_trip(&[300]);
        assert!(decode_ints(Encoding::DeltaPacked, &bytes, 1, &mut narrow).is_err());
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
