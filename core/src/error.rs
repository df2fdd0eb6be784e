//! Errors of `keel-core`.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading or checking Keel's shared data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file's content does not match the canonical schema.
    #[error("{path}: {message}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the column or field.
        message: String,
    },
    /// The file was written by a newer (or unknown) schema version.
    #[error("{path}: schema version {found} is not supported (this build reads {supported})")]
    Version {
        /// The file.
        path: PathBuf,
        /// Version found in the file.
        found: String,
        /// Version this build reads.
        supported: u32,
    },
    /// An inventory is inconsistent.
    #[error("inventory: {0}")]
    Inventory(String),
    /// A Parquet or Arrow error on a named file.
    #[error("{path}: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The underlying message.
        message: String,
    },
    /// A JSON error in an embedded document.
    #[error("{what}: {source}")]
    Json {
        /// What was being decoded.
        what: String,
        /// The cause.
        source: serde_json::Error,
    },
}
