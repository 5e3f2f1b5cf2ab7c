//! # chronolog-format
//!
//! The chronolog trace file: one append-only file holding a recorded Python
//! run as compressed columnar chunks, readable on any machine, after a crash
//! too. This crate has no Python in it; the recorder feeds it batches and the
//! analysis crate reads them back.
//!
//! The byte layout is specified in `format/SPEC.md`; the Cap'n Proto schema
//! of the envelopes is `schemas/trace.capnp`.
//!
//! ```
//! use chronolog_format::{Event, EventBatch, EventKind, HeaderInfo, TraceReader, TraceWriter, WriterOptions, ColumnMask};
//! # let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("run.clog");
//! let mut writer = TraceWriter::create(&path, &HeaderInfo::default(), WriterOptions::default())?;
//! let thread = writer.define_thread(Default::default());
//! let file = writer.define_string("app.py");
//! let name = writer.define_string("main");
//! let code = writer.define_code(chronolog_format::CodeInfo { file, qualname: name, name, first_line: 1 });
//! let mut batch = EventBatch::default();
//! batch.push_event(&Event { seq: 0, thread, code, kind: EventKind::Call as u8, line: 1, ..Event::default() });
//! writer.write_batch(batch)?;
//! writer.finish()?;
//!
//! let reader = TraceReader::open(&path)?;
//! assert_eq!(reader.event_count(), 1);
//! let chunk = reader.read_chunk(0, ColumnMask::ALL)?;
//! assert_eq!(reader.tables().string(reader.tables().code(chunk.code[0]).unwrap().qualname), Some("main"));
//! # Ok::<(), chronolog_format::FormatError>(())
//! ```

mod block;
mod chunk;
pub mod dump;
mod encoding;
pub mod entry;
mod error;
mod event;
mod float_repr;
mod footer;
pub mod generated;
mod header;
mod metadata;
mod reader;
mod recover;
pub mod synth;
mod writer;

pub use chunk::{ChunkStats, ColumnMask, MAX_CHUNK_ROWS};
pub use error::{FormatError, Result};
pub use event::{Checkpoint, Event, EventBatch, EventKind, RowBatch, Values, VarChange, VarRecord};
pub use float_repr::push_float_repr;
pub use footer::ChunkEntry;
pub use generated::trace_capnp::ColumnId;
pub use header::HeaderInfo;
pub use metadata::{CodeInfo, Tables, ThreadMeta};
pub use reader::{Damage, FooterStatus, TraceReader};
pub use recover::{CheckReport, check, repair};
pub use writer::{TraceWriter, WriteSummary, WriterOptions};

/// Major version of the format this crate writes and reads. A reader refuses
/// a file with a larger major version.
pub const FORMAT_MAJOR: u16 = 1;
/// Minor version this crate writes. Minor versions only add fields, columns
/// and kinds that older readers of the same major version skip.
pub const FORMAT_MINOR: u16 = 1;
