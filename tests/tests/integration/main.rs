//! End-to-end tests across Keel's binaries. Each module is one area.

mod collector;
mod trainer_import;
