//! The catalogue of everything the collector writes to InfluxDB: every measurement, its tags and
//! its fields, and the series names they become in Prometheus-style stores.
//!
//! InfluxDB 2 keeps `(measurement, field)` pairs apart by construction; VictoriaMetrics (and
//! Prometheus' InfluxDB ingestion) flattens them into one metric name, `{measurement}_{field}`,
//! with the tags as labels. Two rules keep that flattening exact, as node_exporter and Telegraf
//! do:
//! - no two `(measurement, field)` pairs flatten to the same name (a series must never hold two
//!   different quantities' samples);
//! - per-device and per-interface series have names of their own (`host_netdev_*`,
//!   `host_blockdev_*`), distinct from the host totals (`host_net_*`, `host_disk_*`), so summing
//!   a metric over all its series never counts a total together with its parts.
//!
//! The canonical measurements `host` and `vm` carry the canonical schema's column names as fields
//! (the importer reads them back into the schema); every other measurement is a breakdown or the
//! collector's self-metrics. The tests below check the rules over this catalogue, check that the
//! sources emit nothing outside it, and that the README's table lists every name.

use keel_core::schema::METRIC_COLUMNS;

/// Measurement of canonical host rows.
pub const M_HOST: &str = "host";
/// Measurement of canonical VM rows.
pub const M_VM: &str = "vm";
/// Measurement of the per-mode CPU breakdown (fraction of all CPU time in each mode).
pub const M_HOST_CPU_MODE: &str = "host_cpu_mode";
/// Measurement of load averages and memory detail.
pub const M_HOST_SYSTEM: &str = "host_system";
/// Measurement of per-interface network rates (tag `interface`).
pub const M_HOST_NETDEV: &str = "host_netdev";
/// Measurement of per-device disk rates (tag `device`).
pub const M_HOST_BLOCKDEV: &str = "host_blockdev";
/// Measurement of libvirt VM detail.
pub const M_VM_LIBVIRT: &str = "vm_libvirt";
/// Measurement of cgroup-discovered VM detail.
pub const M_VM_CGROUP: &str = "vm_cgroup";
/// Measurement of the collector's own counters.
pub const M_SELF: &str = "keel_collector";

/// The CPU modes of `/proc/stat` we account, in order (`guest` time is already inside `user`):
/// the fields of [`M_HOST_CPU_MODE`].
pub const CPU_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];
/// Fields of [`M_HOST_SYSTEM`].
pub const SYSTEM_FIELDS: [&str; 5] = [
    "mem_total_mib",
    "mem_available_mib",
    "load1",
    "load5",
    "load15",
];
/// Fields of [`M_HOST_NETDEV`].
pub const NETDEV_FIELDS: [&str; 2] = ["rx_kib_s", "tx_kib_s"];
/// Fields of [`M_HOST_BLOCKDEV`].
pub const BLOCKDEV_FIELDS: [&str; 2] = ["read_kib_s", "write_kib_s"];
/// Fields of [`M_VM_LIBVIRT`].
pub const LIBVIRT_FIELDS: [&str; 7] = [
    "vcpus",
    "memory_mib",
    "max_memory_mib",
    "balloon_mib",
    "rss_mib",
    "cpu_cores",
    "vcpu_delay_cores",
];
/// Fields of [`M_VM_CGROUP`].
pub const CGROUP_FIELDS: [&str; 1] = ["cpu_cores"];

/// One measurement: its name, tag keys and field names.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    /// Measurement name.
    pub name: &'static str,
    /// Tag keys (the labels in a Prometheus-style store).
    pub tags: &'static [&'static str],
    /// Field names.
    pub fields: &'static [&'static str],
    /// What one point is.
    pub doc: &'static str,
}

/// Every measurement the collector writes.
pub fn catalogue() -> [Measurement; 9] {
    [
        Measurement {
            name: M_HOST,
            tags: &["host"],
            fields: &METRIC_COLUMNS,
            doc: "canonical host row (totals)",
        },
        Measurement {
            name: M_VM,
            tags: &["host", "vm"],
            fields: &METRIC_COLUMNS,
            doc: "canonical VM row",
        },
        Measurement {
            name: M_HOST_CPU_MODE,
            tags: &["host"],
            fields: &CPU_MODES,
            doc: "fraction of all CPU time in each mode",
        },
        Measurement {
            name: M_HOST_SYSTEM,
            tags: &["host"],
            fields: &SYSTEM_FIELDS,
            doc: "memory detail and load averages",
        },
        Measurement {
            name: M_HOST_NETDEV,
            tags: &["host", "interface"],
            fields: &NETDEV_FIELDS,
            doc: "one network interface (lo left out)",
        },
        Measurement {
            name: M_HOST_BLOCKDEV,
            tags: &["host", "device"],
            fields: &BLOCKDEV_FIELDS,
            doc: "one whole block device",
        },
        Measurement {
            name: M_VM_LIBVIRT,
            tags: &["host", "vm", "vm_name"],
            fields: &LIBVIRT_FIELDS,
            doc: "libvirt detail of one VM",
        },
        Measurement {
            name: M_VM_CGROUP,
            tags: &["host", "vm", "vm_name"],
            fields: &CGROUP_FIELDS,
            doc: "cgroup detail of one VM",
        },
        Measurement {
            name: M_SELF,
            tags: &["host"],
            fields: &crate::internal_events::COUNTER_NAMES,
            doc: "the collector's counters since start",
        },
    ]
}

/// The name a Prometheus-style store (VictoriaMetrics) gives a field of a measurement.
pub fn flat_name(measurement: &str, field: &str) -> String {
    format!("{measurement}_{field}")
}

/// Every flattened series name, with its measurement and field, in catalogue order.
pub fn flat_names() -> Vec<(String, &'static str, &'static str)> {
    catalogue()
        .iter()
        .flat_map(|m| {
            m.fields
                .iter()
                .map(move |f| (flat_name(m.name, f), m.name, *f))
        })
        .collect()
}

/// Whether `(measurement, field)` is in the catalogue.
pub fn is_known(measurement: &str, field: &str) -> bool {
    catalogue()
        .iter()
        .any(|m| m.name == measurement && m.fields.contains(&field))
}

/// Checks every point of a round against the catalogue: the measurement, its tag keys and its
/// fields. Returns the first point that is not in it.
///
/// # Errors
/// A description of the first unknown measurement, tag or field.
pub fn check_round(r: &crate::sources::Round) -> Result<(), String> {
    let cat = catalogue();
    for d in &r.details {
        let m = cat
            .iter()
            .find(|m| m.name == d.measurement)
            .ok_or_else(|| format!("unknown measurement {}", d.measurement))?;
        for (k, _) in &d.tags {
            if !m.tags.contains(k) {
                return Err(format!("{}: unknown tag {k}", d.measurement));
            }
        }
        for (f, _) in &d.fields {
            if !m.fields.contains(f) {
                return Err(format!("{}: unknown field {f}", d.measurement));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn flattened_names_are_unique() {
        let mut seen: BTreeMap<String, (&str, &str)> = BTreeMap::new();
        for (name, m, f) in flat_names() {
            if let Some((m0, f0)) = seen.insert(name.clone(), (m, f)) {
                panic!("{m0}.{f0} and {m}.{f} both become {name}");
            }
        }
        // Every measurement × field is counted once.
        let total: usize = catalogue().iter().map(|m| m.fields.len()).sum();
        assert_eq!(seen.len(), total);
        // InfluxDB 2 keys are (measurement, field): unique measurement names and unique fields
        // within each.
        let mut ms: Vec<&str> = catalogue().iter().map(|m| m.name).collect();
        ms.sort_unstable();
        ms.dedup();
        assert_eq!(ms.len(), catalogue().len());
        for m in catalogue() {
            let mut f = m.fields.to_vec();
            f.sort_unstable();
            f.dedup();
            assert_eq!(f.len(), m.fields.len(), "{}", m.name);
        }
    }

    #[test]
    fn the_collisions_that_used_to_happen_do_not() {
        let names: Vec<String> = flat_names().into_iter().map(|(n, _, _)| n).collect();
        for total in [
            "host_cpu_steal",
            "host_cpu_iowait",
            "host_net_rx_kib_s",
            "host_net_tx_kib_s",
            "host_disk_read_kib_s",
            "host_disk_write_kib_s",
        ] {
            assert_eq!(names.iter().filter(|n| *n == total).count(), 1, "{total}");
        }
        assert!(names.contains(&"host_cpu_mode_steal".to_owned()));
        assert!(names.contains(&"host_netdev_rx_kib_s".to_owned()));
        assert!(names.contains(&"host_blockdev_write_kib_s".to_owned()));
    }

    /// A per-device or per-interface measurement (a tag the canonical row does not have) never
    /// shares a name prefix with the canonical measurements' fields, so no future canonical
    /// column can collide with it either.
    #[test]
    fn breakdown_names_are_not_prefixes_of_canonical_names() {
        for m in catalogue() {
            for canon in [M_HOST, M_VM] {
                if m.name == canon {
                    continue;
                }
                for col in METRIC_COLUMNS {
                    let full = flat_name(canon, col);
                    assert!(
                        !full.starts_with(&format!("{}_", m.name)),
                        "{} is a prefix of {full}",
                        m.name
                    );
                }
            }
        }
    }

    #[test]
    fn readme_lists_every_series() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        for (name, m, _) in flat_names() {
            // The canonical rows are listed as `host_<column>` / `vm_<column>` patterns.
            if m == M_HOST || m == M_VM {
                continue;
            }
            assert!(
                readme.contains(&format!("`{name}`")),
                "README.md does not list {name}"
            );
        }
        assert!(readme.contains("`host_<column>`") && readme.contains("`vm_<column>`"));
    }
}
