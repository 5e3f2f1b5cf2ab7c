//! Query answers as text: an aligned table for people, CSV and JSON for
//! other programs.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;

use crate::{AnalyzeError, QueryResult};

/// How `chronolog sql` prints an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns with a header box.
    Table,
    /// RFC 4180 CSV with a header line.
    Csv,
    /// One JSON array of objects (nulls kept as `null`).
    Json,
}

impl OutputFormat {
    /// Parses `table`, `csv` or `json`.
    pub fn parse(name: &str) -> Option<OutputFormat> {
        match name {
            "table" => Some(OutputFormat::Table),
            "csv" => Some(OutputFormat::Csv),
            "json" => Some(OutputFormat::Json),
            _ => None,
        }
    }
}

/// Writes `result` to `out` in `format`.
pub fn render(
    result: &QueryResult,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), AnalyzeError> {
    let failed =
        |e: &dyn std::fmt::Display| AnalyzeError::new(format!("cannot write the answer: {e}"));
    let batches: Vec<RecordBatch> = result
        .batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .cloned()
        .collect();
    match format {
        OutputFormat::Table => {
            let text = if batches.is_empty() {
                pretty_format_batches(&[RecordBatch::new_empty(result.schema.clone())])
            } else {
                pretty_format_batches(&batches)
            }
            .map_err(|e| failed(&e))?;
            writeln!(out, "{text}").map_err(|e| failed(&e))?;
            let rows = result.num_rows();
            writeln!(out, "({rows} row{})", if rows == 1 { "" } else { "s" })
                .map_err(|e| failed(&e))?;
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            if batches.is_empty() {
                writer
                    .write(&RecordBatch::new_empty(result.schema.clone()))
                    .map_err(|e| failed(&e))?;
            }
            for batch in &batches {
                writer.write(batch).map_err(|e| failed(&e))?;
            }
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(&mut *out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs).map_err(|e| failed(&e))?;
            writer.finish().map_err(|e| failed(&e))?;
            writeln!(out).map_err(|e| failed(&e))?;
        }
    }
    Ok(())
}
