//! Sinks: where rounds go.
//!
//! - [`parquet`]: the embedded default; canonical-schema Parquet files, rotated, atomic.
//! - [`influx`]: InfluxDB 2 (or anything speaking its write API), with an on-disk spool.

pub mod influx;
pub mod parquet;
