//! A set of traces as one set of SQL tables (`chronolog sql a.clog b.clog`),
//! queried through DataFusion.
//!
//! Every table has a `trace` column naming the file a row came from, so
//! several traces (the runs of a test suite, a parent and its children)
//! answer one query. Ids (`frame_id`, `code_id`, `thread_id`, `exc_id`) are
//! per trace: join on `trace` too when several are open.
//!
//! Queries are read-only: statements that would create, change or write
//! anything (DDL, DML, `COPY`, `SET`) are refused; exports go through
//! [`crate::export`], which writes only where it is told.

use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};

use crate::AnalyzeError;
use crate::calls;
use crate::count::CountByVocabulary;
use crate::pass::{Pass, PassTable};
use crate::scan::{ChunkTable, Rows};
use crate::silenced;
use crate::small;
use crate::source::TraceSource;

/// The tables every session has, in the order `export` writes them.
pub const TABLES: [&str; 10] = [
    "events",
    "calls",
    "vars",
    "exceptions",
    "silenced",
    "silenced_all",
    "code",
    "threads",
    "source",
    "meta",
];

/// A query's answer, collected.
#[derive(Clone, Debug)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Open traces and the SQL session over them.
pub struct TraceSet {
    traces: Vec<Arc<TraceSource>>,
    ctx: SessionContext,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for TraceSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceSet")
            .field("traces", &self.traces)
            .finish_non_exhaustive()
    }
}

impl TraceSet {
    /// Opens every path (at least one) as one set of tables.
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<TraceSet, AnalyzeError> {
        let traces = paths
            .iter()
            .map(|p| TraceSource::open(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        TraceSet::new(traces)
    }

    /// The set of already opened traces.
    pub fn new(traces: Vec<TraceSource>) -> Result<TraceSet, AnalyzeError> {
        if traces.is_empty() {
            return Err(AnalyzeError::new("no trace given"));
        }
        let traces: Vec<Arc<TraceSource>> = traces.into_iter().map(Arc::new).collect();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("chronolog-sql")
            .build()
            .map_err(|e| AnalyzeError::new(format!("cannot start the query runtime: {e}")))?;
        let config = SessionConfig::new()
            .with_target_partitions(threads)
            .with_information_schema(true);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(CountByVocabulary))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let df = |e: DataFusionError| AnalyzeError::new(describe(&e));
        for (name, rows) in [
            ("events", Rows::Events),
            ("vars", Rows::Vars),
            ("exceptions", Rows::Exceptions),
        ] {
            ctx.register_table(name, Arc::new(ChunkTable::new(rows, traces.clone())))
                .map_err(df)?;
        }
        let passes: [(&str, SchemaRef, Pass); 3] = [
            ("calls", calls::schema(), calls::call_batches),
            ("silenced", silenced::schema(), silenced::default_scope),
            ("silenced_all", silenced::schema(), silenced::every_one),
        ];
        for (name, schema, pass) in passes {
            let table = PassTable::new(traces.clone(), schema, pass);
            ctx.register_table(name, Arc::new(table)).map_err(df)?;
        }
        for (name, schema) in small::schemas() {
            let batches = traces
                .iter()
                .map(|t| small::batch(name, &schema, t))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| AnalyzeError::new(e.to_string()))?;
            let table = MemTable::try_new(schema, vec![batches]).map_err(df)?;
            ctx.register_table(name, Arc::new(table)).map_err(df)?;
        }
        Ok(TraceSet {
            traces,
            ctx,
            runtime,
        })
    }

    /// The traces, in the order given.
    pub fn traces(&self) -> &[Arc<TraceSource>] {
        &self.traces
    }

    /// Runs `sql` and collects its answer.
    pub fn query(&self, sql: &str) -> Result<QueryResult, AnalyzeError> {
        self.runtime.block_on(async {
            let frame = self.plan(sql).await?;
            let schema = Arc::new(frame.schema().as_arrow().clone());
            let batches = frame
                .collect()
                .await
                .map_err(|e| AnalyzeError::new(describe(&e)))?;
            Ok(QueryResult { schema, batches })
        })
    }

    /// Every row of table `name`.
    pub fn table(&self, name: &str) -> Result<QueryResult, AnalyzeError> {
        known_table(name)?;
        self.query(&format!("SELECT * FROM {name}"))
    }

    /// Runs `sql` as one stream per partition, for writers that consume
    /// partitions in parallel; `consume` runs inside the query runtime.
    pub fn with_streams<T>(
        &self,
        sql: &str,
        consume: impl AsyncFnOnce(SchemaRef, Vec<SendableRecordBatchStream>) -> Result<T, AnalyzeError>,
    ) -> Result<T, AnalyzeError> {
        self.runtime.block_on(async {
            let frame = self.plan(sql).await?;
            let schema = Arc::new(frame.schema().as_arrow().clone());
            let streams = frame
                .execute_stream_partitioned()
                .await
                .map_err(|e| AnalyzeError::new(describe(&e)))?;
            consume(schema, streams).await
        })
    }

    async fn plan(&self, sql: &str) -> Result<datafusion::dataframe::DataFrame, AnalyzeError> {
        let read_only = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        self.ctx
            .sql_with_options(sql, read_only)
            .await
            .map_err(|e| AnalyzeError::new(describe(&e)))
    }

    /// Damage met so far in every trace (opening, then scans), one line each,
    /// prefixed with the trace's name.
    pub fn damage(&self) -> Vec<String> {
        self.traces
            .iter()
            .flat_map(|t| {
                t.damage()
                    .into_iter()
                    .map(move |d| format!("{}: {d}", t.name))
            })
            .collect()
    }
}

/// `Ok` when `name` is one of [`TABLES`], else the error naming them.
pub fn known_table(name: &str) -> Result<(), AnalyzeError> {
    if TABLES.contains(&name) {
        return Ok(());
    }
    Err(AnalyzeError::new(format!(
        "unknown table '{name}' (tables: {})",
        TABLES.join(", ")
    )))
}

/// One line saying what is wrong with a query, without DataFusion's
/// internal framing.
pub fn describe(error: &DataFusionError) -> String {
    let root = error.find_root();
    let text = match root {
        DataFusionError::SQL(parse, _) => format!("invalid SQL: {parse}"),
        DataFusionError::Plan(message) | DataFusionError::Execution(message) => {
            let refused = [
                "DDL not supported",
                "DML not supported",
                "Statement not supported",
            ]
            .iter()
            .any(|p| message.starts_with(p));
            if refused {
                format!(
                    "only queries are allowed: nothing is created, changed or written ({message})"
                )
            } else {
                message.clone()
            }
        }
        DataFusionError::SchemaError(schema, _) => schema.to_string(),
        DataFusionError::ArrowError(arrow, _) => arrow.to_string(),
        other => other.to_string(),
    };
    let text = text
        .replace("datafusion.public.", "")
        .replace("table 'datafusion.public.", "table '");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
