//! Counting by a vocabulary column without building rows.
//!
//! `SELECT kind, count(*) FROM events GROUP BY kind` is the first question
//! asked of a trace. Planned as is, every event becomes a dictionary-encoded
//! string row that DataFusion's generic grouping hashes row by row (it has
//! no fast path for dictionary keys). The answer is in the 1-byte `kind`
//! codes already: this physical optimizer rule replaces the partial
//! aggregation over a chunk scan by [`CountExec`], which decodes only that
//! column and counts the 256 possible codes per partition, producing the
//! partial aggregate's own output (so the final aggregation, ordering and
//! projection above it are untouched).
//!
//! It applies only when the answer cannot differ: one group column, the
//! scan's only column (`kind` of `events`/`exceptions`, `change` of
//! `vars`), aggregates that are all `count(<literal>)` (`count(*)`), no
//! aggregate filter, and no filter or limit pushed into the scan.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use chronolog_format::{ColumnId, ColumnMask};
use datafusion::common::Result as DfResult;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use crate::columns;
use crate::scan::{ChunkScan, ChunkScanExec};

/// The rule (see the module docs).
#[derive(Debug, Default)]
pub struct CountByVocabulary;

impl PhysicalOptimizerRule for CountByVocabulary {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| {
            Ok(match counting(&node) {
                Some(count) => Transformed::yes(count),
                None => Transformed::no(node),
            })
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "count_by_vocabulary"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `count(1)`, `count(*)`: counts every row.
fn counts_rows(expressions: &[Arc<dyn PhysicalExpr>]) -> bool {
    matches!(expressions, [only] if only
        .downcast_ref::<Literal>()
        .is_some_and(|literal| !literal.value().is_null()))
}

/// The count that replaces `node`, when it is a partial `count(*)` grouped
/// by the only column of a chunk scan.
fn counting(node: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    let aggregate = node.downcast_ref::<AggregateExec>()?;
    if *aggregate.mode() != AggregateMode::Partial
        || aggregate.filter_expr().iter().any(Option::is_some)
    {
        return None;
    }
    let group = aggregate.group_expr();
    let [(key, _)] = group.expr() else {
        return None;
    };
    if !group.is_single() || key.downcast_ref::<Column>()?.index() != 0 {
        return None;
    }
    let all_counts = aggregate.aggr_expr().iter().all(|function| {
        function.fun().name() == "count"
            && !function.is_distinct()
            && counts_rows(&function.expressions())
    });
    if !all_counts {
        return None;
    }
    let scan = &chunk_scan(aggregate.input())?.scan;
    if scan.filtered || scan.limit.is_some() {
        return None;
    }
    let column = scan.vocabulary_column()?;
    Some(Arc::new(CountExec::new(
        aggregate.schema(),
        scan.clone(),
        column,
        aggregate.aggr_expr().len(),
    )))
}

/// The chunk scan under `plan`, through nodes that only move rows around.
fn chunk_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<&ChunkScanExec> {
    if let Some(scan) = plan.downcast_ref::<ChunkScanExec>() {
        return Some(scan);
    }
    let passes_rows = plan
        .downcast_ref::<RepartitionExec>()
        .is_some_and(|r| matches!(r.partitioning(), Partitioning::RoundRobinBatch(_)));
    match plan.children().as_slice() {
        [child] if passes_rows => chunk_scan(child),
        _ => None,
    }
}

/// Counts of each code of one vocabulary column, per partition of a scan,
/// shaped as the partial aggregate it replaces.
#[derive(Debug)]
pub struct CountExec {
    schema: SchemaRef,
    scan: ChunkScan,
    column: ColumnId,
    aggregates: usize,
    properties: Arc<PlanProperties>,
}

impl CountExec {
    fn new(schema: SchemaRef, scan: ChunkScan, column: ColumnId, aggregates: usize) -> CountExec {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(scan.shares.len().max(1)),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        CountExec {
            schema,
            scan,
            column,
            aggregates,
            properties: Arc::new(properties),
        }
    }
}

/// The partial counts of one partition's chunks.
fn count(
    scan: &ChunkScan,
    column: ColumnId,
    aggregates: usize,
    schema: &SchemaRef,
    partition: usize,
) -> arrow::error::Result<RecordBatch> {
    let mut counts = [0i64; 256];
    let mask = ColumnMask::only(&[column]);
    for &(t, c) in scan.shares.get(partition).into_iter().flatten() {
        let Some(chunk) = scan.traces[t].chunk(c, mask) else {
            continue;
        };
        let codes = match column {
            ColumnId::VarChange => &chunk.var_change,
            _ => &chunk.kind,
        };
        for &code in codes {
            counts[usize::from(code)] += 1;
        }
    }
    let present: Vec<u8> = (0..=u8::MAX)
        .filter(|&code| counts[usize::from(code)] > 0 && scan.counts_kind(code))
        .collect();
    let counted: ArrayRef = Arc::new(
        present
            .iter()
            .map(|&code| counts[usize::from(code)])
            .collect::<Int64Array>(),
    );
    let keys: ArrayRef = match column {
        ColumnId::VarChange => columns::changes(present),
        _ => columns::kinds(present),
    };
    let mut arrays = vec![keys];
    arrays.extend(std::iter::repeat_n(counted, aggregates));
    RecordBatch::try_new(Arc::clone(schema), arrays)
}

impl DisplayAs for CountExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CountExec: {:?} codes of {} partitions",
            self.column,
            self.scan.shares.len()
        )
    }
}

impl ExecutionPlan for CountExec {
    fn name(&self) -> &str {
        "CountExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
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
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let (scan, column, aggregates) = (self.scan.clone(), self.column, self.aggregates);
        let schema = Arc::clone(&self.schema);
        let counted = std::iter::once_with(move || {
            count(&scan, column, aggregates, &schema, partition)
                .map_err(datafusion::error::DataFusionError::from)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            futures::stream::iter(counted),
        )))
    }
}
