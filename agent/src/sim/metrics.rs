//! Per-policy results: CloudSim's metrics and what CloudSim does not report.

use serde::Serialize;

use super::engine::{RunOutput, Step};

/// Negotiation counters of a negotiating policy.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Negotiation {
    /// Messages sent between agents.
    pub messages: u64,
    /// Messages the simulated transport lost.
    pub lost: u64,
    /// Negotiations started (a host asked for help or offered its VMs).
    pub started: u64,
    /// Negotiations that ended in a migration.
    pub agreed: u64,
    /// Negotiations refused by every candidate.
    pub refused: u64,
    /// Negotiations abandoned on a timeout (lost messages, silent peers).
    pub timed_out: u64,
    /// Candidates skipped or ranked last because the model scored them unstable.
    pub model_vetoes: u64,
    /// Overloads below capacity left to pass because the model expected the host to stay below
    /// it (`--model-consult optional`).
    pub model_waits: u64,
    /// Switched-off hosts a requester powered on because no running peer took its VM.
    pub woken: u64,
    /// Messages of the commit layer under `migrate(...)` (offer, accept, commit, ...).
    pub commit_messages: u64,
}

/// The results of one policy.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyResult {
    /// Energy, kWh.
    pub energy_kwh: f64,
    /// Migrations.
    pub migrations: u64,
    /// SLA violation time per active host (fraction).
    pub slatah: f64,
    /// Performance degradation due to migration (fraction).
    pub pdm: f64,
    /// SLATAH × PDM.
    pub slav: f64,
    /// Energy × SLAV.
    pub esv: f64,
    /// Migrations that moved a VM back to a host it had left, or again within an hour.
    pub thrash_migrations: u64,
    /// Times a host was switched off and later on again.
    pub power_cycles: u64,
    /// Mean number of active hosts over the intervals.
    pub mean_active_hosts: f64,
    /// Mean over intervals of the standard deviation of utilisation across active hosts.
    pub util_spread: f64,
    /// VMs CloudSim-style removed because their demand dropped to 0.
    pub finished_vms: usize,
    /// Negotiation counters (Keel's policies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negotiation: Option<Negotiation>,
    /// Wall time of the run, seconds.
    pub wall_s: f64,
    /// Per-interval series (`steps` in the JSON: one small row per interval).
    pub steps: Vec<Step>,
}

impl PolicyResult {
    /// Summarises a run.
    pub fn from_run(r: &RunOutput, negotiation: Option<Negotiation>, wall_s: f64) -> Self {
        let slav = r.slatah * r.pdm;
        let n = r.steps.len().max(1) as f64;
        Self {
            energy_kwh: r.energy_kwh,
            migrations: r.migrations,
            slatah: r.slatah,
            pdm: r.pdm,
            slav,
            esv: r.energy_kwh * slav,
            thrash_migrations: r.thrash_migrations,
            power_cycles: r.power_cycles,
            mean_active_hosts: r
                .steps
                .iter()
                .map(|s| f64::from(s.active_hosts))
                .sum::<f64>()
                / n,
            util_spread: r.steps.iter().map(|s| s.util_spread).sum::<f64>() / n,
            finished_vms: r.finished_vms,
            negotiation,
            wall_s,
            steps: r.steps.clone(),
        }
    }
}
