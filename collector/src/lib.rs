//! Keel collector: samples host and VM metrics every interval and writes them, without loss, to
//! canonical-schema Parquet files (the embedded default) and to InfluxDB 2.
//!
//! A round takes one wall-clock timestamp, polls every source (monotonic time between rounds
//! gives the rates), writes the canonical rows to the Parquet sink (with a write-ahead log) and
//! appends line protocol to the InfluxDB sink's on-disk spool, which keeps whatever the database
//! has not acknowledged.
//!
//! Layout:
//! - [`config`]: file < env < flags, resolved into [`config::Settings`]; the `Secret` newtype.
//! - [`sources`]: `host` (procfs), `cgroup` (VM discovery), `libvirt` (through the
//!   `keel-collector-libvirt` helper process, which alone links libvirt).
//! - [`rate`]: counters to rates (monotonic clamps, resets).
//! - [`sinks`]: `parquet` and `influx` (`config`, `encode`, `service`, `spool`).
//! - [`series`]: every measurement, tag and field written to InfluxDB, and the flattened
//!   series names of Prometheus-style stores.
//! - [`internal_events`]: self-metrics and the events that move them.
//! - [`run`]: the round loop, alignment, shutdown.
//! - [`error`]: the library's error type.
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod internal_events;
pub mod rate;
pub mod run;
pub mod series;
pub mod sinks;
pub mod sources;

pub use error::{Error, Result};
