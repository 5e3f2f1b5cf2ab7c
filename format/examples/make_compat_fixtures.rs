//! Writes the golden traces of `fixtures/compat/v<MAJOR>/` and their expected
//! dumps. Files that exist are never rewritten: once released, a golden file
//! is frozen, and `tests/compat.rs` proves every later reader still reads it.
//!
//! ```text
//! cargo run -p chronolog-format --example make_compat_fixtures
//! ```

use std::path::{Path, PathBuf};

use chronolog_format::synth::{SynthOptions, write_trace};
use chronolog_format::{HeaderInfo, TraceReader, TraceWriter, WriterOptions, dump};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/compat")
        .join(format!("v{}", chronolog_format::FORMAT_MAJOR));
    std::fs::create_dir_all(&dir)?;
    let small = SynthOptions {
        events: 400,
        seed: 7,
        threads: 2,
        batch_events: 150,
    };
    let chunked = WriterOptions {
        max_chunk_events: 64,
        ..WriterOptions::default()
    };
    let target = dir.join("synth-small.clog");
    if !target.exists() {
        write_trace(&target, &small, chunked)?;
    }
    let crashed = dir.join("synth-crashed.clog");
    if !crashed.exists() {
        // A writer killed mid-chunk: no footer, the last chunk cut in half.
        let bytes = std::fs::read(&target)?;
        let reader = TraceReader::open(&target)?;
        let last = reader.chunks().last().ok_or("no chunks")?;
        let cut = (last.offset + last.length / 2) as usize;
        std::fs::write(&crashed, &bytes[..cut])?;
    }
    let empty = dir.join("empty.clog");
    if !empty.exists() {
        let header = HeaderInfo {
            writer: "chronolog synth".into(),
            start_unix_ns: 1_767_225_600_000_000_000,
            meta: vec![("argv".into(), "[]".into())],
        };
        TraceWriter::create(&empty, &header, WriterOptions::default())?.finish()?;
    }
    for trace in [target, crashed, empty] {
        let expected = with_extension(&trace, "dump");
        if !expected.exists() {
            let mut text = Vec::new();
            dump::dump(&TraceReader::open(&trace)?, &mut text)?;
            std::fs::write(&expected, text)?;
            println!("wrote {}", expected.display());
        }
    }
    Ok(())
}

fn with_extension(path: &Path, ext: &str) -> PathBuf {
    path.with_extension(ext)
}
