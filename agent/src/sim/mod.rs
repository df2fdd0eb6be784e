//! The data-centre simulator behind `keel-agent replay`: hosts, VMs, a virtual clock and the
//! consolidation policies, modelled on CloudSim 3.0.3's power package so that a replay of the
//! PlanetLab traces can be put figure for figure next to CloudSim's.
//!
//! Layout:
//! - [`scenario`]: the data centre (hosts, power models, interval, migration cost), built in
//!   (`cloudsim-planetlab`) or from a TOML file.
//! - [`workload`]: per-VM utilisation series read from a canonical Parquet dataset (arrow-rs).
//! - [`engine`]: the datacenter state, the event loop, migrations and CloudSim's accounting of
//!   energy, SLATAH and PDM.
//! - [`heuristics`]: the baselines: no migration (DVFS) and the centralised THR/IQR/MAD/LR-MMT
//!   heuristics with power-aware best-fit decreasing placement.
//! - [`keel`]: Keel's own policies: one LCC host agent per host, negotiating over a simulated
//!   transport, optionally consulting the stability model.
//! - [`metrics`]: the per-policy results.

pub mod engine;
pub mod heuristics;
pub mod keel;
pub mod metrics;
pub mod scenario;
pub mod workload;

pub use engine::{Engine, Policy};
pub use metrics::PolicyResult;
pub use scenario::Scenario;
pub use workload::Workload;
