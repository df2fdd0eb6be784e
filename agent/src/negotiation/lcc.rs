//! The seed slides' migration model (design note): the interaction model an agent runs when it
//! is given none. It runs in the agent core ([`crate::host`]) like every other model.

/// The seed model's text (`agent/protocols/seed.lcc`).
pub const SEED_MODEL: &str = include_str!("../../protocols/seed.lcc");
