//! The SQL tables and exports over synthetic traces: every event counted
//! once whatever the projection, filters that prune chunks agree with a
//! scan, and exports that read back.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use chronolog_analyze::{OutputFormat, TraceSet, export, render};
use chronolog_format::WriterOptions;
use chronolog_format::synth::{SynthOptions, write_trace};

fn synthetic(dir: &std::path::Path, name: &str, events: u64) -> std::path::PathBuf {
    let path = dir.join(name);
    let options = SynthOptions {
        events,
        batch_events: 4096,
        ..SynthOptions::default()
    };
    write_trace(&path, &options, WriterOptions::default()).expect("write");
    path
}

fn single_int(set: &TraceSet, sql: &str) -> i64 {
    let result = set.query(sql).expect(sql);
    let batch = result
        .batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .expect("a row");
    batch.column(0).as_primitive::<Int64Type>().value(0)
}

#[test]
fn every_event_is_counted_once_whatever_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = synthetic(dir.path(), "a.clog", 50_000);
    let set = TraceSet::open(&[&path]).expect("open");
    assert!(set.traces()[0].reader.chunks().len() > 4);
    assert_eq!(single_int(&set, "SELECT count(*) FROM events"), 50_000);
    assert_eq!(single_int(&set, "SELECT count(seq) FROM events"), 50_000);
    assert_eq!(
        single_int(
            &set,
            "SELECT count(arg) + count(*) - count(arg) FROM events"
        ),
        50_000
    );
    let by_kind = single_int(
        &set,
        "SELECT sum(n) FROM (SELECT kind, count(*) AS n FROM events GROUP BY kind)",
    );
    assert_eq!(by_kind, 50_000);
    let vars = set.traces()[0].reader.var_count() as i64;
    assert_eq!(single_int(&set, "SELECT count(*) FROM vars"), vars);
    let exceptions = single_int(
        &set,
        "SELECT count(*) FROM events WHERE kind IN ('raise', 'reraise', 'handled', 'unwind', 'throw')",
    );
    assert_eq!(
        single_int(&set, "SELECT count(*) FROM exceptions"),
        exceptions
    );
}

/// A query's answer as CSV text.
fn csv(set: &TraceSet, sql: &str) -> String {
    let result = set.query(sql).expect(sql);
    let mut out = Vec::new();
    render(&result, OutputFormat::Csv, &mut out).expect("render");
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn counts_by_vocabulary_equal_counting_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = synthetic(dir.path(), "a.clog", 60_000);
    let set = TraceSet::open(&[&path]).expect("open");
    for (table, column, other) in [
        ("events", "kind", "seq"),
        ("exceptions", "event", "seq"),
        ("vars", "change", "seq"),
    ] {
        let counted = format!(
            "SELECT {column}, count(*) AS n, count(1) AS m FROM {table} GROUP BY {column} ORDER BY {column}"
        );
        // count(<column>) is not rewritten: it counts rows the generic way.
        let rows = format!(
            "SELECT {column}, count({other}) AS n, count({other}) AS m FROM {table} GROUP BY {column} ORDER BY {column}"
        );
        assert_eq!(csv(&set, &counted), csv(&set, &rows), "{table}");
        let plan = csv(&set, &format!("EXPLAIN {counted}"));
        assert!(plan.contains("CountExec"), "{plan}");
        // With a filter the scan is not every row: no rewrite.
        let filtered =
            format!("SELECT {column}, count(*) FROM {table} WHERE thread_id = 1 GROUP BY {column}");
        assert!(!csv(&set, &format!("EXPLAIN {filtered}")).contains("CountExec"));
    }
    let kinds = csv(
        &set,
        "SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind",
    );
    assert!(kinds.lines().count() > 5, "{kinds}");
}

#[test]
fn pruned_scans_agree_with_full_scans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = synthetic(dir.path(), "a.clog", 40_000);
    let set = TraceSet::open(&[&path]).expect("open");
    for (pruned, scanned) in [
        (
            "SELECT count(*) FROM events WHERE seq BETWEEN 10000 AND 20000",
            "SELECT count(*) FROM events WHERE seq + 0 BETWEEN 10000 AND 20000",
        ),
        (
            "SELECT count(*) FROM events WHERE function = 'price_for'",
            "SELECT count(*) FROM events WHERE lower(function) = 'price_for'",
        ),
        (
            "SELECT count(*) FROM events WHERE thread_id = 1 AND ts_ns > 1000000",
            "SELECT count(*) FROM events WHERE thread_id + 0 = 1 AND ts_ns + 0 > 1000000",
        ),
        (
            "SELECT count(*) FROM vars WHERE code_id IN (2, 3)",
            "SELECT count(*) FROM vars WHERE code_id + 0 IN (2, 3)",
        ),
    ] {
        assert_eq!(
            single_int(&set, pruned),
            single_int(&set, scanned),
            "{pruned}"
        );
    }
}

#[test]
fn calls_pair_every_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = synthetic(dir.path(), "a.clog", 30_000);
    let set = TraceSet::open(&[&path]).expect("open");
    let calls = single_int(&set, "SELECT count(*) FROM events WHERE kind = 'call'");
    assert_eq!(single_int(&set, "SELECT count(*) FROM calls"), calls);
    let ended = single_int(
        &set,
        "SELECT count(*) FROM events WHERE kind IN ('return', 'unwind')",
    );
    assert_eq!(
        single_int(&set, "SELECT count(*) FROM calls WHERE exit <> 'running'"),
        ended
    );
    assert_eq!(
        single_int(
            &set,
            "SELECT count(*) FROM calls WHERE end_seq < start_seq OR duration_ns < 0"
        ),
        0
    );
}

#[test]
fn two_traces_are_one_set_of_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = synthetic(dir.path(), "a.clog", 10_000);
    let b = synthetic(dir.path(), "b.clog", 7_000);
    let set = TraceSet::open(&[&a, &b]).expect("open");
    assert_eq!(single_int(&set, "SELECT count(*) FROM events"), 17_000);
    assert_eq!(
        single_int(&set, "SELECT count(DISTINCT trace) FROM calls"),
        2
    );
    let text = {
        let result = set
            .query("SELECT trace, count(*) AS n FROM events GROUP BY trace ORDER BY trace")
            .expect("query");
        let mut out = Vec::new();
        render(&result, OutputFormat::Csv, &mut out).expect("render");
        String::from_utf8(out).expect("utf-8")
    };
    assert!(
        text.contains("a.clog,10000") && text.contains("b.clog,7000"),
        "{text}"
    );
}

#[test]
fn exports_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = synthetic(dir.path(), "a.clog", 20_000);
    let set = TraceSet::open(&[&path]).expect("open");
    let quiet = |_: &str, _: u64, _: u64| {};
    export::parquet(&set, &dir.path().join("pq"), &quiet).expect("parquet");
    let mut rows = 0;
    for entry in std::fs::read_dir(dir.path().join("pq/events")).expect("folder") {
        let file = std::fs::File::open(entry.expect("entry").path()).expect("part");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader");
        rows += reader.map(|b| b.expect("batch").num_rows()).sum::<usize>();
    }
    assert_eq!(rows, 20_000);

    let ipc = dir.path().join("vars.arrow");
    export::arrow_ipc(&set, "vars", &ipc, &quiet).expect("ipc");
    let reader =
        arrow::ipc::reader::FileReader::try_new(std::fs::File::open(&ipc).expect("open"), None)
            .expect("ipc reader");
    let read: usize = reader.map(|b| b.expect("batch").num_rows()).sum();
    assert_eq!(read as u64, set.traces()[0].reader.var_count());

    let json = dir.path().join("p.json");
    export::perfetto(&set, &json, &quiet).expect("perfetto");
    let value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("read")).expect("valid JSON");
    let events = value["traceEvents"].as_array().expect("events");
    let slices = events.iter().filter(|e| e["ph"] == "X").count() as i64;
    assert_eq!(
        slices,
        single_int(
            &set,
            "SELECT count(*) FROM events WHERE kind IN ('call', 'resume', 'throw')"
        )
    );
    assert!(events.iter().all(|e| e["pid"].is_number()));
}
