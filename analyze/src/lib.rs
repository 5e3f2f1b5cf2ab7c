//! # chronolog-analyze
//!
//! Questions asked of recorded traces: the summary behind `chronolog info`,
//! the SQL tables (Arrow record batches decoded from the chunks, served to
//! DataFusion), and exports to Parquet, Arrow IPC and Perfetto. The crate has
//! no Python in it, so all of it is testable and benchmarkable on its own;
//! the bindings live in the recorder crate.

mod calls;
mod columns;
mod count;
pub mod export;
mod pass;
mod prune;
mod render;
pub mod replay;
mod scan;
mod session;
mod silenced;
mod small;
mod source;
mod summary;
pub mod timeline;

use std::fmt;

pub use render::{OutputFormat, render};
pub use session::{QueryResult, TABLES, TraceSet, describe};
pub use source::TraceSource;
pub use summary::{TraceSummary, summarize};

/// What went wrong, as the one line a user reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalyzeError {
    message: String,
}

impl AnalyzeError {
    pub fn new(message: impl Into<String>) -> AnalyzeError {
        AnalyzeError {
            message: message.into(),
        }
    }
}

impl fmt::Display for AnalyzeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AnalyzeError {}

impl From<chronolog_format::FormatError> for AnalyzeError {
    fn from(error: chronolog_format::FormatError) -> AnalyzeError {
        AnalyzeError::new(error.to_string())
    }
}
