//! Golden files: traces written by earlier releases (fixtures/compat/v*/)
//! must keep reading exactly as they did. The files are never regenerated;
//! see examples/make_compat_fixtures.rs.

use std::path::Path;

use chronolog_format::{TraceReader, dump};

fn check_dir(dir: &Path) -> usize {
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("fixture dir")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let trace = entry.path();
        if trace.extension().is_none_or(|e| e != "clog") {
            continue;
        }
        let expected =
            std::fs::read_to_string(trace.with_extension("dump")).expect("expected dump");
        let reader =
            TraceReader::open(&trace).unwrap_or_else(|e| panic!("{}: {e}", trace.display()));
        let mut actual = Vec::new();
        dump::dump(&reader, &mut actual).expect("dump");
        let actual = String::from_utf8(actual).expect("utf-8 dump");
        assert!(
            actual == expected,
            "{} no longer reads as it did",
            trace.display()
        );
        checked += 1;
    }
    checked
}

#[test]
fn every_released_version_still_reads_the_same() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/compat");
    let mut checked = 0;
    for version in std::fs::read_dir(&root).expect("fixtures/compat").flatten() {
        checked += check_dir(&version.path());
    }
    assert!(checked >= 3, "only {checked} golden traces found");
}
