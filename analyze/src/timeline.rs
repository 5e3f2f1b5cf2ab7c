//! Random access to one trace's history, for stepping through a run:
//! the event at a sequence number, the next or previous event that matches
//! a condition, and the whole stack of a thread at any moment with every
//! local rebuilt from the recorded diffs. It backs `replay --at`,
//! `Trace.state_at` and `chronolog debug`.
//!
//! Nothing scans from the start of the trace. Chunks are found by binary
//! search on their sequence ranges, and the footer's per-chunk statistics
//! (threads and code objects present) skip every chunk that cannot hold a
//! wanted event. The stack at `seq` is found walking backwards from it: the
//! first earlier event of the thread at a smaller depth belongs to the
//! caller (only the caller runs at that depth until the callee returns), so
//! the walk needs the events back to the outermost frame's latest one. The
//! locals of each frame are its latest recorded value per name, found walking
//! back to the frame's `call`; chunks holding no event of an unfinished frame
//! are decoded with the light columns only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chronolog_format::{
    Checkpoint, ColumnId, ColumnMask, EventBatch, EventKind, Tables, VarChange,
};
use rayon::prelude::*;

use crate::AnalyzeError;
use crate::source::TraceSource;

/// Columns that locate and classify events.
const LIGHT: &[ColumnId] = &[
    ColumnId::Seq,
    ColumnId::TsNs,
    ColumnId::Thread,
    ColumnId::Kind,
    ColumnId::Frame,
    ColumnId::Depth,
    ColumnId::Code,
    ColumnId::Line,
];

/// One event, with its names resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub seq: u64,
    pub ts_ns: u64,
    pub thread: u32,
    pub kind: EventKind,
    pub frame: u64,
    pub depth: u32,
    pub code: u32,
    pub line: u32,
    /// Return or yielded value, or exception message.
    pub arg: Option<String>,
    /// Type name of `arg`.
    pub arg_type: Option<String>,
    pub exc_id: u64,
}

/// A local variable's recorded state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    pub name: String,
    pub repr: String,
}

/// One frame of a thread's stack at a moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameState {
    pub frame: u64,
    pub depth: u32,
    pub code: u32,
    /// The line the frame was at (its latest event up to the moment).
    pub line: u32,
    /// Sequence number of that event.
    pub seq: u64,
    /// True when the frame's start is in the trace, so `locals` is complete;
    /// false for frames running before recording began.
    pub complete: bool,
    pub locals: Vec<Local>,
}

/// What `seek` looks for. Empty sets mean "any".
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub thread: Option<u32>,
    pub kinds: Vec<EventKind>,
    /// Only events at this depth or shallower.
    pub max_depth: Option<u32>,
    pub frame: Option<u64>,
    pub codes: Vec<u32>,
    /// Any of these (code, line) positions.
    pub lines: Vec<(u32, u32)>,
}

impl Filter {
    fn matches(&self, chunk: &EventBatch, i: usize) -> bool {
        let Some(kind) = EventKind::from_code(chunk.kind[i]) else {
            return false;
        };
        self.thread.is_none_or(|t| chunk.thread[i] == t)
            && (self.kinds.is_empty() || self.kinds.contains(&kind))
            && self.max_depth.is_none_or(|d| chunk.depth[i] <= d)
            && self.frame.is_none_or(|f| chunk.frame[i] == f)
            && (self.codes.is_empty() || self.codes.contains(&chunk.code[i]))
            && (self.lines.is_empty()
                || self
                    .lines
                    .iter()
                    .any(|&(code, line)| chunk.code[i] == code && chunk.line[i] == line))
    }

    /// False when the chunk's statistics rule out every match.
    fn may_match(&self, stats: &chronolog_format::ChunkStats) -> bool {
        let present = |code: &u32| stats.codes.binary_search(code).is_ok();
        let codes_ok = if self.lines.is_empty() {
            self.codes.is_empty() || self.codes.iter().any(present)
        } else {
            self.lines.iter().any(|(code, _)| present(code))
        };
        codes_ok
            && self
                .thread
                .is_none_or(|t| stats.threads.binary_search(&t).is_ok())
    }
}

/// An open trace, for random access.
#[derive(Debug)]
pub struct Timeline {
    trace: Arc<TraceSource>,
    /// The last chunk decoded whole: stepping stays in it most of the time.
    last: Mutex<Option<(usize, Arc<EventBatch>)>>,
}

impl Timeline {
    pub fn new(trace: Arc<TraceSource>) -> Timeline {
        Timeline {
            trace,
            last: Mutex::new(None),
        }
    }

    pub fn trace(&self) -> &TraceSource {
        &self.trace
    }

    /// The trace, shared.
    pub fn trace_arc(&self) -> Arc<TraceSource> {
        Arc::clone(&self.trace)
    }

    /// First and last sequence numbers, if the trace has events.
    pub fn bounds(&self) -> Option<(u64, u64)> {
        let chunks = self.trace.reader.chunks();
        let first = chunks.iter().map(|c| c.stats.first_seq).min()?;
        let last = chunks.iter().map(|c| c.stats.last_seq).max()?;
        Some((first, last))
    }

    /// Index of the chunk holding `seq`, or of the first chunk after it.
    fn chunk_at(&self, seq: u64) -> usize {
        self.trace
            .reader
            .chunks()
            .partition_point(|c| c.stats.last_seq < seq)
    }

    /// Chunk `index` with every column, from the cache when it was last.
    fn full(&self, index: usize) -> Option<Arc<EventBatch>> {
        if let Ok(last) = self.last.lock()
            && let Some((cached, batch)) = last.as_ref()
            && *cached == index
        {
            return Some(Arc::clone(batch));
        }
        let batch = Arc::new(self.trace.chunk(index, ColumnMask::ALL)?);
        if let Ok(mut last) = self.last.lock() {
            *last = Some((index, Arc::clone(&batch)));
        }
        Some(batch)
    }

    fn step(&self, chunk: &EventBatch, i: usize) -> Option<Step> {
        let tables = self.trace.reader.tables();
        Some(Step {
            seq: chunk.seq[i],
            ts_ns: chunk.ts_ns[i],
            thread: chunk.thread[i],
            kind: EventKind::from_code(chunk.kind[i])?,
            frame: chunk.frame[i],
            depth: chunk.depth[i],
            code: chunk.code[i],
            line: chunk.line[i],
            arg: chunk.values.get(chunk.arg[i]).map(str::to_string),
            arg_type: tables
                .optional_string(chunk.arg_type[i])
                .map(str::to_string),
            exc_id: chunk.exc_id[i],
        })
    }

    /// The event numbered `seq`.
    pub fn event(&self, seq: u64) -> Option<Step> {
        let index = self.chunk_at(seq);
        let chunk = self.full(index)?;
        let i = chunk.seq.binary_search(&seq).ok()?;
        self.step(&chunk, i)
    }

    /// The first event after `from` (or before it, going backwards) that
    /// matches `filter`.
    pub fn seek(&self, from: u64, forward: bool, filter: &Filter) -> Option<Step> {
        let chunks = self.trace.reader.chunks();
        let start = self.chunk_at(from).min(chunks.len().saturating_sub(1));
        let order: Box<dyn Iterator<Item = usize>> = if forward {
            Box::new(start..chunks.len())
        } else {
            Box::new((0..=start).rev())
        };
        for index in order {
            let stats = &chunks[index].stats;
            if !filter.may_match(stats)
                || (forward && stats.last_seq <= from)
                || (!forward && stats.first_seq >= from)
            {
                continue;
            }
            let Some(chunk) = self.full(index) else {
                continue;
            };
            let found = if forward {
                (0..chunk.len()).find(|&i| chunk.seq[i] > from && filter.matches(&chunk, i))
            } else {
                (0..chunk.len())
                    .rev()
                    .find(|&i| chunk.seq[i] < from && filter.matches(&chunk, i))
            };
            if let Some(i) = found {
                return self.step(&chunk, i);
            }
        }
        None
    }

    /// Code ids whose qualified name (`Box.__init__`) or bare name is `name`.
    pub fn codes_named(&self, name: &str) -> Vec<u32> {
        let tables = self.trace.reader.tables();
        tables
            .codes()
            .filter(|(_, code)| {
                tables.string(code.qualname) == Some(name) || tables.string(code.name) == Some(name)
            })
            .map(|(id, _)| id)
            .collect()
    }

    /// Code ids defined in a file whose path is `file` or ends with
    /// `/file`.
    pub fn codes_in_file(&self, file: &str) -> Vec<u32> {
        let tables = self.trace.reader.tables();
        let suffix = format!("/{}", file.trim_start_matches("./"));
        tables
            .codes()
            .filter(|(_, code)| {
                tables
                    .string(code.file)
                    .is_some_and(|f| f == file || f.ends_with(&suffix))
            })
            .map(|(id, _)| id)
            .collect()
    }

    /// The stack of the thread of event `seq` at that event, outermost
    /// first, each frame with its locals.
    pub fn stack_at(&self, seq: u64) -> Result<Vec<FrameState>, AnalyzeError> {
        let at = self
            .event(seq)
            .ok_or_else(|| AnalyzeError::new(format!("no event {seq} in the trace")))?;
        if let Some(frames) = self.forward_from_checkpoint(&at) {
            return Ok(frames);
        }
        self.walk_back(&at)
    }

    /// The stack at `at` rebuilt forward from the nearest checkpoint (format
    /// 1.1 traces written by the recorder), if one is close enough.
    fn forward_from_checkpoint(&self, at: &Step) -> Option<Vec<FrameState>> {
        /// Chunks replayed forward at most; farther, walking back is as fast.
        const REACH: usize = 16;
        let chunks = self.trace.reader.chunks();
        let last = self.chunk_at(at.seq).min(chunks.len().checked_sub(1)?);
        let first = (last.saturating_sub(REACH)..=last)
            .rev()
            .find(|&i| chunks[i].stats.has_checkpoint)?;
        let tables = self.trace.reader.tables();
        let start = self.trace.chunk(first, ColumnMask::ALL)?;
        let mut forward = Forward::new(at.thread, start.checkpoint.as_ref()?, &start);
        forward.feed(&start, at.seq);
        for (index, entry) in chunks.iter().enumerate().take(last + 1).skip(first + 1) {
            if entry.stats.threads.binary_search(&at.thread).is_err() {
                continue;
            }
            let chunk = self.full(index)?;
            forward.feed(&chunk, at.seq);
        }
        Some(forward.finish(at.frame, tables))
    }

    /// The stack at `at` found walking backwards (traces without
    /// checkpoints).
    fn walk_back(&self, at: &Step) -> Result<Vec<FrameState>, AnalyzeError> {
        let seq = at.seq;
        let mut walk = StackWalk::new(at);
        let chunks = self.trace.reader.chunks();
        let last_index = self.chunk_at(seq);
        let light = ColumnMask::only(LIGHT);
        const WINDOW: usize = 8;
        let mut end = last_index + 1;
        while end > 0 && !walk.done() {
            let begin = end.saturating_sub(WINDOW);
            let wanted: Vec<usize> = (begin..end)
                .rev()
                .filter(|&i| walk.may_need(&chunks[i].stats))
                .collect();
            let decoded: Vec<(usize, Option<EventBatch>)> = wanted
                .par_iter()
                .map(|&i| (i, self.trace.chunk(i, light)))
                .collect();
            for (index, light_chunk) in decoded {
                let Some(light_chunk) = light_chunk else {
                    continue;
                };
                if walk.done() {
                    break;
                }
                // Variable changes are needed only where a frame of the
                // stack has events.
                let chunk = if walk.touches(&light_chunk, seq) {
                    match self.full(index) {
                        Some(full) => full,
                        None => continue,
                    }
                } else {
                    Arc::new(light_chunk)
                };
                walk.feed(&chunk, seq, self.trace.reader.tables());
            }
            end = begin;
        }
        Ok(walk.finish())
    }
}

/// A frame replayed forward from a checkpoint: locals by name id, in the
/// order they appeared.
#[derive(Debug)]
struct Live {
    state: FrameState,
    locals: Vec<(u32, String)>,
}

/// The replay of one thread forward from a checkpoint.
#[derive(Debug)]
struct Forward {
    thread: u32,
    stack: Vec<Live>,
    suspended: HashMap<u64, Live>,
}

impl Forward {
    fn new(thread: u32, ck: &Checkpoint, chunk: &EventBatch) -> Forward {
        let mut forward = Forward {
            thread,
            stack: Vec::new(),
            suspended: HashMap::new(),
        };
        let mut var = 0;
        for i in 0..ck.len() {
            let mut live = Live {
                state: FrameState {
                    frame: ck.frame[i],
                    depth: ck.depth[i],
                    code: ck.code[i],
                    line: ck.line[i],
                    seq: 0,
                    complete: true,
                    locals: Vec::new(),
                },
                locals: Vec::new(),
            };
            while var < ck.var_frame.len() && ck.var_frame[var] as usize == i {
                let value = chunk.values.get(ck.var_value[var]).unwrap_or("");
                live.locals.push((ck.var_name[var], value.to_string()));
                var += 1;
            }
            match ck.thread[i] {
                Checkpoint::SUSPENDED => {
                    forward.suspended.insert(live.state.frame, live);
                }
                t if t == thread => forward.stack.push(live),
                _ => {}
            }
        }
        forward
    }

    /// Applies the thread's events of `chunk` up to `seq`.
    fn feed(&mut self, chunk: &EventBatch, seq: u64) {
        let mut var = 0;
        for i in 0..chunk.len() {
            let var_start = var;
            while var < chunk.var_event.len() && chunk.var_event[var] as usize == i {
                var += 1;
            }
            if chunk.seq[i] > seq {
                break;
            }
            if chunk.thread[i] != self.thread {
                continue;
            }
            let Some(kind) = EventKind::from_code(chunk.kind[i]) else {
                continue;
            };
            let frame = chunk.frame[i];
            let new_frame = |complete: bool| Live {
                state: FrameState {
                    frame,
                    depth: chunk.depth[i],
                    code: chunk.code[i],
                    line: chunk.line[i],
                    seq: chunk.seq[i],
                    complete,
                    locals: Vec::new(),
                },
                locals: Vec::new(),
            };
            let position = match self.stack.iter().rposition(|l| l.state.frame == frame) {
                Some(position) if kind != EventKind::Call => position,
                _ => {
                    let live = match kind {
                        EventKind::Call => new_frame(true),
                        _ => self
                            .suspended
                            .remove(&frame)
                            .unwrap_or_else(|| new_frame(false)),
                    };
                    // Frames at or above its depth have ended unseen.
                    let depth = chunk.depth[i];
                    self.stack.retain(|l| l.state.depth < depth);
                    self.stack.push(live);
                    self.stack.len() - 1
                }
            };
            let live = &mut self.stack[position];
            live.state.line = chunk.line[i];
            live.state.seq = chunk.seq[i];
            for v in var_start..var {
                let name = chunk.var_name[v];
                let slot = live.locals.iter().position(|(n, _)| *n == name);
                match (VarChange::from_code(chunk.var_change[v]), slot) {
                    (Some(VarChange::Deleted), Some(slot)) => {
                        live.locals.remove(slot);
                    }
                    (Some(VarChange::Deleted) | None, _) => {}
                    (Some(_), slot) => {
                        let value = chunk
                            .values
                            .get(chunk.var_value[v])
                            .unwrap_or("")
                            .to_string();
                        match slot {
                            Some(slot) => live.locals[slot].1 = value,
                            None => live.locals.push((name, value)),
                        }
                    }
                }
            }
            // The state *at* `seq` still has the frame it returns from.
            let ends = matches!(
                kind,
                EventKind::Return | EventKind::Unwind | EventKind::Yield
            );
            if ends && chunk.seq[i] != seq {
                let mut ended = self.stack.split_off(position);
                let live = ended.swap_remove(0);
                if kind == EventKind::Yield {
                    self.suspended.insert(frame, live);
                }
            }
        }
    }

    fn finish(mut self, top: u64, tables: &Tables) -> Vec<FrameState> {
        if let Some(position) = self.stack.iter().rposition(|l| l.state.frame == top) {
            self.stack.truncate(position + 1);
        }
        self.stack
            .into_iter()
            .map(|live| {
                let mut state = live.state;
                state.locals = live
                    .locals
                    .into_iter()
                    .map(|(name, repr)| Local {
                        name: tables.string(name).unwrap_or("?").to_string(),
                        repr,
                    })
                    .collect();
                state
            })
            .collect()
    }
}

/// A frame of the stack being rebuilt.
#[derive(Debug)]
struct Found {
    state: FrameState,
    /// Latest value seen per name (walking back), with the earliest
    /// sequence number the name was seen at, for ordering.
    seen: HashMap<String, (Option<Local>, u64)>,
}

/// The backward walk of [`Timeline::stack_at`].
#[derive(Debug)]
struct StackWalk {
    thread: u32,
    /// Depth of the shallowest frame found so far.
    depth: u32,
    frames: Vec<Found>,
}

impl StackWalk {
    fn new(at: &Step) -> StackWalk {
        StackWalk {
            thread: at.thread,
            depth: at.depth,
            frames: vec![Found {
                state: FrameState {
                    frame: at.frame,
                    depth: at.depth,
                    code: at.code,
                    line: at.line,
                    seq: at.seq,
                    complete: false,
                    locals: Vec::new(),
                },
                seen: HashMap::new(),
            }],
        }
    }

    fn done(&self) -> bool {
        self.depth == 0 && self.frames.iter().all(|f| f.state.complete)
    }

    /// Whether a chunk can hold an event the walk still needs.
    fn may_need(&self, stats: &chronolog_format::ChunkStats) -> bool {
        if stats.threads.binary_search(&self.thread).is_err() {
            return false;
        }
        // Until the outermost frame is found, any event of the thread may
        // be the next caller.
        self.depth > 0
            || self
                .frames
                .iter()
                .filter(|f| !f.state.complete)
                .any(|f| stats.codes.binary_search(&f.state.code).is_ok())
    }

    fn touches(&self, chunk: &EventBatch, seq: u64) -> bool {
        (0..chunk.len()).any(|i| {
            chunk.seq[i] <= seq
                && chunk.thread[i] == self.thread
                && (chunk.depth[i] < self.depth
                    || self.frames.iter().any(|f| f.state.frame == chunk.frame[i]))
        })
    }

    /// Walks one chunk backwards from `seq`.
    fn feed(&mut self, chunk: &EventBatch, seq: u64, tables: &chronolog_format::Tables) {
        // Variable changes of each event: var_event is ascending.
        let mut var_end = chunk.var_event.len();
        for i in (0..chunk.len()).rev() {
            let var_start = chunk.var_event[..var_end].partition_point(|&e| (e as usize) < i);
            let vars = var_start..var_end;
            var_end = var_start;
            if chunk.seq[i] > seq || chunk.thread[i] != self.thread {
                continue;
            }
            if chunk.depth[i] < self.depth {
                self.depth = chunk.depth[i];
                self.frames.push(Found {
                    state: FrameState {
                        frame: chunk.frame[i],
                        depth: chunk.depth[i],
                        code: chunk.code[i],
                        line: chunk.line[i],
                        seq: chunk.seq[i],
                        complete: false,
                        locals: Vec::new(),
                    },
                    seen: HashMap::new(),
                });
            }
            let Some(found) = self
                .frames
                .iter_mut()
                .find(|f| f.state.frame == chunk.frame[i] && !f.state.complete)
            else {
                continue;
            };
            for v in vars.rev() {
                let name = tables.string(chunk.var_name[v]).unwrap_or("?").to_string();
                let value = match VarChange::from_code(chunk.var_change[v]) {
                    Some(VarChange::Deleted) | None => None,
                    Some(_) => Some(Local {
                        name: name.clone(),
                        repr: chunk.values.get(chunk.var_value[v]).unwrap_or("").into(),
                    }),
                };
                let entry = found.seen.entry(name).or_insert((value, chunk.seq[i]));
                entry.1 = chunk.seq[i];
            }
            if EventKind::from_code(chunk.kind[i]) == Some(EventKind::Call) {
                found.state.complete = true;
            }
        }
    }

    fn finish(mut self) -> Vec<FrameState> {
        self.frames.sort_by_key(|f| f.state.depth);
        self.frames
            .into_iter()
            .map(|mut found| {
                let mut locals: Vec<(u64, Local)> = found
                    .seen
                    .drain()
                    .filter_map(|(_, (local, first))| Some((first, local?)))
                    .collect();
                locals.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
                found.state.locals = locals.into_iter().map(|(_, l)| l).collect();
                found.state
            })
            .collect()
    }
}
