//! Keel's shared vocabulary.
//!
//! Every part of the pipeline (collector → trainer → agent and replay) speaks the types here, so
//! that a file written by one is read by the others unchanged.
//!
//! Layout:
//! - [`schema`]: the canonical long table of samples (column names, units, version) and [`schema::Sample`].
//! - [`inventory`]: what the entities are: VMs and hosts with capacities and power models.
//! - [`catalog`]: well-known host and VM types (CloudSim's PlanetLab scenario).
//! - [`features`]: stability features from a host's utilisation history (versioned names and order).
//! - [`model`]: the stability model file (JSON) and its dependency-free scoring.
//! - [`parquet_io`] (feature `parquet`): reading and writing the schema as zstd Parquet via arrow-rs.
//! - `cli` (feature `cli`): logging flags shared by the binaries.
//! - [`error`]: the crate's error type.
#![warn(missing_docs)]

pub mod catalog;
#[cfg(feature = "cli")]
pub mod cli;
pub mod error;
pub mod features;
pub mod inventory;
pub mod model;
#[cfg(feature = "parquet")]
pub mod parquet_io;
pub mod schema;

pub use error::{Error, Result};
