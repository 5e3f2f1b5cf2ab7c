//! Errors of the format crate. Every variant carries the values a user needs
//! to understand it, and renders as one line.

use std::path::PathBuf;

/// What went wrong while reading or writing a trace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The file could not be opened, read or written.
    #[error("{path}: {}", describe_io(source))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes do not start with the chronolog magic.
    #[error("{path}: not a chronolog trace (bad magic bytes)")]
    NotATrace { path: PathBuf },
    /// The trace was written by a format version this reader cannot read.
    #[error(
        "{path}: written with trace format v{major}.{minor}; this chronolog reads v{}.x — upgrade chronolog",
        crate::FORMAT_MAJOR
    )]
    NewerVersion {
        path: PathBuf,
        major: u16,
        minor: u16,
    },
    /// The file ends before its header is complete.
    #[error("{path}: truncated trace: {what}")]
    Truncated { path: PathBuf, what: String },
    /// A structure in the file is inconsistent.
    #[error("{path}: corrupt trace at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The caller handed the writer data that breaks the format's rules.
    #[error("invalid event batch: {0}")]
    InvalidBatch(String),
    /// The background writer stopped earlier because of this error.
    #[error("trace writer stopped: {0}")]
    WriterStopped(String),
    /// An internal invariant broke: this is a bug in chronolog.
    #[error("internal error (a bug in chronolog, please report it): {0}")]
    Bug(String),
}

/// Result type of this crate.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// An I/O error as a user reads it: "No such file or directory", without
/// the "(os error 2)" suffix the standard library adds.
fn describe_io(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

impl FormatError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FormatError::Io {
            path: path.into(),
            source,
        }
    }
}
