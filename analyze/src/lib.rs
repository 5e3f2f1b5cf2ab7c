//! # chronolog-analyze
//!
//! Questions asked of a recorded trace. Today: the summary behind
//! `chronolog info`. The SQL tables (Arrow + DataFusion), the silenced
//! exception analysis, variable history, replay and exports arrive here too;
//! this crate stays free of Python so all of it is testable and benchmarkable
//! on its own.

mod summary;

pub use summary::{TraceSummary, summarize};
