//! The event model as the format stores it: a batch of events and variable
//! changes held column by column (struct of arrays), the shape in which the
//! recorder appends them and in which a chunk decodes.
//!
//! Ids in these columns refer to metadata defined through the writer:
//! `thread` to a thread, `code` to a code object, `var_name` to a string.
//! Fields that hold a "string id + 1" or a "value ref" use 0 for "none", so
//! that a column that is mostly empty costs almost nothing once encoded.

/// What happened. Values are stable on disk; new kinds get new numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum EventKind {
    Call = 0,
    Line = 1,
    Return = 2,
    Raise = 3,
    Reraise = 4,
    Handled = 5,
    Unwind = 6,
    Yield = 7,
    Resume = 8,
    Throw = 9,
}

impl EventKind {
    /// Every kind, in on-disk order.
    pub const ALL: [EventKind; 10] = [
        EventKind::Call,
        EventKind::Line,
        EventKind::Return,
        EventKind::Raise,
        EventKind::Reraise,
        EventKind::Handled,
        EventKind::Unwind,
        EventKind::Yield,
        EventKind::Resume,
        EventKind::Throw,
    ];

    /// The kind stored as `code`, if this reader knows it.
    pub fn from_code(code: u8) -> Option<EventKind> {
        EventKind::ALL.get(usize::from(code)).copied()
    }

    /// The name used in SQL tables and dumps (`call`, `line`, ...).
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Call => "call",
            EventKind::Line => "line",
            EventKind::Return => "return",
            EventKind::Raise => "raise",
            EventKind::Reraise => "reraise",
            EventKind::Handled => "handled",
            EventKind::Unwind => "unwind",
            EventKind::Yield => "yield",
            EventKind::Resume => "resume",
            EventKind::Throw => "throw",
        }
    }
}

/// How a variable changed (PySnooper's vocabulary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum VarChange {
    Start = 0,
    New = 1,
    Modified = 2,
    Deleted = 3,
}

impl VarChange {
    /// Every change kind, in on-disk order.
    pub const ALL: [VarChange; 4] = [
        VarChange::Start,
        VarChange::New,
        VarChange::Modified,
        VarChange::Deleted,
    ];

    /// The change stored as `code`, if this reader knows it.
    pub fn from_code(code: u8) -> Option<VarChange> {
        VarChange::ALL.get(usize::from(code)).copied()
    }

    /// The name used in SQL tables and dumps.
    pub fn name(self) -> &'static str {
        match self {
            VarChange::Start => "start",
            VarChange::New => "new",
            VarChange::Modified => "modified",
            VarChange::Deleted => "deleted",
        }
    }
}

/// One event, as a row. [`EventBatch`] stores these column by column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub ts_ns: u64,
    pub thread: u32,
    /// An [`EventKind`] as stored (`EventKind as u8`).
    pub kind: u8,
    pub frame: u64,
    pub depth: u32,
    pub code: u32,
    pub line: u32,
    /// Value ref of the return value, yielded value or exception message; 0 = none.
    pub arg: u32,
    /// String id + 1 of the arg's type name; 0 = none.
    pub arg_type: u32,
    /// Identity of the exception for exception events; 0 otherwise.
    pub exc_id: u64,
    /// At a `raise`: identity of the exception being handled when this one
    /// was raised (its `__context__`, else its `__cause__`); 0 otherwise.
    pub exc_context: u64,
}

/// One variable change, as a row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VarRecord {
    /// Index of the event (within its batch) this change was observed at.
    pub event: u32,
    /// String id of the variable's name.
    pub name: u32,
    /// A [`VarChange`] as stored.
    pub change: u8,
    /// Value ref of the new repr; 0 = none (deleted).
    pub value: u32,
    /// String id + 1 of the value's type name; 0 = none.
    pub type_name: u32,
}

/// Value texts (sanitized reprs) of a batch. A value ref `k > 0` names entry
/// `k - 1`; the writer deduplicates entries within each chunk.
///
/// An entry can also be a float ([`Values::push_float`]) whose text, its
/// Python repr, the writer renders when it encodes the chunk: on the
/// writer's thread, not the recorded program's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Values {
    text: String,
    ends: Vec<u32>,
    /// The float entries: entry index and the float's bits, ascending by
    /// index. Their span of `text` is empty.
    floats: Vec<(u32, u64)>,
}

impl Values {
    /// Appends `text` and returns its value ref (never 0).
    ///
    /// A batch holds at most 4 GiB of value text; the recorder hands batches
    /// over long before that.
    #[inline]
    pub fn push(&mut self, text: &str) -> u32 {
        self.text.push_str(text);
        self.ends
            .push(u32::try_from(self.text.len()).unwrap_or(u32::MAX));
        u32::try_from(self.ends.len()).unwrap_or(u32::MAX)
    }

    /// Appends a float whose text is Python's repr of it, rendered when
    /// the batch is encoded (see the type), and returns its value ref.
    #[inline]
    pub fn push_float(&mut self, value: f64) -> u32 {
        let index = u32::try_from(self.ends.len()).unwrap_or(u32::MAX);
        self.floats.push((index, value.to_bits()));
        self.ends
            .push(u32::try_from(self.text.len()).unwrap_or(u32::MAX));
        index.saturating_add(1)
    }

    /// The text of value ref `value_ref`; `None` for 0, an unknown ref or a
    /// float entry (see [`Values::float`]).
    pub fn get(&self, value_ref: u32) -> Option<&str> {
        let index = usize::try_from(value_ref).ok()?.checked_sub(1)?;
        let end = *self.ends.get(index)? as usize;
        let start = match index {
            0 => 0,
            _ => self.ends[index - 1] as usize,
        };
        let text = self.text.get(start..end)?;
        if text.is_empty() && self.float_at(index).is_some() {
            return None;
        }
        Some(text)
    }

    /// Number of float entries.
    pub fn floats(&self) -> usize {
        self.floats.len()
    }

    /// The number value ref `value_ref` holds, when it is a float entry.
    pub fn float(&self, value_ref: u32) -> Option<f64> {
        let index = usize::try_from(value_ref).ok()?.checked_sub(1)?;
        self.float_at(index)
    }

    /// The text of value ref `value_ref`, a float entry's rendered.
    pub fn rendered(&self, value_ref: u32) -> Option<std::borrow::Cow<'_, str>> {
        if let Some(text) = self.get(value_ref) {
            return Some(text.into());
        }
        let mut text = String::new();
        crate::push_float_repr(&mut text, self.float(value_ref)?);
        Some(text.into())
    }

    fn float_at(&self, index: usize) -> Option<f64> {
        let index = u32::try_from(index).ok()?;
        let found = self.floats.binary_search_by_key(&index, |&(i, _)| i).ok()?;
        Some(f64::from_bits(self.floats[found].1))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Total bytes of text.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// All entries' text, one after the other.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// End offset in [`Values::text`] of each entry (ascending).
    pub fn ends(&self) -> &[u32] {
        &self.ends
    }

    pub(crate) fn from_parts(text: String, ends: Vec<u32>) -> Option<Values> {
        let mut previous = 0u32;
        for &end in &ends {
            if end < previous || !text.is_char_boundary(end as usize) {
                return None;
            }
            previous = end;
        }
        (previous as usize == text.len()).then_some(Values {
            text,
            ends,
            floats: Vec::new(),
        })
    }

    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
        self.floats.clear();
    }
}

/// The recorder's state before a batch's first event: every frame on a
/// thread's stack (and suspended generators) with its locals' last
/// recorded values. A reader rebuilds any moment from the nearest
/// checkpoint forward instead of from the start of the trace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Thread of each frame; [`Checkpoint::SUSPENDED`] for a generator or
    /// coroutine between a yield and its next resume.
    pub thread: Vec<u32>,
    pub frame: Vec<u64>,
    pub depth: Vec<u32>,
    pub code: Vec<u32>,
    pub line: Vec<u32>,
    /// Index (into the frame rows) of the frame each local belongs to; ascending.
    pub var_frame: Vec<u32>,
    /// String id of each local's name.
    pub var_name: Vec<u32>,
    /// Value ref of each local's last recorded repr.
    pub var_value: Vec<u32>,
}

impl Checkpoint {
    /// The `thread` of a suspended generator's frame.
    pub const SUSPENDED: u32 = u32::MAX;

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frame.len()
    }

    /// True when it holds no frame.
    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }

    /// Appends a frame; returns its index.
    pub fn push_frame(&mut self, thread: u32, frame: u64, depth: u32, code: u32, line: u32) -> u32 {
        let index = u32::try_from(self.frame.len()).unwrap_or(u32::MAX);
        self.thread.push(thread);
        self.frame.push(frame);
        self.depth.push(depth);
        self.code.push(code);
        self.line.push(line);
        index
    }

    /// Appends a local of frame `frame` (the last pushed, or an earlier one).
    pub fn push_var(&mut self, frame: u32, name: u32, value: u32) {
        self.var_frame.push(frame);
        self.var_name.push(name);
        self.var_value.push(value);
    }

    /// Checks lengths and the frame references of the locals.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.frame.len();
        if [
            self.thread.len(),
            self.depth.len(),
            self.code.len(),
            self.line.len(),
        ]
        .iter()
        .any(|&len| len != n)
        {
            return Err("checkpoint frame columns differ in length".into());
        }
        let m = self.var_frame.len();
        if self.var_name.len() != m || self.var_value.len() != m {
            return Err("checkpoint local columns differ in length".into());
        }
        if !self.var_frame.is_sorted() {
            return Err("checkpoint locals are out of frame order".into());
        }
        if let Some(&bad) = self.var_frame.iter().find(|&&f| f as usize >= n) {
            return Err(format!("checkpoint local refers to frame {bad} of {n}"));
        }
        Ok(())
    }
}

/// Events and variable changes as rows, with everything else of their
/// batch — values, checkpoint — in an [`EventBatch`] whose event and
/// variable columns stay empty. What a producer on a hot path fills (one
/// row written per event instead of twelve column pushes, one per change
/// instead of five); [`crate::TraceWriter::write_rows`] turns the rows into
/// columns on the writer's thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowBatch {
    pub events: Vec<Event>,
    /// Variable changes (`event` indexes `events`).
    pub vars: Vec<VarRecord>,
    /// Values and checkpoint.
    pub batch: EventBatch,
}

impl RowBatch {
    /// An empty batch with room for `events` events and `vars` changes.
    pub fn with_capacity(events: usize, vars: usize) -> RowBatch {
        RowBatch {
            events: Vec::with_capacity(events),
            vars: Vec::with_capacity(vars),
            batch: EventBatch::with_capacity(0, vars),
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Appends an event; returns its index in the batch.
    #[inline]
    pub fn push_event(&mut self, event: Event) -> u32 {
        let index = u32::try_from(self.events.len()).unwrap_or(u32::MAX);
        self.events.push(event);
        index
    }

    /// Moves the rows into the (empty) event and variable columns of
    /// `batch`, keeping the rows' allocations.
    ///
    /// Block by block: each column is filled from a block of rows that
    /// stays in the core's cache, instead of from all the rows (megabytes)
    /// read again for every column — which made this copy a third of the
    /// writer's time.
    pub fn rows_to_columns(&mut self) {
        /// Rows per block: 256 rows of at most 72 bytes, 18 KB.
        const BLOCK: usize = 256;
        let batch = &mut self.batch;
        macro_rules! fill {
            ($rows:expr, $($column:ident <- $field:ident),*) => {
                $( batch.$column.reserve($rows.len()); )*
                for block in $rows.chunks(BLOCK) {
                    $( batch.$column.extend(block.iter().map(|row| row.$field)); )*
                }
            };
        }
        fill!(
            self.events,
            seq <- seq,
            ts_ns <- ts_ns,
            thread <- thread,
            kind <- kind,
            frame <- frame,
            depth <- depth,
            code <- code,
            line <- line,
            arg <- arg,
            arg_type <- arg_type,
            exc_id <- exc_id,
            exc_context <- exc_context
        );
        fill!(
            self.vars,
            var_event <- event,
            var_name <- name,
            var_change <- change,
            var_value <- value,
            var_type <- type_name
        );
        self.events.clear();
        self.vars.clear();
    }

    /// Empties the batch, keeping its allocations for reuse.
    pub fn clear(&mut self) {
        self.events.clear();
        self.vars.clear();
        self.batch.clear();
    }
}

/// Events and variable changes, column by column.
///
/// Rules the writer checks: all event columns have the same length, all
/// variable columns have the same length, `var_event` is ascending and points
/// at an event of the batch, and every value ref names an entry of `values`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventBatch {
    pub seq: Vec<u64>,
    pub ts_ns: Vec<u64>,
    pub thread: Vec<u32>,
    pub kind: Vec<u8>,
    pub frame: Vec<u64>,
    pub depth: Vec<u32>,
    pub code: Vec<u32>,
    pub line: Vec<u32>,
    pub arg: Vec<u32>,
    pub arg_type: Vec<u32>,
    pub exc_id: Vec<u64>,
    pub exc_context: Vec<u64>,
    pub var_event: Vec<u32>,
    pub var_name: Vec<u32>,
    pub var_change: Vec<u8>,
    pub var_value: Vec<u32>,
    pub var_type: Vec<u32>,
    pub values: Values,
    /// The state before the first event, when the producer knows it (the
    /// recorder does; a chunk decoded without one has `None`).
    pub checkpoint: Option<Checkpoint>,
}

impl EventBatch {
    /// An empty batch with room for `events` events and `vars` variable
    /// changes and their values (filling a batch from empty would
    /// reallocate every column about twenty times).
    pub fn with_capacity(events: usize, vars: usize) -> EventBatch {
        EventBatch {
            seq: Vec::with_capacity(events),
            ts_ns: Vec::with_capacity(events),
            thread: Vec::with_capacity(events),
            kind: Vec::with_capacity(events),
            frame: Vec::with_capacity(events),
            depth: Vec::with_capacity(events),
            code: Vec::with_capacity(events),
            line: Vec::with_capacity(events),
            arg: Vec::with_capacity(events),
            arg_type: Vec::with_capacity(events),
            exc_id: Vec::with_capacity(events),
            exc_context: Vec::with_capacity(events),
            var_event: Vec::with_capacity(vars),
            var_name: Vec::with_capacity(vars),
            var_change: Vec::with_capacity(vars),
            var_value: Vec::with_capacity(vars),
            var_type: Vec::with_capacity(vars),
            values: Values {
                // Most values are short scalars: 16 bytes a change leaves
                // a few doublings for the long ones.
                text: String::with_capacity(vars * 16),
                ends: Vec::with_capacity(vars),
                floats: Vec::new(),
            },
            checkpoint: None,
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.seq.len()
    }

    /// True when the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }

    /// Number of variable changes.
    pub fn var_len(&self) -> usize {
        self.var_event.len()
    }

    /// Appends an event; returns its index in the batch.
    #[inline]
    pub fn push_event(&mut self, e: &Event) -> u32 {
        let index = u32::try_from(self.seq.len()).unwrap_or(u32::MAX);
        self.seq.push(e.seq);
        self.ts_ns.push(e.ts_ns);
        self.thread.push(e.thread);
        self.kind.push(e.kind);
        self.frame.push(e.frame);
        self.depth.push(e.depth);
        self.code.push(e.code);
        self.line.push(e.line);
        self.arg.push(e.arg);
        self.arg_type.push(e.arg_type);
        self.exc_id.push(e.exc_id);
        self.exc_context.push(e.exc_context);
        index
    }

    /// Appends a variable change.
    #[inline]
    pub fn push_var(&mut self, v: &VarRecord) {
        self.var_event.push(v.event);
        self.var_name.push(v.name);
        self.var_change.push(v.change);
        self.var_value.push(v.value);
        self.var_type.push(v.type_name);
    }

    /// The event at `index`, as a row.
    pub fn event(&self, index: usize) -> Option<Event> {
        Some(Event {
            seq: *self.seq.get(index)?,
            ts_ns: *self.ts_ns.get(index)?,
            thread: *self.thread.get(index)?,
            kind: *self.kind.get(index)?,
            frame: *self.frame.get(index)?,
            depth: *self.depth.get(index)?,
            code: *self.code.get(index)?,
            line: *self.line.get(index)?,
            arg: *self.arg.get(index)?,
            arg_type: *self.arg_type.get(index)?,
            exc_id: *self.exc_id.get(index)?,
            exc_context: *self.exc_context.get(index)?,
        })
    }

    /// The variable change at `index`, as a row.
    pub fn var(&self, index: usize) -> Option<VarRecord> {
        Some(VarRecord {
            event: *self.var_event.get(index)?,
            name: *self.var_name.get(index)?,
            change: *self.var_change.get(index)?,
            value: *self.var_value.get(index)?,
            type_name: *self.var_type.get(index)?,
        })
    }

    /// Empties the batch, keeping its allocations for reuse.
    pub fn clear(&mut self) {
        for column in [
            &mut self.seq,
            &mut self.ts_ns,
            &mut self.frame,
            &mut self.exc_id,
            &mut self.exc_context,
        ] {
            column.clear();
        }
        for column in [
            &mut self.thread,
            &mut self.depth,
            &mut self.code,
            &mut self.line,
            &mut self.arg,
            &mut self.arg_type,
            &mut self.var_event,
            &mut self.var_name,
            &mut self.var_value,
            &mut self.var_type,
        ] {
            column.clear();
        }
        self.kind.clear();
        self.var_change.clear();
        self.values.clear();
        self.checkpoint = None;
    }

    /// Checks the structural rules listed on the type.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.len();
        let event_lengths = [
            self.ts_ns.len(),
            self.thread.len(),
            self.kind.len(),
            self.frame.len(),
            self.depth.len(),
            self.code.len(),
            self.line.len(),
            self.arg.len(),
            self.arg_type.len(),
            self.exc_id.len(),
            self.exc_context.len(),
        ];
        if event_lengths.iter().any(|&len| len != n) {
            return Err(format!(
                "event columns differ in length: {n} seq, {event_lengths:?}"
            ));
        }
        let m = self.var_len();
        let var_lengths = [
            self.var_name.len(),
            self.var_change.len(),
            self.var_value.len(),
            self.var_type.len(),
        ];
        if var_lengths.iter().any(|&len| len != m) {
            return Err(format!(
                "variable columns differ in length: {m} events, {var_lengths:?}"
            ));
        }
        if !self.var_event.is_sorted() {
            return Err("var_event is not ascending".into());
        }
        if let Some(&last) = self.var_event.last()
            && last as usize >= n
        {
            return Err(format!("var_event {last} points past the {n} events"));
        }
        let values = self.values.len();
        if let Some(checkpoint) = &self.checkpoint {
            checkpoint.validate()?;
        }
        let checkpoint_values = self.checkpoint.iter().flat_map(|c| &c.var_value);
        let max_ref = self
            .arg
            .iter()
            .chain(&self.var_value)
            .chain(checkpoint_values)
            .copied()
            .max()
            .unwrap_or(0);
        if max_ref as usize > values {
            return Err(format!("value ref {max_ref} but only {values} values"));
        }
        Ok(())
    }
}
