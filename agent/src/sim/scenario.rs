//! The simulated data centre: hosts, VM network share, interval, duration and migration cost.
//!
//! `cloudsim-planetlab` is CloudSim's PlanetLab scenario (Beloglazov & Buyya, CCPE 2012): 800 hosts
//! alternating HP ProLiant ML110 G4/G5, 1 Gbit/s each, VMs taking 100 Mbit/s, a 300 s interval,
//! one day. Any other data centre is described in a TOML file:
//!
//! ```toml
//! name = "lab"
//! interval_s = 300          # optional, default 300
//! duration_s = 86400        # optional, default: the dataset's length
//! vm_bw_mbit = 100          # optional, default 100
//! [[hosts]]
//! count = 4
//! cores = 8
//! cpu_per_core = 2600       # in the dataset's CPU unit (MIPS or MHz)
//! mem_mib = 65536
//! bandwidth_mbit = 10000
//! power_watts = [60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160]
//! ```

use std::path::Path;

use anyhow::{bail, Context};
use keel_core::catalog;
use keel_core::inventory::{HostSpec, PowerModel};
use serde::Deserialize;

/// Name of CloudSim's PlanetLab scenario.
pub const CLOUDSIM_PLANETLAB: &str = "cloudsim-planetlab";

/// A data centre and the simulation's clock settings.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Name shown in reports.
    pub name: String,
    /// The hosts, in index order (placement scans them in this order).
    pub hosts: Vec<HostSpec>,
    /// Scheduling interval, seconds.
    pub interval_s: f64,
    /// Simulated time, seconds (`None`: the dataset's length).
    pub duration_s: Option<f64>,
    /// Offset of the interval events: CloudSim's datacenter events fall at `k·interval + 0.1`.
    pub offset_s: f64,
    /// Network bandwidth each VM reserves at creation, Mbit/s.
    pub vm_bw_mbit: f64,
    /// Fraction of a host's bandwidth used for migration (CloudSim: half).
    pub migration_bw_fraction: f64,
}

impl Scenario {
    /// CloudSim's PlanetLab data centre with `hosts` hosts (800 in the paper).
    pub fn cloudsim_planetlab(hosts: usize) -> Self {
        Self {
            name: CLOUDSIM_PLANETLAB.into(),
            hosts: catalog::cloudsim_hosts(hosts),
            interval_s: 300.0,
            duration_s: Some(86_400.0),
            offset_s: 0.1,
            vm_bw_mbit: 100.0,
            migration_bw_fraction: 0.5,
        }
    }

    /// Resolves `--scenario`: the built-in name or a TOML file.
    ///
    /// # Errors
    /// Unknown name and unreadable or invalid file, naming the file and field.
    pub fn resolve(name_or_path: &str, scale: usize) -> anyhow::Result<Self> {
        if name_or_path == CLOUDSIM_PLANETLAB {
            return Ok(Self::cloudsim_planetlab(800 * scale.max(1)));
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            bail!("unknown scenario {name_or_path:?}: not {CLOUDSIM_PLANETLAB:?} and no such file");
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario file {}", path.display()))?;
        let mut s = Self::from_toml(&text)
            .with_context(|| format!("parsing scenario file {}", path.display()))?;
        if scale > 1 {
            let base = s.hosts.clone();
            s.hosts = (0..scale)
                .flat_map(|k| {
                    base.iter().map(move |h| HostSpec {
                        id: format!("{}-x{k}", h.id),
                        ..h.clone()
                    })
                })
                .collect();
        }
        Ok(s)
    }

    /// Parses a TOML scenario (see the module docs).
    ///
    /// # Errors
    /// TOML syntax, unknown fields, and invalid values (non-positive capacities, power tables
    /// that are not 11 finite non-decreasing watts).
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let f: FileScenario = toml::from_str(text)?;
        let mut hosts = Vec::new();
        for (g, group) in f.hosts.iter().enumerate() {
            let watts: [f64; 11] = group.power_watts.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!(
                    "hosts[{g}].power_watts: need 11 values (0 %, 10 %, …, 100 %), got {}",
                    group.power_watts.len()
                )
            })?;
            if watts.iter().any(|w| !w.is_finite() || *w < 0.0)
                || watts.windows(2).any(|w| w[1] < w[0])
            {
                bail!("hosts[{g}].power_watts: must be finite, >= 0 and non-decreasing");
            }
            if !positive(group.cpu_per_core) || group.cores == 0 || !positive(group.mem_mib) {
                bail!("hosts[{g}]: cores, cpu_per_core and mem_mib must be positive");
            }
            for i in 0..group.count {
                hosts.push(HostSpec {
                    id: format!("{}-{i:04}", group.name.as_deref().unwrap_or("host")),
                    cores: group.cores,
                    cpu_per_core: group.cpu_per_core,
                    mem_mib: group.mem_mib,
                    bandwidth_mbit: Some(group.bandwidth_mbit.unwrap_or(1000.0)),
                    power: Some(PowerModel { watts }),
                    host_type: group.name.clone(),
                });
            }
        }
        if hosts.is_empty() {
            bail!("no hosts: add at least one [[hosts]] group with count > 0");
        }
        let interval_s = f.interval_s.unwrap_or(300.0);
        if !positive(interval_s) {
            bail!("interval_s must be positive");
        }
        Ok(Self {
            name: f.name.unwrap_or_else(|| "custom".into()),
            hosts,
            interval_s,
            duration_s: f.duration_s,
            offset_s: f.offset_s.unwrap_or(0.0),
            vm_bw_mbit: f.vm_bw_mbit.unwrap_or(100.0),
            migration_bw_fraction: 0.5,
        })
    }
}

fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileScenario {
    name: Option<String>,
    interval_s: Option<f64>,
    duration_s: Option<f64>,
    offset_s: Option<f64>,
    vm_bw_mbit: Option<f64>,
    hosts: Vec<FileHostGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHostGroup {
    name: Option<String>,
    count: usize,
    cores: u32,
    cpu_per_core: f64,
    mem_mib: f64,
    bandwidth_mbit: Option<f64>,
    power_watts: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudsim_scenario_is_800_alternating_hosts() {
        let s = Scenario::cloudsim_planetlab(800);
        assert_eq!(s.hosts.len(), 800);
        assert_eq!(s.hosts[0].cpu_capacity(), 3720.0);
        assert_eq!(s.hosts[799].cpu_capacity(), 5320.0);
    }

    #[test]
    fn toml_scenario_parses_and_validates() {
        let s = Scenario::from_toml(
            "name = \"lab\"\n[[hosts]]\ncount = 3\ncores = 4\ncpu_per_core = 1000\nmem_mib = 8192\n\
             power_watts = [1,2,3,4,5,6,7,8,9,10,11]\n",
        )
        .unwrap();
        assert_eq!(s.hosts.len(), 3);
        assert_eq!(s.interval_s, 300.0);
        let err = Scenario::from_toml(
            "[[hosts]]\ncount = 1\ncores = 4\ncpu_per_core = 1000\nmem_mib = 8192\npower_watts = [1,2]\n",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("power_watts"), "{err:#}");
        assert!(Scenario::from_toml("bogus = 1\nhosts = []").is_err());
    }
}
