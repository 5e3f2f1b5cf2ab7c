//! Chunks: a self-contained slice of the event stream, stored column by
//! column, plus the statistics that let a reader skip it.
//!
//! A chunk owns its value dictionary (the reprs its events and variable
//! changes refer to, deduplicated), so any chunk decodes on its own, in
//! parallel with the others. Ids of strings, code objects and threads are
//! global to the trace and defined by metadata blocks.

use std::ops::Range;

use capnp::message::{Builder, ReaderOptions};
use rustc_hash::FxHashMap;

use crate::encoding::{self, ColumnInt};
use crate::event::{Checkpoint, EventBatch, Values};
use crate::generated::trace_capnp::{self, ColumnId, Compression, Encoding};

/// Largest number of events or variable changes in one chunk a reader accepts.
pub const MAX_CHUNK_ROWS: usize = encoding::MAX_COLUMN_VALUES;

/// Statistics of one chunk, stored in the chunk and again in the footer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkStats {
    pub first_seq: u64,
    pub last_seq: u64,
    pub min_ts_ns: u64,
    pub max_ts_ns: u64,
    pub event_count: u32,
    pub var_count: u32,
    pub value_count: u32,
    /// Distinct thread ids, ascending.
    pub threads: Vec<u32>,
    /// Distinct code ids, ascending.
    pub codes: Vec<u32>,
    /// Encoded size of all columns before compression.
    pub raw_bytes: u64,
    /// The chunk starts with a checkpoint (see [`crate::Checkpoint`]).
    pub has_checkpoint: bool,
    pub checkpoint_frames: u32,
    pub checkpoint_vars: u32,
}

impl ChunkStats {
    pub(crate) fn write(&self, mut b: trace_capnp::chunk_stats::Builder<'_>) -> capnp::Result<()> {
        b.set_first_seq(self.first_seq);
        b.set_last_seq(self.last_seq);
        b.set_min_ts_ns(self.min_ts_ns);
        b.set_max_ts_ns(self.max_ts_ns);
        b.set_event_count(self.event_count);
        b.set_var_count(self.var_count);
        b.set_value_count(self.value_count);
        b.set_threads(&self.threads[..])?;
        b.set_codes(&self.codes[..])?;
        b.set_raw_bytes(self.raw_bytes);
        b.set_has_checkpoint(self.has_checkpoint);
        b.set_checkpoint_frames(self.checkpoint_frames);
        b.set_checkpoint_vars(self.checkpoint_vars);
        Ok(())
    }

    pub(crate) fn read(r: trace_capnp::chunk_stats::Reader<'_>) -> capnp::Result<ChunkStats> {
        let event_count = r.get_event_count();
        let list = |l: capnp::primitive_list::Reader<'_, u32>| -> capnp::Result<Vec<u32>> {
            if l.len() > event_count {
                return Err(capnp::Error::failed(
                    "chunk statistics list more ids than events".into(),
                ));
            }
            Ok(l.iter().collect())
        };
        Ok(ChunkStats {
            first_seq: r.get_first_seq(),
            last_seq: r.get_last_seq(),
            min_ts_ns: r.get_min_ts_ns(),
            max_ts_ns: r.get_max_ts_ns(),
            event_count,
            var_count: r.get_var_count(),
            value_count: r.get_value_count(),
            threads: list(r.get_threads()?)?,
            codes: list(r.get_codes()?)?,
            raw_bytes: r.get_raw_bytes(),
            has_checkpoint: r.get_has_checkpoint(),
            checkpoint_frames: r.get_checkpoint_frames(),
            checkpoint_vars: r.get_checkpoint_vars(),
        })
    }
}

/// Which columns to decode (projection). Unrequested columns stay empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnMask(u32);

impl ColumnMask {
    /// Every column.
    pub const ALL: ColumnMask = ColumnMask(u32::MAX);

    /// Exactly the given columns.
    pub fn only(columns: &[ColumnId]) -> ColumnMask {
        ColumnMask(columns.iter().fold(0, |bits, &c| bits | (1 << c as u32)))
    }

    /// True when `column` is requested.
    pub fn contains(self, column: ColumnId) -> bool {
        self.0 & (1 << column as u32) != 0
    }
}

/// Distinct values, ascending. Ids are dense and small, so a bitmap sized by
/// the largest id does it in linear time (the writer has checked every id
/// against the defined ones, which bounds the bitmap).
fn distinct_sorted(values: &[u32]) -> Vec<u32> {
    let Some(&max) = values.iter().max() else {
        return Vec::new();
    };
    let mut seen = vec![false; max as usize + 1];
    for &v in values {
        seen[v as usize] = true;
    }
    (0..=max).filter(|&v| seen[v as usize]).collect()
}

/// Builds the chunk's own value dictionary: remaps the batch's value refs
/// used by the chunk to dense, deduplicated chunk refs, and renders the
/// batch's float entries (see [`Values`]).
struct ValueDictionary<'a> {
    /// Chunk ref of each batch value ref (index), 0 while unseen.
    batch_to_chunk: Vec<u32>,
    by_text: FxHashMap<&'a str, u32>,
    /// Float entries by their bits (two NaNs of different bits make two
    /// entries of the same text: harmless).
    by_float: FxHashMap<u64, u32>,
    float_text: String,
    lens: Vec<u32>,
    text: Vec<u8>,
}

impl<'a> ValueDictionary<'a> {
    fn new(values: &Values) -> Self {
        // Sized for every entry of the batch (a chunk usually is the whole
        // batch): no rehashing while it fills.
        ValueDictionary {
            batch_to_chunk: vec![0; values.len() + 1],
            by_text: FxHashMap::with_capacity_and_hasher(values.len(), Default::default()),
            by_float: FxHashMap::with_capacity_and_hasher(values.floats(), Default::default()),
            float_text: String::new(),
            lens: Vec::new(),
            text: Vec::new(),
        }
    }

    fn remap(&mut self, values: &'a Values, batch_ref: u32) -> u32 {
        let Some(&known) = self.batch_to_chunk.get(batch_ref as usize) else {
            return 0;
        };
        if batch_ref == 0 || known != 0 {
            return known;
        }
        let chunk_ref = match values.get(batch_ref) {
            Some(text) => match self.by_text.get(text) {
                Some(&found) => found,
                None => {
                    let added = self.add(text.as_bytes());
                    self.by_text.insert(text, added);
                    added
                }
            },
            None => {
                let value = values.float(batch_ref).unwrap_or(f64::NAN);
                match self.by_float.get(&value.to_bits()) {
                    Some(&found) => found,
                    None => {
                        let mut text = std::mem::take(&mut self.float_text);
                        text.clear();
                        crate::push_float_repr(&mut text, value);
                        let added = self.add(text.as_bytes());
                        self.float_text = text;
                        self.by_float.insert(value.to_bits(), added);
                        added
                    }
                }
            }
        };
        self.batch_to_chunk[batch_ref as usize] = chunk_ref;
        chunk_ref
    }

    /// Appends an entry; returns its chunk ref.
    fn add(&mut self, text: &[u8]) -> u32 {
        self.lens
            .push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        self.text.extend_from_slice(text);
        u32::try_from(self.lens.len()).unwrap_or(u32::MAX)
    }
}

struct ColumnWriter {
    columns: Vec<(ColumnId, Encoding, Compression, u32, u32, Vec<u8>)>,
    raw_bytes: u64,
}

impl ColumnWriter {
    fn ints<T: ColumnInt>(&mut self, id: ColumnId, values: &[T]) {
        let mut raw = Vec::new();
        let encoding = encoding::encode_ints(values, &mut raw);
        self.push(id, encoding, values.len(), raw);
    }

    /// Like `ints`, but writes nothing when every value is 0 (the reader
    /// fills such a column with zeros).
    fn optional_ints<T: ColumnInt>(&mut self, id: ColumnId, values: &[T]) {
        if values.iter().any(|v| v.to_u64() != 0) {
            self.ints(id, values);
        }
    }

    fn push(&mut self, id: ColumnId, encoding: Encoding, count: usize, raw: Vec<u8>) {
        let raw_len = raw.len();
        self.raw_bytes += raw_len as u64;
        let (compression, data) = encoding::compress(raw);
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        let raw_len = u32::try_from(raw_len).unwrap_or(u32::MAX);
        self.columns
            .push((id, encoding, compression, count, raw_len, data));
    }
}

/// Encodes events `range` of `batch` (and their variable changes) as the
/// body of a chunk block. The batch must satisfy [`EventBatch::validate`].
pub(crate) fn encode_chunk(batch: &EventBatch, range: Range<usize>) -> (Vec<u8>, ChunkStats) {
    let events = range.clone();
    let var_start = batch
        .var_event
        .partition_point(|&e| (e as usize) < range.start);
    let var_end = batch
        .var_event
        .partition_point(|&e| (e as usize) < range.end);
    let vars = var_start..var_end;

    let mut dictionary = ValueDictionary::new(&batch.values);
    let arg: Vec<u32> = batch.arg[events.clone()]
        .iter()
        .map(|&r| dictionary.remap(&batch.values, r))
        .collect();
    let var_value: Vec<u32> = batch.var_value[vars.clone()]
        .iter()
        .map(|&r| dictionary.remap(&batch.values, r))
        .collect();
    // The checkpoint describes the state before the batch's first event:
    // it goes with the chunk that starts there.
    let checkpoint = batch.checkpoint.as_ref().filter(|_| range.start == 0);
    let checkpoint_values: Vec<u32> = checkpoint
        .map(|c| {
            c.var_value
                .iter()
                .map(|&r| dictionary.remap(&batch.values, r))
                .collect()
        })
        .unwrap_or_default();
    let offset = range.start as u32;
    let var_event: Vec<u32> = batch.var_event[vars.clone()]
        .iter()
        .map(|&e| e - offset)
        .collect();

    let seq = &batch.seq[events.clone()];
    let ts = &batch.ts_ns[events.clone()];
    let mut stats = ChunkStats {
        first_seq: seq.first().copied().unwrap_or(0),
        last_seq: seq.last().copied().unwrap_or(0),
        min_ts_ns: ts.iter().copied().min().unwrap_or(0),
        max_ts_ns: ts.iter().copied().max().unwrap_or(0),
        event_count: u32::try_from(events.len()).unwrap_or(u32::MAX),
        var_count: u32::try_from(vars.len()).unwrap_or(u32::MAX),
        value_count: u32::try_from(dictionary.lens.len()).unwrap_or(u32::MAX),
        threads: distinct_sorted(&batch.thread[events.clone()]),
        codes: distinct_sorted(&batch.code[events.clone()]),
        raw_bytes: 0,
        has_checkpoint: checkpoint.is_some(),
        checkpoint_frames: checkpoint.map_or(0, |c| c.len() as u32),
        checkpoint_vars: checkpoint.map_or(0, |c| c.var_frame.len() as u32),
    };

    let mut w = ColumnWriter {
        columns: Vec::with_capacity(18),
        raw_bytes: 0,
    };
    w.ints(ColumnId::Seq, seq);
    w.ints(ColumnId::TsNs, ts);
    w.ints(ColumnId::Thread, &batch.thread[events.clone()]);
    w.ints(ColumnId::Kind, &batch.kind[events.clone()]);
    w.ints(ColumnId::Frame, &batch.frame[events.clone()]);
    w.ints(ColumnId::Depth, &batch.depth[events.clone()]);
    w.ints(ColumnId::Code, &batch.code[events.clone()]);
    w.ints(ColumnId::Line, &batch.line[events.clone()]);
    w.optional_ints(ColumnId::Arg, &arg);
    w.optional_ints(ColumnId::ArgType, &batch.arg_type[events.clone()]);
    w.optional_ints(ColumnId::ExcId, &batch.exc_id[events.clone()]);
    w.optional_ints(ColumnId::ExcContext, &batch.exc_context[events]);
    if !vars.is_empty() {
        w.ints(ColumnId::VarEvent, &var_event);
        w.ints(ColumnId::VarName, &batch.var_name[vars.clone()]);
        w.ints(ColumnId::VarChange, &batch.var_change[vars.clone()]);
        w.optional_ints(ColumnId::VarValue, &var_value);
        w.optional_ints(ColumnId::VarType, &batch.var_type[vars]);
    }
    if let Some(c) = checkpoint.filter(|c| !c.is_empty()) {
        w.ints(ColumnId::CkThread, &c.thread);
        w.ints(ColumnId::CkFrame, &c.frame);
        w.ints(ColumnId::CkDepth, &c.depth);
        w.ints(ColumnId::CkCode, &c.code);
        w.ints(ColumnId::CkLine, &c.line);
        if !c.var_frame.is_empty() {
            w.ints(ColumnId::CkVarFrame, &c.var_frame);
            w.ints(ColumnId::CkVarName, &c.var_name);
            w.ints(ColumnId::CkVarValue, &checkpoint_values);
        }
    }
    if !dictionary.lens.is_empty() {
        w.ints(ColumnId::ValueLen, &dictionary.lens);
        let text = std::mem::take(&mut dictionary.text);
        w.push(ColumnId::ValueBytes, Encoding::Bytes, text.len(), text);
    }
    stats.raw_bytes = w.raw_bytes;

    let mut message = Builder::new_default();
    let mut root = message.init_root::<trace_capnp::chunk::Builder<'_>>();
    let written = stats.write(root.reborrow().init_stats());
    let mut list = root.init_columns(w.columns.len() as u32);
    for (i, (id, encoding, compression, count, raw_len, data)) in w.columns.iter().enumerate() {
        let mut c = list.reborrow().get(i as u32);
        c.set_id(*id);
        c.set_encoding(*encoding);
        c.set_compression(*compression);
        c.set_count(*count);
        c.set_raw_len(*raw_len);
        c.set_data(data);
    }
    debug_assert!(written.is_ok(), "building an in-memory message cannot fail");
    (capnp::serialize::write_message_to_words(&message), stats)
}

/// Reader options for a body of `len` bytes: traversal is bounded by the
/// body's own size, so a hostile message cannot make reading it expensive.
fn reader_options(len: usize) -> ReaderOptions {
    let mut options = ReaderOptions::new();
    options.traversal_limit_in_words(Some((len / 8).saturating_mul(4).max(1024)));
    options.nesting_limit(16);
    options
}

/// Opens the Cap'n Proto message of a block body, in place.
pub(crate) fn read_message(
    body: &[u8],
) -> Result<capnp::message::Reader<capnp::serialize::BufferSegments<&[u8]>>, String> {
    let mut slice = body;
    capnp::serialize::read_message_from_flat_slice(&mut slice, reader_options(body.len()))
        .map_err(|e| e.to_string())
}

/// Reads only the statistics of a chunk body.
pub(crate) fn read_stats(body: &[u8]) -> Result<ChunkStats, String> {
    let message = read_message(body)?;
    let root = message
        .get_root::<trace_capnp::chunk::Reader<'_>>()
        .map_err(|e| e.to_string())?;
    ChunkStats::read(root.get_stats().map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

fn decode_column<T: ColumnInt>(
    column: trace_capnp::column::Reader<'_>,
    expected: usize,
    scratch: &mut Vec<u8>,
    out: &mut Vec<T>,
) -> Result<(), String> {
    let count = column.get_count() as usize;
    if count != expected {
        return Err(format!("has {count} values, expected {expected}"));
    }
    let encoding = column.get_encoding().map_err(|e| e.to_string())?;
    let compression = column.get_compression().map_err(|e| e.to_string())?;
    let data = column.get_data().map_err(|e| e.to_string())?;
    let raw = encoding::decompress(compression, data, column.get_raw_len() as usize, scratch)?;
    encoding::decode_ints(encoding, raw, count, out)
}

/// Decodes a chunk body into a batch holding the `mask` columns (others stay
/// empty; requested optional columns absent from the chunk are zeros).
pub(crate) fn decode_chunk(
    body: &[u8],
    mask: ColumnMask,
) -> Result<(ChunkStats, EventBatch), String> {
    let message = read_message(body)?;
    let root = message
        .get_root::<trace_capnp::chunk::Reader<'_>>()
        .map_err(|e| e.to_string())?;
    let stats = ChunkStats::read(root.get_stats().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let events = stats.event_count as usize;
    let vars = stats.var_count as usize;
    let value_count = stats.value_count as usize;
    let ck_frames = stats.checkpoint_frames as usize;
    let ck_vars = stats.checkpoint_vars as usize;
    if [events, vars, value_count, ck_frames, ck_vars]
        .iter()
        .any(|&rows| rows > MAX_CHUNK_ROWS)
    {
        return Err(format!(
            "chunk claims {events} events, {vars} variable changes, {value_count} values"
        ));
    }
    let mut b = EventBatch::default();
    let mut ck = Checkpoint::default();
    let mut value_lens: Vec<u32> = Vec::new();
    let mut value_text: Option<Vec<u8>> = None;
    let mut seen = 0u32;
    let mut scratch = Vec::new();
    let columns = root.get_columns().map_err(|e| e.to_string())?;
    for column in columns.iter() {
        // Columns of a newer minor version are skipped.
        let Ok(id) = column.get_id() else { continue };
        let bit = 1u32 << id as u32;
        if seen & bit != 0 {
            return Err(format!("column {id:?} appears twice"));
        }
        seen |= bit;
        let wanted =
            mask.contains(id) || (id == ColumnId::ValueLen && mask.contains(ColumnId::ValueBytes));
        if !wanted {
            continue;
        }
        let s = &mut scratch;
        let result = match id {
            ColumnId::Seq => decode_column(column, events, s, &mut b.seq),
            ColumnId::TsNs => decode_column(column, events, s, &mut b.ts_ns),
            ColumnId::Thread => decode_column(column, events, s, &mut b.thread),
            ColumnId::Kind => decode_column(column, events, s, &mut b.kind),
            ColumnId::Frame => decode_column(column, events, s, &mut b.frame),
            ColumnId::Depth => decode_column(column, events, s, &mut b.depth),
            ColumnId::Code => decode_column(column, events, s, &mut b.code),
            ColumnId::Line => decode_column(column, events, s, &mut b.line),
            ColumnId::Arg => decode_column(column, events, s, &mut b.arg),
            ColumnId::ArgType => decode_column(column, events, s, &mut b.arg_type),
            ColumnId::ExcId => decode_column(column, events, s, &mut b.exc_id),
            ColumnId::ExcContext => decode_column(column, events, s, &mut b.exc_context),
            ColumnId::VarEvent => decode_column(column, vars, s, &mut b.var_event),
            ColumnId::VarName => decode_column(column, vars, s, &mut b.var_name),
            ColumnId::VarChange => decode_column(column, vars, s, &mut b.var_change),
            ColumnId::VarValue => decode_column(column, vars, s, &mut b.var_value),
            ColumnId::VarType => decode_column(column, vars, s, &mut b.var_type),
            ColumnId::CkThread => decode_column(column, ck_frames, s, &mut ck.thread),
            ColumnId::CkFrame => decode_column(column, ck_frames, s, &mut ck.frame),
            ColumnId::CkDepth => decode_column(column, ck_frames, s, &mut ck.depth),
            ColumnId::CkCode => decode_column(column, ck_frames, s, &mut ck.code),
            ColumnId::CkLine => decode_column(column, ck_frames, s, &mut ck.line),
            ColumnId::CkVarFrame => decode_column(column, ck_vars, s, &mut ck.var_frame),
            ColumnId::CkVarName => decode_column(column, ck_vars, s, &mut ck.var_name),
            ColumnId::CkVarValue => decode_column(column, ck_vars, s, &mut ck.var_value),
            ColumnId::ValueLen => decode_column(column, value_count, s, &mut value_lens),
            ColumnId::ValueBytes => read_value_bytes(column, s).map(|text| value_text = Some(text)),
        };
        result.map_err(|e| format!("column {id:?}: {e}"))?;
    }

    if stats.has_checkpoint {
        b.checkpoint = Some(ck);
    }
    let required = [
        (ColumnId::Seq, events),
        (ColumnId::TsNs, events),
        (ColumnId::Thread, events),
        (ColumnId::Kind, events),
        (ColumnId::Frame, events),
        (ColumnId::Depth, events),
        (ColumnId::Code, events),
        (ColumnId::Line, events),
        (ColumnId::VarEvent, vars),
        (ColumnId::VarName, vars),
        (ColumnId::VarChange, vars),
        (ColumnId::ValueLen, value_count),
        (ColumnId::ValueBytes, value_count),
        (ColumnId::CkThread, ck_frames),
        (ColumnId::CkFrame, ck_frames),
        (ColumnId::CkDepth, ck_frames),
        (ColumnId::CkCode, ck_frames),
        (ColumnId::CkLine, ck_frames),
        (ColumnId::CkVarFrame, ck_vars),
        (ColumnId::CkVarName, ck_vars),
        (ColumnId::CkVarValue, ck_vars),
    ];
    for (id, rows) in required {
        if rows > 0 && seen & (1 << id as u32) == 0 {
            return Err(format!("column {id:?} is missing"));
        }
    }
    let fill = |mask: ColumnMask, id: ColumnId, rows: usize, column: &mut Vec<u32>| {
        if mask.contains(id) && column.is_empty() {
            column.resize(rows, 0);
        }
    };
    fill(mask, ColumnId::Arg, events, &mut b.arg);
    fill(mask, ColumnId::ArgType, events, &mut b.arg_type);
    fill(mask, ColumnId::VarValue, vars, &mut b.var_value);
    fill(mask, ColumnId::VarType, vars, &mut b.var_type);
    for (id, column) in [
        (ColumnId::ExcId, &mut b.exc_id),
        (ColumnId::ExcContext, &mut b.exc_context),
    ] {
        if mask.contains(id) && column.is_empty() {
            column.resize(events, 0);
        }
    }

    if mask.contains(ColumnId::ValueBytes) {
        b.values = build_values(value_lens, value_text.unwrap_or_default())?;
    }
    check_references(&b, events, value_count, ck_frames)?;
    Ok((stats, b))
}

fn read_value_bytes(
    column: trace_capnp::column::Reader<'_>,
    scratch: &mut Vec<u8>,
) -> Result<Vec<u8>, String> {
    let encoding = column.get_encoding().map_err(|e| e.to_string())?;
    if encoding != Encoding::Bytes {
        return Err("value text must be stored as bytes".into());
    }
    let compression = column.get_compression().map_err(|e| e.to_string())?;
    let data = column.get_data().map_err(|e| e.to_string())?;
    let raw = encoding::decompress(compression, data, column.get_raw_len() as usize, scratch)?;
    if raw.len() != column.get_count() as usize {
        return Err("byte count disagrees with its length".into());
    }
    Ok(raw.to_vec())
}

fn build_values(lens: Vec<u32>, text: Vec<u8>) -> Result<Values, String> {
    let text = String::from_utf8(text).map_err(|_| "value text is not UTF-8".to_string())?;
    let mut ends = lens;
    let mut total = 0u64;
    for len in ends.iter_mut() {
        total += u64::from(*len);
        *len = u32::try_from(total).map_err(|_| "value text longer than 4 GiB".to_string())?;
    }
    Values::from_parts(text, ends).ok_or_else(|| "value lengths do not match the value text".into())
}

/// Checks that references inside the chunk point inside the chunk.
fn check_references(
    b: &EventBatch,
    events: usize,
    values: usize,
    ck_frames: usize,
) -> Result<(), String> {
    if let Some(&bad) = b.var_event.iter().find(|&&e| e as usize >= events) {
        return Err(format!("variable change refers to event {bad} of {events}"));
    }
    if let Some(ck) = &b.checkpoint {
        if let Some(&bad) = ck.var_frame.iter().find(|&&f| f as usize >= ck_frames) {
            return Err(format!(
                "checkpoint local refers to frame {bad} of {ck_frames}"
            ));
        }
        if !ck.var_frame.is_sorted() {
            return Err("checkpoint locals are out of frame order".into());
        }
    }
    if !b.var_event.is_sorted() {
        return Err("variable changes are out of event order".into());
    }
    if let Some(&bad) = b
        .arg
        .iter()
        .chain(&b.var_value)
        .chain(b.checkpoint.iter().flat_map(|c| &c.var_value))
        .find(|&&r| r as usize > values)
    {
        return Err(format!("value ref {bad} but the chunk has {values} values"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, VarRecord};

    fn sample() -> EventBatch {
        let mut b = EventBatch::default();
        for i in 0..100u32 {
            let arg = if i % 10 == 9 {
                b.values.push(&format!("'r{}'", i % 3))
            } else {
                0
            };
            let index = b.push_event(&Event {
                seq: u64::from(i) + 7,
                ts_ns: u64::from(i) * 113,
                thread: i % 2,
                kind: (i % 3) as u8,
                frame: u64::from(i / 10),
                depth: i / 10,
                code: i / 20,
                line: 10 + i % 5,
                arg,
                arg_type: u32::from(arg != 0) * 4,
                exc_id: u64::from(i % 7 == 3) * 9,
                exc_context: u64::from(i % 14 == 3) * 4,
            });
            if i % 4 == 0 {
                let value = b.values.push(&i.to_string());
                b.push_var(&VarRecord {
                    event: index,
                    name: i % 3,
                    change: 1,
                    value,
                    type_name: 2,
                });
            }
        }
        b
    }

    #[test]
    fn a_slice_of_a_batch_round_trips_with_its_values_deduplicated() {
        let batch = sample();
        let (body, stats) = encode_chunk(&batch, 20..70);
        assert_eq!(
            (stats.first_seq, stats.last_seq, stats.event_count),
            (27, 76, 50)
        );
        assert_eq!(stats.threads, vec![0, 1]);
        assert_eq!(stats.codes, vec![1, 2, 3]);
        let (read_stats, decoded) = decode_chunk(&body, ColumnMask::ALL).expect("decodes");
        assert_eq!(read_stats, stats);
        assert_eq!(decoded.seq, batch.seq[20..70]);
        assert_eq!(decoded.line, batch.line[20..70]);
        for i in 0..50 {
            let original = batch.values.get(batch.arg[20 + i]);
            assert_eq!(decoded.values.get(decoded.arg[i]), original);
        }
        assert_eq!(decoded.var_len(), 13);
        assert_eq!(decoded.values.get(decoded.var_value[0]), Some("20"));
        // 'r0', 'r1', 'r2' repeat: deduplicated within the chunk.
        assert_eq!(decoded.values.len(), 3 + 13);
    }

    #[test]
    fn float_entries_are_written_as_their_python_repr() {
        let mut batch = EventBatch::default();
        let event = batch.push_event(&Event::default());
        let values = [
            batch.values.push_float(0.1),
            batch.values.push(""),
            batch.values.push_float(0.00001),
            batch.values.push_float(0.1),
            batch.values.push_float(-0.0),
        ];
        for (name, &value) in values.iter().enumerate() {
            batch.push_var(&VarRecord {
                event,
                name: name as u32,
                change: 1,
                value,
                type_name: 1,
            });
        }
        batch.validate().expect("valid");
        // In memory a float entry has a number, not a text; an empty text
        // is a text.
        assert_eq!(batch.values.get(values[0]), None);
        assert_eq!(batch.values.float(values[0]), Some(0.1));
        assert_eq!(batch.values.get(values[1]), Some(""));
        assert_eq!(batch.values.float(values[1]), None);
        assert_eq!(batch.values.rendered(values[2]).as_deref(), Some("1e-05"));
        assert_eq!(batch.values.rendered(values[1]).as_deref(), Some(""));

        let (body, _) = encode_chunk(&batch, 0..1);
        let (_, decoded) = decode_chunk(&body, ColumnMask::ALL).expect("decodes");
        let texts: Vec<_> = decoded
            .var_value
            .iter()
            .map(|&r| decoded.values.get(r))
            .collect();
        assert_eq!(
            texts,
            [
                Some("0.1"),
                Some(""),
                Some("1e-05"),
                Some("0.1"),
                Some("-0.0")
            ]
        );
        // The same float twice is one entry.
        assert_eq!(decoded.var_value[0], decoded.var_value[3]);
        assert_eq!(decoded.values.len(), 4);
    }

    #[test]
    fn the_checkpoint_goes_with_the_chunk_starting_the_batch() {
        let mut batch = sample();
        let value = batch.values.push("[1, 2]");
        let mut checkpoint = Checkpoint::default();
        let outer = checkpoint.push_frame(0, 1, 0, 0, 5);
        checkpoint.push_var(outer, 7, value);
        let suspended = checkpoint.push_frame(Checkpoint::SUSPENDED, 9, 0, 2, 30);
        checkpoint.push_var(suspended, 8, value);
        batch.checkpoint = Some(checkpoint);
        batch.validate().expect("valid");

        let (body, stats) = encode_chunk(&batch, 0..40);
        assert!(stats.has_checkpoint && stats.checkpoint_frames == 2 && stats.checkpoint_vars == 2);
        let (_, decoded) = decode_chunk(&body, ColumnMask::ALL).expect("decodes");
        let ck = decoded.checkpoint.expect("a checkpoint");
        assert_eq!(ck.thread, vec![0, Checkpoint::SUSPENDED]);
        assert_eq!(
            (ck.frame.clone(), ck.line.clone()),
            (vec![1, 9], vec![5, 30])
        );
        assert_eq!(ck.var_name, vec![7, 8]);
        assert_eq!(decoded.values.get(ck.var_value[1]), Some("[1, 2]"));

        let (body, stats) = encode_chunk(&batch, 40..100);
        assert!(!stats.has_checkpoint);
        let (_, decoded) = decode_chunk(&body, ColumnMask::ALL).expect("decodes");
        assert!(decoded.checkpoint.is_none());
    }

    #[test]
    fn projection_decodes_only_what_is_asked() {
        let batch = sample();
        let (body, _) = encode_chunk(&batch, 0..100);
        let (_, decoded) =
            decode_chunk(&body, ColumnMask::only(&[ColumnId::Line])).expect("decodes");
        assert_eq!(decoded.line, batch.line);
        assert!(decoded.seq.is_empty() && decoded.values.is_empty());
    }
}
