//! Keel trainer.
#![warn(missing_docs)]
