//! Tables computed by one ordered pass over each trace (`calls`,
//! `silenced`): their rows depend on what came before them, so they cannot
//! be cut into independent chunks. Each trace is one partition; a pass
//! yields batches as it goes.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};

use crate::source::TraceSource;

/// The batches of one pass over one trace.
pub type Batches = Box<dyn Iterator<Item = arrow::error::Result<RecordBatch>> + Send>;

/// Runs the pass of a table over one trace, producing rows of `schema`.
pub type Pass = fn(&Arc<TraceSource>, &SchemaRef) -> Batches;

/// A table whose rows come from a [`Pass`] over each trace.
#[derive(Debug)]
pub struct PassTable {
    traces: Vec<Arc<TraceSource>>,
    schema: SchemaRef,
    pass: Pass,
}

impl PassTable {
    pub fn new(traces: Vec<Arc<TraceSource>>, schema: SchemaRef, pass: Pass) -> PassTable {
        PassTable {
            traces,
            schema,
            pass,
        }
    }
}

#[async_trait]
impl TableProvider for PassTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let streams: Vec<Arc<dyn PartitionStream>> = self
            .traces
            .iter()
            .map(|trace| {
                Arc::new(PassStream {
                    trace: Arc::clone(trace),
                    schema: Arc::clone(&self.schema),
                    pass: self.pass,
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        let plan = StreamingTableExec::try_new(
            Arc::clone(&self.schema),
            streams,
            projection,
            [],
            false,
            limit,
        )?;
        Ok(Arc::new(plan))
    }
}

#[derive(Debug)]
struct PassStream {
    trace: Arc<TraceSource>,
    schema: SchemaRef,
    pass: Pass,
}

impl PartitionStream for PassStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batches = (self.pass)(&self.trace, &self.schema)
            .map(|b| b.map_err(datafusion::error::DataFusionError::from));
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            futures::stream::iter(batches),
        ))
    }
}
