//! The tables read chunk by chunk — `events`, `exceptions`, `vars` — as
//! DataFusion table providers.
//!
//! A scan decodes only the format columns its projected Arrow columns need,
//! skips chunks that its filters rule out by the chunk statistics (sequence
//! and time ranges, threads, code objects — so `function = 'f'` reads only
//! chunks in which `f` ran), and stops once a pushed-down limit is reached.
//! Chunks are spread over partitions that DataFusion runs in parallel; each
//! partition decodes its chunks one at a time, so memory stays bounded by
//! the chunks in flight whatever the trace's size.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use chronolog_format::{ColumnId, ColumnMask, EventBatch, EventKind};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use crate::columns;
use crate::prune::ChunkFilter;
use crate::source::TraceSource;

/// Which rows a table has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    /// One per event.
    Events,
    /// One per exception event (raise, reraise, handled, unwind, throw).
    Exceptions,
    /// One per variable change.
    Vars,
}

/// A column of these tables and where its values come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    Trace,
    Seq,
    TsNs,
    ThreadId,
    Kind,
    FrameId,
    Depth,
    CodeId,
    File,
    Function,
    Line,
    /// The event's value text (return value, yielded value, exception message).
    Arg,
    /// The type name of `Arg`.
    ArgType,
    ExcId,
    ExcContext,
    VarName,
    Change,
    Repr,
    VarType,
}

impl Col {
    fn data_type(self) -> DataType {
        match self {
            Col::Seq | Col::TsNs | Col::FrameId | Col::ExcId | Col::ExcContext => DataType::Int64,
            Col::ThreadId | Col::Depth | Col::CodeId | Col::Line => DataType::Int32,
            Col::Kind | Col::Change => columns::vocabulary_type(),
            Col::Trace | Col::File | Col::Function | Col::ArgType | Col::VarName | Col::VarType => {
                columns::names_type()
            }
            Col::Arg | Col::Repr => DataType::Utf8,
        }
    }

    fn nullable(self) -> bool {
        !matches!(
            self,
            Col::Trace | Col::Seq | Col::TsNs | Col::ThreadId | Col::FrameId | Col::Depth
        )
    }

    /// Event columns it reads (of the event each row belongs to).
    fn event_columns(self) -> &'static [ColumnId] {
        match self {
            Col::Trace | Col::VarName | Col::Change | Col::Repr | Col::VarType => &[],
            Col::Seq => &[ColumnId::Seq],
            Col::TsNs => &[ColumnId::TsNs],
            Col::ThreadId => &[ColumnId::Thread],
            Col::Kind => &[ColumnId::Kind],
            Col::FrameId => &[ColumnId::Frame],
            Col::Depth => &[ColumnId::Depth],
            Col::CodeId | Col::File | Col::Function => &[ColumnId::Code],
            Col::Line => &[ColumnId::Line],
            Col::Arg => &[ColumnId::Arg, ColumnId::ValueBytes],
            Col::ArgType => &[ColumnId::ArgType],
            Col::ExcId => &[ColumnId::ExcId],
            Col::ExcContext => &[ColumnId::ExcContext],
        }
    }

    /// Variable-change columns it reads.
    fn var_columns(self) -> &'static [ColumnId] {
        match self {
            Col::VarName => &[ColumnId::VarName],
            Col::Change => &[ColumnId::VarChange],
            Col::Repr => &[ColumnId::VarValue, ColumnId::ValueBytes],
            Col::VarType => &[ColumnId::VarType],
            _ => &[],
        }
    }
}

const EVENTS: &[(&str, Col)] = &[
    ("trace", Col::Trace),
    ("seq", Col::Seq),
    ("ts_ns", Col::TsNs),
    ("thread_id", Col::ThreadId),
    ("kind", Col::Kind),
    ("frame_id", Col::FrameId),
    ("depth", Col::Depth),
    ("code_id", Col::CodeId),
    ("file", Col::File),
    ("function", Col::Function),
    ("line", Col::Line),
    ("arg", Col::Arg),
    ("arg_type", Col::ArgType),
    ("exc_id", Col::ExcId),
];

const EXCEPTIONS: &[(&str, Col)] = &[
    ("trace", Col::Trace),
    ("seq", Col::Seq),
    ("ts_ns", Col::TsNs),
    ("thread_id", Col::ThreadId),
    ("frame_id", Col::FrameId),
    ("depth", Col::Depth),
    ("code_id", Col::CodeId),
    ("file", Col::File),
    ("function", Col::Function),
    ("line", Col::Line),
    ("event", Col::Kind),
    ("exc_id", Col::ExcId),
    ("context_exc_id", Col::ExcContext),
    ("type", Col::ArgType),
    ("message", Col::Arg),
];

const VARS: &[(&str, Col)] = &[
    ("trace", Col::Trace),
    ("seq", Col::Seq),
    ("ts_ns", Col::TsNs),
    ("thread_id", Col::ThreadId),
    ("frame_id", Col::FrameId),
    ("depth", Col::Depth),
    ("code_id", Col::CodeId),
    ("file", Col::File),
    ("function", Col::Function),
    ("line", Col::Line),
    ("name", Col::VarName),
    ("change", Col::Change),
    ("repr", Col::Repr),
    ("type", Col::VarType),
];

impl Rows {
    fn columns(self) -> &'static [(&'static str, Col)] {
        match self {
            Rows::Events => EVENTS,
            Rows::Exceptions => EXCEPTIONS,
            Rows::Vars => VARS,
        }
    }

    /// The table's Arrow schema.
    pub fn schema(self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns()
                .iter()
                .map(|&(name, col)| Field::new(name, col.data_type(), col.nullable()))
                .collect::<Vec<_>>(),
        ))
    }

    /// The format columns to decode for `cols`. The row-defining column
    /// (`kind` for events, `var_event` for changes) is always read: it
    /// counts the rows even when no column is (`count(*)`), and it is one
    /// of the cheapest.
    fn mask(self, cols: &[Col]) -> ColumnMask {
        let mut ids: Vec<ColumnId> = Vec::new();
        for col in cols {
            ids.extend_from_slice(col.event_columns());
            ids.extend_from_slice(col.var_columns());
        }
        ids.push(match self {
            Rows::Events | Rows::Exceptions => ColumnId::Kind,
            Rows::Vars => ColumnId::VarEvent,
        });
        ColumnMask::only(&ids)
    }
}

pub fn is_exception(kind: u8) -> bool {
    matches!(
        EventKind::from_code(kind),
        Some(
            EventKind::Raise
                | EventKind::Reraise
                | EventKind::Handled
                | EventKind::Unwind
                | EventKind::Throw
        )
    )
}

/// An event column's values for each row: the column itself when rows are
/// the events (moved out, no copy), else gathered through `event_of_row`.
fn per_row<T: Copy + Default>(event_of_row: Option<&[u32]>, column: &mut Vec<T>) -> Vec<T> {
    match event_of_row {
        None => std::mem::take(column),
        Some(events) => columns::gather(column, events),
    }
}

/// The Arrow batch of `rows` for one decoded chunk, `cols` in order.
fn chunk_batch(
    trace: &TraceSource,
    rows: Rows,
    cols: &[Col],
    schema: &SchemaRef,
    mut chunk: EventBatch,
) -> arrow::error::Result<RecordBatch> {
    // Which event each row belongs to: every event, the exception events, or
    // the event each variable change was seen at.
    let event_of_row: Option<Vec<u32>> = match rows {
        Rows::Events => None,
        Rows::Exceptions => Some(
            (0..chunk.kind.len() as u32)
                .filter(|&i| is_exception(chunk.kind[i as usize]))
                .collect(),
        ),
        Rows::Vars => Some(std::mem::take(&mut chunk.var_event)),
    };
    let row_count = match &event_of_row {
        None => chunk.kind.len(),
        Some(events) => events.len(),
    };
    let rows_of = event_of_row.as_deref();
    // `code_id`, `file` and `function` share one per-row code column.
    let needs_code = cols
        .iter()
        .any(|c| matches!(c, Col::CodeId | Col::File | Col::Function));
    let codes = if needs_code {
        per_row(rows_of, &mut chunk.code)
    } else {
        Vec::new()
    };
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(cols.len());
    for &col in cols {
        let array = match col {
            Col::Trace => columns::constant(row_count, &trace.name_values),
            Col::Seq => columns::int64(per_row(rows_of, &mut chunk.seq)),
            Col::TsNs => columns::int64(per_row(rows_of, &mut chunk.ts_ns)),
            Col::FrameId => columns::int64(per_row(rows_of, &mut chunk.frame)),
            Col::ExcId => columns::int64(per_row(rows_of, &mut chunk.exc_id)),
            Col::ExcContext => columns::nonzero_int64(&per_row(rows_of, &mut chunk.exc_context)),
            Col::ThreadId => columns::int32(per_row(rows_of, &mut chunk.thread)),
            Col::Depth => columns::int32(per_row(rows_of, &mut chunk.depth)),
            Col::Line => columns::int32(per_row(rows_of, &mut chunk.line)),
            Col::CodeId => columns::int32(codes.clone()),
            Col::File => columns::ids(codes.clone(), &trace.files),
            Col::Function => columns::ids(codes.clone(), &trace.functions),
            Col::Kind => columns::kinds(per_row(rows_of, &mut chunk.kind)),
            Col::Arg => match &event_of_row {
                None => columns::texts(&chunk.values, chunk.arg.iter().copied()),
                Some(events) => columns::texts(
                    &chunk.values,
                    events
                        .iter()
                        .map(|&i| chunk.arg.get(i as usize).copied().unwrap_or(0)),
                ),
            },
            Col::ArgType => {
                columns::optional_ids(&per_row(rows_of, &mut chunk.arg_type), &trace.strings)
            }
            Col::VarName => columns::ids(std::mem::take(&mut chunk.var_name), &trace.strings),
            Col::Change => columns::changes(std::mem::take(&mut chunk.var_change)),
            Col::Repr => columns::texts(&chunk.values, chunk.var_value.iter().copied()),
            Col::VarType => columns::optional_ids(&chunk.var_type, &trace.strings),
        };
        arrays.push(array);
    }
    RecordBatch::try_new_with_options(
        Arc::clone(schema),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(row_count)),
    )
}

/// A table read chunk by chunk from one or more traces.
#[derive(Debug)]
pub struct ChunkTable {
    rows: Rows,
    traces: Vec<Arc<TraceSource>>,
    schema: SchemaRef,
}

impl ChunkTable {
    pub fn new(rows: Rows, traces: Vec<Arc<TraceSource>>) -> ChunkTable {
        ChunkTable {
            rows,
            traces,
            schema: rows.schema(),
        }
    }
}

#[async_trait]
impl TableProvider for ChunkTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Filters that name a statistic prune chunks; DataFusion still
        // applies every filter to the rows of the chunks that remain.
        Ok(filters
            .iter()
            .map(|f| {
                if ChunkFilter::understands(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let all = self.rows.columns();
        let picked: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..all.len()).collect(),
        };
        let cols: Arc<[Col]> = picked.iter().map(|&i| all[i].1).collect();
        let schema = Arc::new(self.schema.project(&picked)?);
        let mask = self.rows.mask(&cols);
        let partitions = state.config_options().execution.target_partitions.max(1);

        // Every (trace, chunk) that may hold matching rows, dealt round-robin
        // to the partitions so each gets a share of every part of the run.
        let mut shares: Vec<Vec<(usize, usize)>> = vec![Vec::new(); partitions];
        let mut next = 0;
        for (t, trace) in self.traces.iter().enumerate() {
            let filter = ChunkFilter::new(filters, trace);
            for (c, entry) in trace.reader.chunks().iter().enumerate() {
                if filter.may_match(&entry.stats) {
                    shares[next % partitions].push((t, c));
                    next += 1;
                }
            }
        }
        shares.retain(|share| !share.is_empty());
        let streams: Vec<Arc<dyn PartitionStream>> = shares
            .iter()
            .cloned()
            .map(|chunks| {
                Arc::new(ChunkStream {
                    rows: self.rows,
                    traces: self.traces.clone(),
                    chunks,
                    cols: Arc::clone(&cols),
                    mask,
                    schema: Arc::clone(&schema),
                    limit,
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        let inner = StreamingTableExec::try_new(schema, streams, None, [], false, limit)?;
        Ok(Arc::new(ChunkScanExec {
            inner: Arc::new(inner),
            scan: ChunkScan {
                rows: self.rows,
                traces: self.traces.clone(),
                shares,
                cols,
                filtered: !filters.is_empty(),
                limit,
            },
        }))
    }
}

/// What a chunk scan reads: enough for [`crate::count`] to answer a count
/// from the same chunks without building rows.
#[derive(Clone, Debug)]
pub struct ChunkScan {
    pub rows: Rows,
    pub traces: Vec<Arc<TraceSource>>,
    /// The (trace, chunk) pairs of each partition.
    pub shares: Vec<Vec<(usize, usize)>>,
    cols: Arc<[Col]>,
    /// Filters were pushed down (the chunks are a superset of the answer).
    pub filtered: bool,
    pub limit: Option<usize>,
}

impl ChunkScan {
    /// The format column holding the single projected column's vocabulary
    /// code, when the scan projects exactly one such column (`kind`,
    /// `event`, `change`).
    pub fn vocabulary_column(&self) -> Option<ColumnId> {
        match (self.rows, &*self.cols) {
            (Rows::Events | Rows::Exceptions, [Col::Kind]) => Some(ColumnId::Kind),
            (Rows::Vars, [Col::Change]) => Some(ColumnId::VarChange),
            _ => None,
        }
    }

    /// Whether a row of this table has kind `code` (exceptions are the
    /// exception events only).
    pub fn counts_kind(&self, code: u8) -> bool {
        self.rows != Rows::Exceptions || is_exception(code)
    }
}

/// The scan plan of a chunk table: a [`StreamingTableExec`] over one
/// [`ChunkStream`] per partition, with what it reads kept visible to
/// optimizer rules.
#[derive(Debug)]
pub struct ChunkScanExec {
    inner: Arc<dyn ExecutionPlan>,
    pub scan: ChunkScan,
}

impl DisplayAs for ChunkScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkScanExec: ")?;
        self.inner.fmt_as(t, f)
    }
}

impl ExecutionPlan for ChunkScanExec {
    fn name(&self) -> &str {
        "ChunkScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        self.inner.execute(partition, context)
    }

    fn fetch(&self) -> Option<usize> {
        self.inner.fetch()
    }
}

/// One partition of a chunk scan.
#[derive(Debug)]
struct ChunkStream {
    rows: Rows,
    traces: Vec<Arc<TraceSource>>,
    /// (trace index, chunk index) pairs, in file order per trace.
    chunks: Vec<(usize, usize)>,
    cols: Arc<[Col]>,
    mask: ColumnMask,
    schema: SchemaRef,
    limit: Option<usize>,
}

impl PartitionStream for ChunkStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (rows, traces, cols, mask, schema) = (
            self.rows,
            self.traces.clone(),
            Arc::clone(&self.cols),
            self.mask,
            Arc::clone(&self.schema),
        );
        let mut remaining = self.limit.unwrap_or(usize::MAX);
        let batches = self.chunks.clone().into_iter().filter_map(move |(t, c)| {
            if remaining == 0 {
                return None;
            }
            let trace = &traces[t];
            let chunk = trace.chunk(c, mask)?;
            let batch = chunk_batch(trace, rows, &cols, &schema, chunk)
                .map_err(datafusion::error::DataFusionError::from);
            if let Ok(batch) = &batch {
                remaining = remaining.saturating_sub(batch.num_rows());
            }
            Some(batch)
        });
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            futures::stream::iter(batches),
        ))
    }
}
