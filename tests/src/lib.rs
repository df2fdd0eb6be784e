//! Harness for Keel's end-to-end tests: fixtures and real servers started on loopback.
#![warn(missing_docs)]
