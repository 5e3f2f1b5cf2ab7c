//! Which chunks a query's filters rule out, from the statistics every chunk
//! carries (first/last sequence number, time range, thread ids, code ids).
//!
//! Only simple conjuncts are understood — `column op literal` (either side),
//! `BETWEEN` and `IN` on `seq`, `ts_ns`, `thread_id`, `code_id`, `function`
//! and `file`. A name filter becomes the set of code ids carrying that name
//! in that trace. Anything else keeps every chunk: pruning is an
//! optimisation, DataFusion applies the filters to the rows anyway.

use std::collections::BTreeSet;

use chronolog_format::ChunkStats;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, expr::InList};

use crate::source::TraceSource;

/// A statistic column that filters can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stat {
    Seq,
    TsNs,
    Thread,
    Code,
    Function,
    File,
}

fn stat_of(expr: &Expr) -> Option<Stat> {
    match expr {
        Expr::Column(column) => match column.name.as_str() {
            "seq" => Some(Stat::Seq),
            "ts_ns" => Some(Stat::TsNs),
            "thread_id" => Some(Stat::Thread),
            "code_id" => Some(Stat::Code),
            "function" => Some(Stat::Function),
            "file" => Some(Stat::File),
            _ => None,
        },
        Expr::Cast(cast) => stat_of(&cast.expr),
        Expr::TryCast(cast) => stat_of(&cast.expr),
        _ => None,
    }
}

/// A literal as an integer or a string.
#[derive(Clone, Debug, PartialEq)]
enum Literal {
    Int(i128),
    Text(String),
}

fn literal_of(expr: &Expr) -> Option<Literal> {
    let value = match expr {
        Expr::Literal(value, _) => value,
        Expr::Cast(cast) => return literal_of(&cast.expr),
        _ => return None,
    };
    scalar(value)
}

fn scalar(value: &ScalarValue) -> Option<Literal> {
    use ScalarValue as S;
    Some(match value {
        S::Int8(Some(v)) => Literal::Int(i128::from(*v)),
        S::Int16(Some(v)) => Literal::Int(i128::from(*v)),
        S::Int32(Some(v)) => Literal::Int(i128::from(*v)),
        S::Int64(Some(v)) => Literal::Int(i128::from(*v)),
        S::UInt8(Some(v)) => Literal::Int(i128::from(*v)),
        S::UInt16(Some(v)) => Literal::Int(i128::from(*v)),
        S::UInt32(Some(v)) => Literal::Int(i128::from(*v)),
        S::UInt64(Some(v)) => Literal::Int(i128::from(*v)),
        S::Utf8(Some(v)) | S::LargeUtf8(Some(v)) | S::Utf8View(Some(v)) => Literal::Text(v.clone()),
        S::Dictionary(_, inner) => return scalar(inner),
        _ => return None,
    })
}

/// One understood conjunct.
#[derive(Clone, Debug)]
enum Condition {
    /// `stat` lies in `[low, high]`.
    Range(Stat, i128, i128),
    /// `stat` is one of these values.
    OneOf(Stat, Vec<Literal>),
}

fn condition(expr: &Expr) -> Option<Condition> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (stat, literal, op) = match (stat_of(left), literal_of(right)) {
                (Some(stat), Some(literal)) => (stat, literal, *op),
                _ => (stat_of(right)?, literal_of(left)?, op.swap()?),
            };
            match (op, literal) {
                (Operator::Eq, literal) => Some(Condition::OneOf(stat, vec![literal])),
                (Operator::Lt, Literal::Int(v)) => Some(Condition::Range(stat, i128::MIN, v - 1)),
                (Operator::LtEq, Literal::Int(v)) => Some(Condition::Range(stat, i128::MIN, v)),
                (Operator::Gt, Literal::Int(v)) => Some(Condition::Range(stat, v + 1, i128::MAX)),
                (Operator::GtEq, Literal::Int(v)) => Some(Condition::Range(stat, v, i128::MAX)),
                _ => None,
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => match (stat_of(expr)?, literal_of(low)?, literal_of(high)?) {
            (stat, Literal::Int(low), Literal::Int(high)) => {
                Some(Condition::Range(stat, low, high))
            }
            _ => None,
        },
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) => Some(Condition::OneOf(
            stat_of(expr)?,
            list.iter().map(literal_of).collect::<Option<Vec<_>>>()?,
        )),
        _ => None,
    }
}

/// The chunk filter of one scan over one trace.
#[derive(Debug, Default)]
pub struct ChunkFilter {
    seq: Option<(i128, i128)>,
    ts_ns: Option<(i128, i128)>,
    threads: Option<BTreeSet<u32>>,
    codes: Option<BTreeSet<u32>>,
}

fn narrow_range(current: &mut Option<(i128, i128)>, low: i128, high: i128) {
    let (old_low, old_high) = current.unwrap_or((i128::MIN, i128::MAX));
    *current = Some((old_low.max(low), old_high.min(high)));
}

fn narrow_set(current: &mut Option<BTreeSet<u32>>, allowed: BTreeSet<u32>) {
    *current = Some(match current.take() {
        Some(old) => old.intersection(&allowed).copied().collect(),
        None => allowed,
    });
}

impl ChunkFilter {
    /// True when `filter` is a conjunct that can prune chunks.
    pub fn understands(filter: &Expr) -> bool {
        condition(filter).is_some()
    }

    /// The pruning implied by `filters` (ANDed) in `trace`.
    pub fn new(filters: &[Expr], trace: &TraceSource) -> ChunkFilter {
        let mut filter = ChunkFilter::default();
        for expr in filters {
            match condition(expr) {
                Some(Condition::Range(Stat::Seq, low, high)) => {
                    narrow_range(&mut filter.seq, low, high)
                }
                Some(Condition::Range(Stat::TsNs, low, high)) => {
                    narrow_range(&mut filter.ts_ns, low, high)
                }
                Some(Condition::Range(stat @ (Stat::Thread | Stat::Code), low, high)) => {
                    // Ids are small: a range becomes the set of ids in it
                    // that the trace defines.
                    let defined = match stat {
                        Stat::Thread => trace.reader.tables().threads().map(|(id, _)| id).collect(),
                        _ => trace
                            .reader
                            .tables()
                            .codes()
                            .map(|(id, _)| id)
                            .collect::<Vec<_>>(),
                    };
                    let ids = defined
                        .into_iter()
                        .filter(|&id| (low..=high).contains(&i128::from(id)))
                        .collect();
                    match stat {
                        Stat::Thread => narrow_set(&mut filter.threads, ids),
                        _ => narrow_set(&mut filter.codes, ids),
                    }
                }
                Some(Condition::OneOf(stat, values)) => filter.one_of(stat, &values, trace),
                _ => {}
            }
        }
        filter
    }

    fn one_of(&mut self, stat: Stat, values: &[Literal], trace: &TraceSource) {
        let ints = || -> BTreeSet<u32> {
            values
                .iter()
                .filter_map(|v| match v {
                    Literal::Int(i) => u32::try_from(*i).ok(),
                    Literal::Text(_) => None,
                })
                .collect()
        };
        let tables = trace.reader.tables();
        let named = |field: fn(&chronolog_format::CodeInfo) -> u32| -> BTreeSet<u32> {
            let names: BTreeSet<&str> = values
                .iter()
                .filter_map(|v| match v {
                    Literal::Text(s) => Some(s.as_str()),
                    Literal::Int(_) => None,
                })
                .collect();
            tables
                .codes()
                .filter(|(_, code)| {
                    tables
                        .string(field(code))
                        .is_some_and(|name| names.contains(name))
                })
                .map(|(id, _)| id)
                .collect()
        };
        match stat {
            Stat::Seq | Stat::TsNs => {
                // A few points: their hull bounds the range.
                let ints: Vec<i128> = values
                    .iter()
                    .filter_map(|v| match v {
                        Literal::Int(i) => Some(*i),
                        Literal::Text(_) => None,
                    })
                    .collect();
                let low = ints.iter().copied().min().unwrap_or(i128::MAX);
                let high = ints.iter().copied().max().unwrap_or(i128::MIN);
                let range = if stat == Stat::Seq {
                    &mut self.seq
                } else {
                    &mut self.ts_ns
                };
                narrow_range(range, low, high);
            }
            Stat::Thread => narrow_set(&mut self.threads, ints()),
            Stat::Code => narrow_set(&mut self.codes, ints()),
            Stat::Function => narrow_set(&mut self.codes, named(|c| c.qualname)),
            Stat::File => narrow_set(&mut self.codes, named(|c| c.file)),
        }
    }

    /// False when no row of a chunk with these statistics can match.
    pub fn may_match(&self, stats: &ChunkStats) -> bool {
        let overlaps = |range: &Option<(i128, i128)>, first: u64, last: u64| match range {
            Some((low, high)) => i128::from(first) <= *high && i128::from(last) >= *low,
            None => true,
        };
        let shares = |set: &Option<BTreeSet<u32>>, ids: &[u32]| match set {
            Some(set) => ids.iter().any(|id| set.contains(id)),
            None => true,
        };
        overlaps(&self.seq, stats.first_seq, stats.last_seq)
            && overlaps(&self.ts_ns, stats.min_ts_ns, stats.max_ts_ns)
            && shares(&self.threads, &stats.threads)
            && shares(&self.codes, &stats.codes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    fn stats(first: u64, last: u64, threads: &[u32], codes: &[u32]) -> ChunkStats {
        ChunkStats {
            first_seq: first,
            last_seq: last,
            min_ts_ns: first * 10,
            max_ts_ns: last * 10,
            threads: threads.to_vec(),
            codes: codes.to_vec(),
            ..ChunkStats::default()
        }
    }

    /// A filter over a synthetic trace (threads 0 and 1, several code objects).
    fn filter(exprs: &[Expr]) -> ChunkFilter {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.clog");
        let options = chronolog_format::synth::SynthOptions::default();
        chronolog_format::synth::write_trace(&path, &options, Default::default()).expect("write");
        let trace = TraceSource::open(&path).expect("open");
        ChunkFilter::new(exprs, &trace)
    }

    #[test]
    fn sequence_ranges_prune_chunks_outside_them() {
        let f = filter(&[col("seq").gt_eq(lit(100i64)), lit(200i64).gt(col("seq"))]);
        assert!(!f.may_match(&stats(0, 99, &[0], &[0])));
        assert!(f.may_match(&stats(50, 150, &[0], &[0])));
        assert!(f.may_match(&stats(199, 300, &[0], &[0])));
        assert!(!f.may_match(&stats(200, 300, &[0], &[0])));
        let between = filter(&[col("ts_ns").between(lit(100i64), lit(200i64))]);
        assert!(!between.may_match(&stats(0, 9, &[0], &[0])));
        assert!(between.may_match(&stats(0, 10, &[0], &[0])));
    }

    #[test]
    fn thread_and_code_sets_prune_chunks_without_them() {
        let f = filter(&[
            col("thread_id").eq(lit(1i32)),
            col("code_id").in_list(vec![lit(2i32), lit(3i32)], false),
        ]);
        assert!(f.may_match(&stats(0, 9, &[0, 1], &[3])));
        assert!(!f.may_match(&stats(0, 9, &[0], &[3])));
        assert!(!f.may_match(&stats(0, 9, &[1], &[0, 1])));
        let ranged = filter(&[col("code_id").lt(lit(2i32))]);
        assert!(ranged.may_match(&stats(0, 9, &[1], &[1])));
        assert!(!ranged.may_match(&stats(0, 9, &[1], &[2, 3])));
    }

    #[test]
    fn other_filters_are_not_understood() {
        assert!(!ChunkFilter::understands(&col("kind").eq(lit("line"))));
        assert!(!ChunkFilter::understands(
            &col("seq").gt(lit(1i64)).or(col("seq").lt(lit(0i64)))
        ));
        assert!(ChunkFilter::understands(&col("function").eq(lit("f"))));
    }
}
