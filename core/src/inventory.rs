//! What the entities in a dataset are: VMs and hosts, their capacities and power models.
//!
//! An inventory travels with the samples (as JSON in the Parquet file's metadata, see
//! [`crate::schema::META_INVENTORY`]). VM-only traces carry VMs and no hosts; a scenario or a
//! placement supplies the hosts.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Unit of CPU capacity and demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CpuUnit {
    /// Million instructions per second (CloudSim's unit).
    #[default]
    Mips,
    /// Megahertz (Bitbrains, libvirt hosts).
    Mhz,
}

/// A VM's provisioned size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmSpec {
    /// Identifier, as in the samples' `vm_id`.
    pub id: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Capacity of one vCPU in the inventory's unit.
    pub cpu_per_vcpu: f64,
    /// Provisioned memory, MiB.
    pub mem_mib: f64,
    /// A type name where the source assigns one (e.g. CloudSim's four types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_type: Option<String>,
}

impl VmSpec {
    /// Total CPU capacity (vCPUs × per-vCPU capacity).
    pub fn cpu_capacity(&self) -> f64 {
        f64::from(self.vcpus) * self.cpu_per_vcpu
    }
}

/// Power draw at 0, 10, …, 100 % CPU load, linear in between (SPECpower style).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerModel {
    /// Watts at 0 %, 10 %, …, 100 % load.
    pub watts: [f64; 11],
}

impl PowerModel {
    /// Power in watts at utilisation `u` (clamped to 0..=1), interpolated linearly.
    pub fn power_at(&self, u: f64) -> f64 {
        let u = if u.is_nan() { 0.0 } else { u.clamp(0.0, 1.0) };
        let x = u * 10.0;
        // x is in 0..=10, so the floor fits an index.
        let lo = (x.floor() as usize).min(9);
        let frac = x - lo as f64;
        self.watts[lo] + (self.watts[lo + 1] - self.watts[lo]) * frac
    }
}

/// A physical host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSpec {
    /// Identifier, as in the samples' `host_id`.
    pub id: String,
    /// CPU cores.
    pub cores: u32,
    /// Capacity of one core in the inventory's unit.
    pub cpu_per_core: f64,
    /// Memory, MiB.
    pub mem_mib: f64,
    /// Network bandwidth, Mbit/s, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_mbit: Option<f64>,
    /// Power model, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<PowerModel>,
    /// A type name (e.g. `hp-proliant-ml110-g4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_type: Option<String>,
}

impl HostSpec {
    /// Total CPU capacity (cores × per-core capacity).
    pub fn cpu_capacity(&self) -> f64 {
        f64::from(self.cores) * self.cpu_per_core
    }
}

/// The entities of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Inventory {
    /// Unit of every CPU capacity and `cpu_demand` value.
    pub cpu_unit: CpuUnit,
    /// VMs, in the order the source lists them (for PlanetLab: sorted file names).
    #[serde(default)]
    pub vms: Vec<VmSpec>,
    /// Hosts, where the dataset has them.
    #[serde(default)]
    pub hosts: Vec<HostSpec>,
    /// Where the data came from (format and input), free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Inventory {
    /// Checks ids are unique and capacities positive and finite.
    ///
    /// # Errors
    /// [`Error::Inventory`] naming the first offending entity.
    pub fn validate(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for vm in &self.vms {
            if !seen.insert(("vm", vm.id.as_str())) {
                return Err(Error::Inventory(format!("duplicate vm id {:?}", vm.id)));
            }
            if vm.vcpus == 0 || !(vm.cpu_per_vcpu > 0.0 && vm.cpu_per_vcpu.is_finite()) {
                return Err(Error::Inventory(format!(
                    "vm {:?}: cpu capacity must be positive",
                    vm.id
                )));
            }
            if !(vm.mem_mib >= 0.0 && vm.mem_mib.is_finite()) {
                return Err(Error::Inventory(format!(
                    "vm {:?}: memory must be >= 0",
                    vm.id
                )));
            }
        }
        for h in &self.hosts {
            if !seen.insert(("host", h.id.as_str())) {
                return Err(Error::Inventory(format!("duplicate host id {:?}", h.id)));
            }
            if h.cores == 0 || !(h.cpu_per_core > 0.0 && h.cpu_per_core.is_finite()) {
                return Err(Error::Inventory(format!(
                    "host {:?}: cpu capacity must be positive",
                    h.id
                )));
            }
            if !(h.mem_mib > 0.0 && h.mem_mib.is_finite()) {
                return Err(Error::Inventory(format!(
                    "host {:?}: memory must be positive",
                    h.id
                )));
            }
        }
        Ok(())
    }

    /// Looks a VM up by id (linear; build a map for repeated look-ups).
    pub fn vm(&self, id: &str) -> Option<&VmSpec> {
        self.vms.iter().find(|v| v.id == id)
    }

    /// Looks a host up by id (linear; build a map for repeated look-ups).
    pub fn host(&self, id: &str) -> Option<&HostSpec> {
        self.hosts.iter().find(|h| h.id == id)
    }

    /// The inventory as JSON (for Parquet metadata).
    ///
    /// # Errors
    /// Never in practice; serde_json errors are passed on.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|source| Error::Json {
            what: "inventory".into(),
            source,
        })
    }

    /// Parses an inventory from JSON.
    ///
    /// # Errors
    /// [`Error::Json`] when the text is not an inventory.
    pub fn from_json(s: &str) -> Result<Self> {
        serde_json::from_str(s).map_err(|source| Error::Json {
            what: "inventory".into(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn power_interpolates_linearly_and_clamps() {
        let p = crate::catalog::hp_proliant_g4().power.unwrap();
        assert_relative_eq!(p.power_at(0.0), 86.0);
        assert_relative_eq!(p.power_at(1.0), 117.0);
        assert_relative_eq!(p.power_at(0.05), (86.0 + 89.4) / 2.0);
        assert_relative_eq!(p.power_at(2.0), 117.0);
        assert_relative_eq!(p.power_at(-1.0), 86.0);
        assert_relative_eq!(p.power_at(f64::NAN), 86.0);
    }

    #[test]
    fn validate_rejects_duplicates() {
        let mut inv = Inventory::default();
        inv.vms
            .push(crate::catalog::cloudsim_vm_type(0).spec("a".into()));
        inv.vms
            .push(crate::catalog::cloudsim_vm_type(1).spec("a".into()));
        let err = inv.validate().unwrap_err().to_string();
        assert!(err.contains("duplicate vm id"), "{err}");
    }

    #[test]
    fn json_round_trip() {
        let mut inv = Inventory {
            source: Some("test".into()),
            ..Default::default()
        };
        inv.hosts.push(crate::catalog::hp_proliant_g5("h1".into()));
        inv.vms
            .push(crate::catalog::cloudsim_vm_type(3).spec("v".into()));
        let back = Inventory::from_json(&inv.to_json().unwrap()).unwrap();
        assert_eq!(back, inv);
    }
}
