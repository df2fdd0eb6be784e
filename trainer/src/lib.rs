//! `keel-trainer`: imports real traces into the canonical schema, builds host series, extracts
//! stability features, fits classifiers and evaluates them honestly, and writes model files.
//!
//! Layout:
//! - [`import`]: `keel-trainer import <format> <input> -o <out.parquet>` (PlanetLab, Bitbrains).
//! - [`summary`]: `keel-trainer summary <file.parquet>`.
//! - [`hosts`]: `keel-trainer hosts --pack …`: deterministic placement of VMs on hosts.
//! - [`train`]: `keel-trainer train`.
//! - [`eval`]: `keel-trainer eval`.
#![warn(missing_docs)]

pub mod eval;
pub mod hosts;
pub mod import;
pub mod summary;
pub mod train;
