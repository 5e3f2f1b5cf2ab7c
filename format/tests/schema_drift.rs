//! The Rust code generated from `schemas/*.capnp` is checked in, so building
//! chronolog never needs the Cap'n Proto compiler. This test regenerates it
//! into a temporary directory and fails if the checked-in copy drifted.
//!
//! Regenerate after changing a schema (needs Debian's `capnproto` package):
//!
//! ```text
//! make schemas        # = CHRONOLOG_UPDATE_SCHEMAS=1 cargo test -p chronolog-format --test schema_drift
//! ```

use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("format/ has a parent")
        .to_path_buf()
}

fn generate_into(out: &Path) {
    let root = repo_root();
    capnpc::CompilerCommand::new()
        .src_prefix(root.join("schemas"))
        .file(root.join("schemas/trace.capnp"))
        .default_parent_module(vec!["generated".into()])
        .output_path(out)
        .run()
        .unwrap_or_else(|e| {
            panic!(
                "running the Cap'n Proto compiler failed (is Debian's `capnproto` installed?): {e}"
            )
        });
}

#[test]
fn generated_code_matches_schemas() {
    let checked_in = repo_root().join("format/src/generated/trace_capnp.rs");
    if std::env::var_os("CHRONOLOG_UPDATE_SCHEMAS").is_some() {
        generate_into(checked_in.parent().expect("has parent"));
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    generate_into(dir.path());
    let fresh = std::fs::read_to_string(dir.path().join("trace_capnp.rs")).expect("generated file");
    let current = std::fs::read_to_string(&checked_in).unwrap_or_default();
    assert!(
        fresh == current,
        "{} is out of date with schemas/trace.capnp; run `make schemas`",
        checked_in.display()
    );
}
