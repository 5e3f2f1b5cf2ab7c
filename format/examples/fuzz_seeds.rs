//! Writes the fuzz seed corpus (`fuzz/corpus/<target>/`) from the golden
//! traces: each whole file for `read_file`, each block body for the decoder
//! of its kind, and the first columns' worth of a chunk for `column`.
//!
//! ```text
//! cargo run -p chronolog-format --example fuzz_seeds
//! ```

use std::path::Path;

use chronolog_format::entry;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let corpus = root.join("fuzz/corpus");
    let mut files: Vec<_> = std::fs::read_dir(root.join("fixtures/compat"))?
        .flatten()
        .flat_map(|version| {
            std::fs::read_dir(version.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "clog"))
        .collect();
    files.sort();
    let mut written = 0;
    for path in files {
        let bytes = std::fs::read(&path)?;
        let stem = format!(
            "{}-{}",
            path.parent()
                .and_then(Path::file_name)
                .map_or("v".into(), |n| n.to_string_lossy().into_owned()),
            path.file_stem()
                .map_or("trace".into(), |n| n.to_string_lossy().into_owned())
        );
        let mut put = |target: &str, name: String, data: &[u8]| -> std::io::Result<()> {
            let dir = corpus.join(target);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(name), data)?;
            written += 1;
            Ok(())
        };
        put("read_file", stem.clone(), &bytes)?;
        for (index, (kind, body)) in entry::blocks(&bytes).into_iter().enumerate() {
            put(kind, format!("{stem}-{index}"), body)?;
        }
    }
    // A small valid varint column: uncompressed, 3 values, 3 bytes.
    let mut column = vec![0u8, 1, 3, 0, 0, 0, 3, 0, 0, 0];
    column.extend_from_slice(&[1, 2, 3]);
    let dir = corpus.join("column");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("varint-3"), column)?;
    println!("wrote {} seeds under {}", written + 1, corpus.display());
    Ok(())
}
