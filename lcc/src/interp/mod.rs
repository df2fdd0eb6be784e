//! The interpreter: [`Program`] (compiled clauses shared by peers), [`Peer`] (one peer's state and
//! its deterministic [`Peer::step`]), and, behind the `async` feature, a tokio driver over the same
//! core.

#[cfg(feature = "async")]
pub mod driver;
mod peer;
mod program;
mod store;

pub use peer::{
    Envelope, Footprint, Peer, PeerRef, Status, DEFAULT_INBOX_CAPACITY, DEFAULT_STEP_BUDGET,
    MAX_ROLE_DEPTH,
};
pub use program::{term_to_value, Program};
