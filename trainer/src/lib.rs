//! `keel-trainer`: imports real traces into the canonical schema, builds host series, extracts
//! stability features, fits classifiers and evaluates them honestly, and writes model files.
//!
//! Layout:
//! - [`import`]: `keel-trainer import <format> <input> -o <out.parquet>` (PlanetLab, Bitbrains),
//!   and `import influx|victoriametrics` (the fleet's collector rows from its database).
//! - [`summary`]: `keel-trainer summary <file.parquet>`.
//! - [`hosts`]: `keel-trainer hosts --pack …`: deterministic placement of VMs on hosts.
//! - [`train`]: `keel-trainer train`.
//! - [`eval`]: `keel-trainer eval`.
//! - [`load`]: polars lazy scans of canonical Parquet into per-entity series.
//! - [`label`]: labels from what happened next.
//! - [`dataset`]: feature rows (keel-core's `extract`) and the leak-free split.
//! - [`fit`]: linfa classifiers, converted into keel-core's model parameters.
//! - [`evaluate`]: metrics computed directly, linfa's ROC cross-check, the classic detectors.
//! - [`report`]: the HTML evaluation report with SVG plots.
//! - [`pipeline`]: what `train` and `eval` share: files → hosts → rows → labels.
#![warn(missing_docs)]

pub mod dataset;
pub mod eval;
pub mod evaluate;
pub mod fit;
pub mod hosts;
pub mod import;
pub mod label;
pub mod load;
pub mod pipeline;
pub mod report;
pub mod summary;
pub mod train;
