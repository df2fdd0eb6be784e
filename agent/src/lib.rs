//! Keel agent.
#![warn(missing_docs)]
