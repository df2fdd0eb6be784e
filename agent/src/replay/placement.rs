//! A replay's small scenario written for `keel-agent cluster` (`replay --export-placement FILE`,
//! `cluster --placement FILE`), so that a fleet of real agents and the replay run the same thing:
//! the same hosts (capacity and power curve), the same VMs on the same hosts at the start (the Keel
//! policies' initial placement, CloudSim's PABFD), the same span of the trace and the same
//! thresholds. Both then report migrations and energy, the cluster with [`energy_kwh`], the
//! engine's power rule over the same per-step samples.
//!
//! What the file cannot make equal, and why a cluster run lands near, not on, the replay: the
//! replay ticks every agent at once per interval and lets the round settle over an exact discovery
//! view; real agents tick on their own timers, see peers through gossip, and their migrations are
//! instant (the replay's take `RAM / bandwidth` seconds, with CloudSim's 10 % overhead).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::sim::engine::Engine;
use crate::sim::{Policy, Scenario, Workload};

/// The format tag written in every file.
pub const FORMAT: &str = "keel-placement/1";

/// A host of the scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacedHost {
    /// Agent id (`h00`, `h01`, … in the scenario's host order).
    pub id: String,
    /// CPU capacity (the dataset's unit, MIPS for PlanetLab).
    pub capacity: f64,
    /// Power at 0 %, 10 %, …, 100 % utilisation, watts.
    pub power_watts: [f64; 11],
}

/// A VM and the host it starts on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacedVm {
    /// VM id, as in the dataset.
    pub id: String,
    /// Host id it starts on.
    pub host: String,
    /// CPU capacity (demand = utilisation × capacity).
    pub capacity: f64,
}

/// The small scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// [`FORMAT`].
    pub format: String,
    /// The dataset the VMs' traces come from.
    pub dataset: String,
    /// The replay's scenario name.
    pub scenario: String,
    /// The policy whose initial placement this is.
    pub policy: String,
    /// Seconds per step of the trace.
    pub interval_s: f64,
    /// Time of the replay's interval updates: `offset_s + k · interval_s` (the trace is read there,
    /// interpolated between samples as CloudSim does).
    pub offset_s: f64,
    /// Steps run: the replay's interval updates 1..=steps.
    pub steps: usize,
    /// Overloaded above this utilisation.
    pub high: f64,
    /// Underloaded below this utilisation.
    pub low: f64,
    /// Utilisation a host may reach by accepting a VM.
    pub accept_below: f64,
    /// Hosts, in the scenario's order.
    pub hosts: Vec<PlacedHost>,
    /// VMs, in the workload's order.
    pub vms: Vec<PlacedVm>,
}

/// The agent id of the scenario's host `h` (as `keel-agent cluster` names its agents).
pub fn host_id(h: usize) -> String {
    format!("h{h:02}")
}

impl Placement {
    /// The initial placement `policy` makes of `wl` on `sc`, with the run's span and thresholds.
    ///
    /// # Errors
    /// A VM no host can take.
    pub fn build(
        sc: &Scenario,
        wl: &Workload,
        policy: &mut dyn Policy,
        steps: usize,
        thresholds: (f64, f64, f64),
        dataset: &Path,
    ) -> anyhow::Result<Self> {
        let mut e = Engine::new(sc, wl);
        e.place_all(policy)?;
        let hosts = sc
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| PlacedHost {
                id: host_id(i),
                capacity: h.cpu_capacity(),
                power_watts: h.power.as_ref().map_or([0.0; 11], |p| p.watts),
            })
            .collect();
        let mut vms = Vec::with_capacity(e.vms.len());
        for (v, spec) in wl.inventory.vms.iter().enumerate() {
            let Some(h) = e.vms[v].table else {
                bail!("VM {:?} was not placed", spec.id);
            };
            vms.push(PlacedVm {
                id: spec.id.clone(),
                host: host_id(h as usize),
                capacity: spec.cpu_capacity(),
            });
        }
        Ok(Self {
            format: FORMAT.into(),
            dataset: dataset.display().to_string(),
            scenario: sc.name.clone(),
            policy: policy.name(),
            interval_s: sc.interval_s,
            offset_s: sc.offset_s,
            steps,
            high: thresholds.0,
            low: thresholds.1,
            accept_below: thresholds.2,
            hosts,
            vms,
        })
    }

    /// Reads and checks a file.
    ///
    /// # Errors
    /// Unreadable file, bad JSON (with line and column), another format, or values that do not
    /// hold together (naming the field).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading placement {}", path.display()))?;
        let p: Self = serde_json::from_str(&text)
            .with_context(|| format!("parsing placement {}", path.display()))?;
        p.check()
            .with_context(|| format!("placement {}", path.display()))?;
        Ok(p)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.format != FORMAT {
            bail!("format: {:?}, expected {FORMAT:?}", self.format);
        }
        if !(self.interval_s.is_finite() && self.interval_s > 0.0) {
            bail!("interval_s: must be positive");
        }
        if self.steps == 0 {
            bail!("steps: must be at least 1");
        }
        for (name, x) in [
            ("high", self.high),
            ("low", self.low),
            ("accept_below", self.accept_below),
        ] {
            if !(0.0..=1.0).contains(&x) {
                bail!("{name}: must be in 0..=1, got {x}");
            }
        }
        if self.hosts.len() < 2 {
            bail!("hosts: need at least 2");
        }
        for (i, h) in self.hosts.iter().enumerate() {
            if !(h.capacity.is_finite() && h.capacity > 0.0) {
                bail!("hosts[{i}].capacity: must be positive");
            }
            if h.power_watts.iter().any(|w| !w.is_finite() || *w < 0.0) {
                bail!("hosts[{i}].power_watts: must be finite and >= 0");
            }
        }
        for (i, v) in self.vms.iter().enumerate() {
            if !self.hosts.iter().any(|h| h.id == v.host) {
                bail!("vms[{i}].host: {:?} is not among the hosts", v.host);
            }
            if !(v.capacity.is_finite() && v.capacity > 0.0) {
                bail!("vms[{i}].capacity: must be positive");
            }
        }
        Ok(())
    }

    /// Each VM's CPU demand at the replay's interval updates 1..=steps, as the engine reads it
    /// (utilisation interpolated at `offset_s + k · interval_s`, × capacity), with CloudSim's
    /// rule that a VM whose demand drops to 0 has finished (0 from then on).
    ///
    /// # Errors
    /// An unreadable dataset, a VM it lacks, or a trace shorter than the steps.
    pub fn demands(&self, dataset: &Path) -> anyhow::Result<HashMap<String, Vec<f64>>> {
        let wl = Workload::from_parquet(dataset)?;
        let index: HashMap<&str, usize> = wl
            .inventory
            .vms
            .iter()
            .enumerate()
            .map(|(i, v)| (v.id.as_str(), i))
            .collect();
        let last = self.offset_s + self.steps as f64 * self.interval_s;
        if last > wl.duration_s() {
            bail!(
                "{}: {} steps of {} s need {last} s of trace, it has {} s",
                dataset.display(),
                self.steps,
                self.interval_s,
                wl.duration_s()
            );
        }
        let mut out = HashMap::new();
        for (i, vm) in self.vms.iter().enumerate() {
            let Some(&v) = index.get(vm.id.as_str()) else {
                bail!("vms[{i}]: {:?} is not in {}", vm.id, dataset.display());
            };
            let mut finished = false;
            let d: Vec<f64> = (1..=self.steps)
                .map(|k| {
                    let t = self.offset_s + k as f64 * self.interval_s;
                    let d = wl.cpu_at(v, t) * vm.capacity;
                    finished |= d == 0.0;
                    if finished {
                        0.0
                    } else {
                        d
                    }
                })
                .collect();
            out.insert(vm.id.clone(), d);
        }
        Ok(out)
    }

    /// Writes the file atomically.
    ///
    /// # Errors
    /// Writing.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        super::output::write_atomic(path, text.as_bytes())
            .with_context(|| format!("writing placement {}", path.display()))
    }
}

/// Energy in kWh by the engine's rule, from per-step host utilisations (`utils[k][h]`, one row
/// per interval update, `step_s` apart): between two updates a host adds the trapezoid of its
/// power at the previous and the current utilisation, and nothing when its previous utilisation
/// was 0 (an empty host is off). Utilisation is capped at 1 (CloudSim lets 1.0..1.01 through as 1).
pub fn energy_kwh(power: &[[f64; 11]], utils: &[Vec<f64>], step_s: f64) -> f64 {
    let p = |watts: &[f64; 11], u: f64| {
        let u = if u > 1.0 && u < 1.01 { 1.0 } else { u.min(1.0) };
        keel_core::inventory::PowerModel { watts: *watts }.power_at(u)
    };
    let mut ws = 0.0;
    for w in utils.windows(2) {
        for ((watts, &from), &to) in power.iter().zip(&w[0]).zip(&w[1]) {
            if from != 0.0 {
                ws += (p(watts, from) + p(watts, to)) / 2.0 * step_s;
            }
        }
    }
    ws / 3.6e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_follows_the_engine_rule() {
        let w = [[
            0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0,
        ]; 2];
        // Host 0 at 50 % then 100 %: (50 + 100) / 2 W for 3600 s. Host 1 off then on: nothing.
        let utils = vec![vec![0.5, 0.0], vec![1.0, 0.5]];
        let e = energy_kwh(&w, &utils, 3600.0);
        assert!((e - 0.075).abs() < 1e-12, "{e}");
        // A third step: host 1 now counts (50 → 50 W), host 0 (100 → 0 W).
        let utils = vec![vec![0.5, 0.0], vec![1.0, 0.5], vec![0.0, 0.5]];
        assert!((energy_kwh(&w, &utils, 3600.0) - (0.075 + 0.05 + 0.05)).abs() < 1e-12);
    }

    #[test]
    fn a_bad_file_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.json");
        let mut pl = Placement {
            format: FORMAT.into(),
            dataset: "d".into(),
            scenario: "s".into(),
            policy: "keel-power-saving".into(),
            interval_s: 300.0,
            offset_s: 0.1,
            steps: 3,
            high: 0.8,
            low: 0.5,
            accept_below: 0.9,
            hosts: vec![
                PlacedHost {
                    id: "h00".into(),
                    capacity: 100.0,
                    power_watts: [1.0; 11],
                },
                PlacedHost {
                    id: "h01".into(),
                    capacity: 100.0,
                    power_watts: [1.0; 11],
                },
            ],
            vms: vec![PlacedVm {
                id: "v".into(),
                host: "h00".into(),
                capacity: 10.0,
            }],
        };
        pl.save(&p).unwrap();
        assert_eq!(Placement::load(&p).unwrap(), pl);
        pl.vms[0].host = "h07".into();
        pl.save(&p).unwrap();
        let err = format!("{:#}", Placement::load(&p).unwrap_err());
        assert!(err.contains("vms[0].host"), "{err}");
        std::fs::write(&p, "{\"format\": 3}").unwrap();
        let err = format!("{:#}", Placement::load(&p).unwrap_err());
        assert!(err.contains("line 1"), "{err}");
    }
}
