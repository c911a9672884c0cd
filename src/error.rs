//! The library's error type: every failure a user can cause names the file or value at fault.

use std::path::PathBuf;

/// Errors returned by the library. The CLI wraps them with `anyhow` context.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be opened or read.
    #[error("cannot read {path}: {cause}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying I/O error (in the message, so not repeated as a source).
        cause: std::io::Error,
    },
    /// A data file has the wrong structure (bad magic number, truncated, shape mismatch...).
    #[error("{path}: {message}")]
    Format {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A checkpoint does not match the model it is loaded into.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    /// Training produced a non-finite loss or parameter.
    #[error("non-finite value at step {step}: {what}")]
    NonFinite {
        /// The optimizer step at which it happened.
        step: u64,
        /// Which quantity went bad.
        what: String,
    },
}

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause: source,
        }
    }

    /// Builds an [`Error::Format`] for `path`.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
