//! Sources: where measurements come from.
//!
//! Each source is polled once per round with the round's timestamp and the monotonic time since
//! the previous round, and appends canonical [`Sample`]s (the rows the Parquet sink writes and the
//! trainer reads) plus [`Detail`] points (per-interface, per-device and per-mode breakdowns that
//! only the InfluxDB sink carries, as tags and fields).
//!
//! - [`host`]: the host itself, from procfs (`/proc/stat`, `meminfo`, `loadavg`, `net/dev`,
//!   `diskstats`, `pressure/*`).
//! - [`cgroup`]: VMs discovered from the cgroup tree (v1 and v2 layouts), where libvirt is absent.
//! - [`libvirt`]: VMs from libvirt, identified by UUID, through the `keel-collector-libvirt`
//!   helper process (the collector itself does not link libvirt; feature `libvirt` builds the
//!   helper).

pub mod cgroup;
pub mod host;
pub mod libvirt;

use keel_core::schema::Sample;

/// One breakdown point for the InfluxDB sink: `measurement,tags fields ts`.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    /// Measurement name (a `snake_case` constant, e.g. `host_netdev`; see [`crate::series`]).
    pub measurement: &'static str,
    /// Tag pairs (e.g. `interface=eth0`).
    pub tags: Vec<(&'static str, String)>,
    /// Numeric fields; non-finite values are skipped by the encoder.
    pub fields: Vec<(&'static str, f64)>,
}

/// What one round produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Round {
    /// Round timestamp, ms since the Unix epoch (one wall-clock read per round).
    pub ts_ms: i64,
    /// Canonical rows: one per host and one per VM.
    pub samples: Vec<Sample>,
    /// Breakdown points (InfluxDB only).
    pub details: Vec<Detail>,
}

/// The outcome of polling a source.
pub type SourceResult = Result<(), crate::Error>;
