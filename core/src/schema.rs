//! The canonical sample schema: one long table of measurements.
//!
//! Each row is one measurement of one entity at one instant. A row with `vm_id` set describes a VM
//! (its `host_id` is the host it ran on, or null when the trace has no placement); a row with
//! `vm_id` null describes a host. Every metric column is nullable: a measurement the source did
//! not take is null, never zero.
//!
//! | column | type | unit |
//! |---|---|---|
//! | `ts` | timestamp (ms, UTC) | instant the sample describes |
//! | `host_id` | string, nullable | host identifier |
//! | `vm_id` | string, nullable | VM identifier (UUID where the source has one) |
//! | `cpu_util` | f64 | fraction of the entity's CPU capacity (0..1, may exceed 1 on overcommit) |
//! | `cpu_demand` | f64 | CPU demand in the inventory's [`CpuUnit`](crate::inventory::CpuUnit) (MIPS or MHz) |
//! | `mem_used_mib` | f64 | memory in use, MiB |
//! | `net_rx_kib_s`, `net_tx_kib_s` | f64 | network throughput, KiB/s |
//! | `disk_read_kib_s`, `disk_write_kib_s` | f64 | disk throughput, KiB/s |
//! | `cpu_steal`, `cpu_iowait` | f64 | fraction of CPU time (host: of all cores) |
//! | `cpu_delay` | f64 | VM: fraction of time its vCPUs waited for a host CPU |
//! | `psi_cpu_some`, `psi_mem_some`, `psi_mem_full`, `psi_io_some`, `psi_io_full` | f64 | pressure-stall `avg10` as a fraction (0..1) |
//!
//! On disk the table is Parquet (zstd) with two key-value metadata entries:
//! [`META_SCHEMA_VERSION`] and [`META_INVENTORY`] (the [`Inventory`](crate::inventory::Inventory) as JSON).

use serde::{Deserialize, Serialize};

/// Version of this schema. Bumped on any incompatible change to columns or units.
pub const SCHEMA_VERSION: u32 = 1;

/// Parquet key-value metadata key holding [`SCHEMA_VERSION`] as a decimal string.
pub const META_SCHEMA_VERSION: &str = "keel.schema_version";
/// Parquet key-value metadata key holding the inventory as JSON.
pub const META_INVENTORY: &str = "keel.inventory";

/// Column: timestamp, milliseconds since the Unix epoch, UTC.
pub const TS: &str = "ts";
/// Column: host id.
pub const HOST_ID: &str = "host_id";
/// Column: VM id.
pub const VM_ID: &str = "vm_id";
/// Column: CPU utilisation as a fraction of capacity.
pub const CPU_UTIL: &str = "cpu_util";
/// Column: CPU demand in MIPS or MHz.
pub const CPU_DEMAND: &str = "cpu_demand";
/// Column: memory used, MiB.
pub const MEM_USED_MIB: &str = "mem_used_mib";
/// Column: network received, KiB/s.
pub const NET_RX_KIB_S: &str = "net_rx_kib_s";
/// Column: network transmitted, KiB/s.
pub const NET_TX_KIB_S: &str = "net_tx_kib_s";
/// Column: disk read, KiB/s.
pub const DISK_READ_KIB_S: &str = "disk_read_kib_s";
/// Column: disk written, KiB/s.
pub const DISK_WRITE_KIB_S: &str = "disk_write_kib_s";
/// Column: CPU steal fraction.
pub const CPU_STEAL: &str = "cpu_steal";
/// Column: CPU iowait fraction.
pub const CPU_IOWAIT: &str = "cpu_iowait";
/// Column: vCPU delay fraction (VMs).
pub const CPU_DELAY: &str = "cpu_delay";
/// Column: CPU pressure, some.
pub const PSI_CPU_SOME: &str = "psi_cpu_some";
/// Column: memory pressure, some.
pub const PSI_MEM_SOME: &str = "psi_mem_some";
/// Column: memory pressure, full.
pub const PSI_MEM_FULL: &str = "psi_mem_full";
/// Column: I/O pressure, some.
pub const PSI_IO_SOME: &str = "psi_io_some";
/// Column: I/O pressure, full.
pub const PSI_IO_FULL: &str = "psi_io_full";

/// The metric columns, in on-disk order (after `ts`, `host_id`, `vm_id`).
pub const METRIC_COLUMNS: [&str; 15] = [
    CPU_UTIL,
    CPU_DEMAND,
    MEM_USED_MIB,
    NET_RX_KIB_S,
    NET_TX_KIB_S,
    DISK_READ_KIB_S,
    DISK_WRITE_KIB_S,
    CPU_STEAL,
    CPU_IOWAIT,
    CPU_DELAY,
    PSI_CPU_SOME,
    PSI_MEM_SOME,
    PSI_MEM_FULL,
    PSI_IO_SOME,
    PSI_IO_FULL,
];

/// The measured values of one sample; `None` is "not measured".
///
/// Field order matches [`METRIC_COLUMNS`]; [`Metrics::get`] and [`Metrics::set`] address them by index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)] // each field is the column of the same name, documented above
pub struct Metrics {
    pub cpu_util: Option<f64>,
    pub cpu_demand: Option<f64>,
    pub mem_used_mib: Option<f64>,
    pub net_rx_kib_s: Option<f64>,
    pub net_tx_kib_s: Option<f64>,
    pub disk_read_kib_s: Option<f64>,
    pub disk_write_kib_s: Option<f64>,
    pub cpu_steal: Option<f64>,
    pub cpu_iowait: Option<f64>,
    pub cpu_delay: Option<f64>,
    pub psi_cpu_some: Option<f64>,
    pub psi_mem_some: Option<f64>,
    pub psi_mem_full: Option<f64>,
    pub psi_io_some: Option<f64>,
    pub psi_io_full: Option<f64>,
}

impl Metrics {
    /// The value of metric column `i` (index into [`METRIC_COLUMNS`]).
    ///
    /// # Panics
    /// If `i >= METRIC_COLUMNS.len()`.
    pub fn get(&self, i: usize) -> Option<f64> {
        *self.slot(i)
    }

    /// Sets metric column `i` (index into [`METRIC_COLUMNS`]).
    ///
    /// # Panics
    /// If `i >= METRIC_COLUMNS.len()`.
    pub fn set(&mut self, i: usize, v: Option<f64>) {
        *self.slot_mut(i) = v;
    }

    fn slot(&self, i: usize) -> &Option<f64> {
        match i {
            0 => &self.cpu_util,
            1 => &self.cpu_demand,
            2 => &self.mem_used_mib,
            3 => &self.net_rx_kib_s,
            4 => &self.net_tx_kib_s,
            5 => &self.disk_read_kib_s,
            6 => &self.disk_write_kib_s,
            7 => &self.cpu_steal,
            8 => &self.cpu_iowait,
            9 => &self.cpu_delay,
            10 => &self.psi_cpu_some,
            11 => &self.psi_mem_some,
            12 => &self.psi_mem_full,
            13 => &self.psi_io_some,
            14 => &self.psi_io_full,
            _ => panic!("metric index {i} out of range"),
        }
    }

    fn slot_mut(&mut self, i: usize) -> &mut Option<f64> {
        match i {
            0 => &mut self.cpu_util,
            1 => &mut self.cpu_demand,
            2 => &mut self.mem_used_mib,
            3 => &mut self.net_rx_kib_s,
            4 => &mut self.net_tx_kib_s,
            5 => &mut self.disk_read_kib_s,
            6 => &mut self.disk_write_kib_s,
            7 => &mut self.cpu_steal,
            8 => &mut self.cpu_iowait,
            9 => &mut self.cpu_delay,
            10 => &mut self.psi_cpu_some,
            11 => &mut self.psi_mem_some,
            12 => &mut self.psi_mem_full,
            13 => &mut self.psi_io_some,
            14 => &mut self.psi_io_full,
            _ => panic!("metric index {i} out of range"),
        }
    }
}

/// One row of the canonical table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Milliseconds since the Unix epoch, UTC.
    pub ts_ms: i64,
    /// Host the sample belongs to (or the VM ran on); `None` when unknown.
    pub host_id: Option<String>,
    /// VM the sample describes; `None` for a host-level sample.
    pub vm_id: Option<String>,
    /// The measurements.
    pub metrics: Metrics,
}

impl Sample {
    /// Index of a metric column by name, if it is one.
    pub fn metric_index(name: &str) -> Option<usize> {
        METRIC_COLUMNS.iter().position(|c| *c == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_slots_address_each_field_once() {
        let mut m = Metrics::default();
        for i in 0..METRIC_COLUMNS.len() {
            m.set(i, Some(i as f64));
        }
        for i in 0..METRIC_COLUMNS.len() {
            assert_eq!(m.get(i), Some(i as f64));
        }
        assert_eq!(m.cpu_util, Some(0.0));
        assert_eq!(m.psi_io_full, Some(14.0));
        assert_eq!(Sample::metric_index(MEM_USED_MIB), Some(2));
        assert_eq!(Sample::metric_index("nope"), None);
    }
}
