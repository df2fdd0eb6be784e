//! Keel collector.
#![warn(missing_docs)]
