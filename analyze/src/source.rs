//! One opened trace as the SQL tables see it: the reader, the name its rows
//! carry in the `trace` column, and the Arrow arrays that id columns decode
//! into (built once per trace, then shared by every batch, so a `function`
//! or `name` column costs its integer keys and nothing more).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, StringArray};
use chronolog_format::{ChunkStats, ColumnMask, EventBatch, Tables, TraceReader};

use rayon::prelude::*;

use crate::AnalyzeError;

/// An open trace and its shared dictionaries.
#[derive(Debug)]
pub struct TraceSource {
    /// What the `trace` column says: the path as the user gave it.
    pub name: String,
    pub reader: TraceReader,
    /// A one-entry array holding `name`.
    pub name_values: ArrayRef,
    /// Every interned string, by string id (variable and type names).
    pub strings: ArrayRef,
    /// Qualified name of every code object, by code id.
    pub functions: ArrayRef,
    /// File name of every code object, by code id.
    pub files: ArrayRef,
    /// Chunks found damaged while scanning, one line each.
    damaged: Mutex<BTreeSet<String>>,
}

impl TraceSource {
    /// Opens `path`; a missing, unreadable or foreign file is an error.
    pub fn open(path: &Path) -> Result<TraceSource, AnalyzeError> {
        let reader = TraceReader::open(path).map_err(AnalyzeError::from)?;
        Ok(TraceSource::new(path.display().to_string(), reader))
    }

    /// Wraps an open reader.
    pub fn new(name: String, reader: TraceReader) -> TraceSource {
        let tables = reader.tables();
        let strings: StringArray = (0..tables.string_count())
            .map(|id| tables.string(id as u32))
            .collect();
        let code_count = tables.codes().map(|(id, _)| id as usize + 1).max();
        let by_code = |field: fn(&chronolog_format::CodeInfo) -> u32| -> StringArray {
            (0..code_count.unwrap_or(0))
                .map(|id| {
                    tables
                        .code(id as u32)
                        .and_then(|code| tables.string(field(code)))
                })
                .collect()
        };
        let functions = by_code(|c| c.qualname);
        let files = by_code(|c| c.file);
        TraceSource {
            name_values: Arc::new(StringArray::from(vec![name.as_str()])),
            name,
            reader,
            strings: Arc::new(strings),
            functions: Arc::new(functions),
            files: Arc::new(files),
            damaged: Mutex::new(BTreeSet::new()),
        }
    }

    /// Decodes chunk `index`; a damaged chunk is noted (see
    /// [`TraceSource::damage`]) and yields `None`, so scans read the rest.
    pub fn chunk(&self, index: usize, mask: ColumnMask) -> Option<EventBatch> {
        match self.reader.read_chunk(index, mask) {
            Ok(batch) => Some(batch),
            Err(error) => {
                if let Ok(mut damaged) = self.damaged.lock() {
                    damaged.insert(format!("{error} (chunk skipped)"));
                }
                None
            }
        }
    }

    /// Every readable chunk in file order (so each thread's events come in
    /// order), decoding a few ahead in parallel.
    pub fn chunks_in_order(
        self: &Arc<Self>,
        mask: ColumnMask,
    ) -> impl Iterator<Item = EventBatch> + Send + 'static {
        self.chunks_where(mask, |_| true)
    }

    /// The readable chunks whose statistics pass `keep`, in file order,
    /// decoding a few ahead in parallel.
    pub fn chunks_where(
        self: &Arc<Self>,
        mask: ColumnMask,
        keep: impl Fn(&ChunkStats) -> bool,
    ) -> impl Iterator<Item = EventBatch> + Send + 'static {
        const AHEAD: usize = 8;
        let trace = Arc::clone(self);
        let kept: Vec<usize> = (0..trace.reader.chunks().len())
            .filter(|&c| keep(&trace.reader.chunks()[c].stats))
            .collect();
        let windows: Vec<Vec<usize>> = kept.chunks(AHEAD).map(<[usize]>::to_vec).collect();
        windows.into_iter().flat_map(move |window| {
            let decoded: Vec<Option<EventBatch>> = window
                .into_par_iter()
                .map(|c| trace.chunk(c, mask))
                .collect();
            decoded.into_iter().flatten()
        })
    }

    /// What is unreadable in this trace: damage found while opening it, then
    /// chunks skipped by scans so far.
    pub fn damage(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .reader
            .damage()
            .iter()
            .map(ToString::to_string)
            .collect();
        if let Ok(damaged) = self.damaged.lock() {
            lines.extend(damaged.iter().cloned());
        }
        lines
    }
}

/// Source lines of the recorded files (stored in the trace), split once.
pub struct SourceLines<'t> {
    tables: &'t Tables,
    files: HashMap<u32, Option<Vec<String>>>,
}

impl<'t> SourceLines<'t> {
    pub fn new(tables: &'t Tables) -> SourceLines<'t> {
        SourceLines {
            tables,
            files: HashMap::new(),
        }
    }

    /// Every line of the file of code object `code`.
    pub fn lines(&mut self, code: u32) -> Option<&[String]> {
        let file = self.tables.code(code)?.file;
        let tables = self.tables;
        self.files
            .entry(file)
            .or_insert_with(|| {
                let text = tables.source(file)?.ok()?;
                Some(text.lines().map(str::to_string).collect())
            })
            .as_deref()
    }

    /// Line `line` (1-based) of the file of code object `code`.
    pub fn line(&mut self, code: u32, line: u32) -> Option<&str> {
        let index = (line as usize).checked_sub(1)?;
        self.lines(code)?.get(index).map(String::as_str)
    }
}
