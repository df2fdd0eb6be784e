//! `keel-agent`: the host agent. It runs LCC interaction models (through `keel-lcc`), negotiates
//! VM migrations with peers, consults the stability model, and replays recorded traces under a
//! virtual clock.
//!
//! Layout:
//! - [`host`]: the agent core (no I/O): the interaction model's peer, its predicates, the
//!   commit layer; driven by the daemon and by the replay.
//! - [`time`]: the core's notion of time.
//! - [`lcc_cli`]: `keel-agent lcc check|fmt|run`.
//! - [`replay`]: `keel-agent replay`: the agents on recorded traces, against CloudSim's baselines.
//! - [`sim`]: the datacenter simulator behind replay (CloudSim's model, baselines, Keel's agents).
//! - [`daemon`]: `keel-agent run|publish|cluster`: the networked agent.
//! - [`node`]: the agent runtime (membership, executors, load sources, policy bundles, status).
//! - [`net`]: authenticated, framed TCP between agents.
//! - [`negotiation`]: the two-sided-commit migration protocol and candidate ranking.
#![warn(missing_docs)]

pub mod daemon;
pub mod host;
pub mod lcc_cli;
pub mod negotiation;
pub mod net;
pub mod node;
pub mod replay;
pub mod sim;
pub mod time;
