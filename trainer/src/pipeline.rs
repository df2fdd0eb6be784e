//! What `train` and `eval` share: files → host series → feature rows → labels.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use keel_core::features::FeatureSchema;
use keel_core::model::{Placement, SourceFile};
use sha2::{Digest, Sha256};

use crate::dataset::Rows;
use crate::hosts;
use crate::label::{self, LabelParams, LabelsFile};
use crate::load::load;

/// SHA-256 of a file, hex.
///
/// # Errors
/// When the file cannot be read.
pub fn sha256(path: &Path) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {elapsed}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_owned());
    pb
}

/// Loads files, builds host series (placing VM-only data by `placement`) and feature rows.
///
/// # Errors
/// Unreadable files, missing columns, too few samples (no row with a full window and horizon).
pub fn rows_of(
    paths: &[PathBuf],
    schema: &FeatureSchema,
    label: &LabelParams,
    placement: &Placement,
) -> anyhow::Result<(Rows, Vec<SourceFile>)> {
    let mut rows = Rows::default();
    let mut files = Vec::new();
    let pb = progress(paths.len() as u64, "files");
    for (i, p) in paths.iter().enumerate() {
        let file = u16::try_from(i).context("too many files")?;
        let table = load(p)?;
        let hs = hosts::build(&table, placement).with_context(|| format!("{}", p.display()))?;
        for h in &hs.series {
            for d in &schema.dimensions {
                let present = match d {
                    keel_core::features::Dimension::Cpu => true,
                    keel_core::features::Dimension::Mem => h.mem.is_some(),
                    keel_core::features::Dimension::Net => h.net.is_some(),
                    keel_core::features::Dimension::Disk => false,
                };
                if !present {
                    bail!(
                        "{}: host {} has no {} utilisation, which the feature schema needs",
                        p.display(),
                        h.id,
                        d.name()
                    );
                }
            }
        }
        let before = rows.len();
        rows.add_file(file, &hs.series, schema, label, hs.host_level);
        let added = rows.len() - before;
        if added == 0 {
            bail!(
                "{}: too few samples: no host step has {} s of history and {} s ahead",
                p.display(),
                schema.window_s,
                label.horizon_s
            );
        }
        tracing::info!(file = %p.display(), hosts = hs.series.len(), rows = added, "Built feature rows.");
        files.push(SourceFile {
            path: p.display().to_string(),
            sha256: sha256(p)?,
            rows: table.rows as u64,
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok((rows, files))
}

/// Labels every row: by the rule (with the given CV threshold), or from a labels file (rows it
/// does not name get `None`).
pub fn labels(
    rows: &Rows,
    params: &LabelParams,
    cv_threshold: Option<f64>,
    file: Option<&LabelsFile>,
) -> Vec<Option<bool>> {
    (0..rows.len())
        .map(|i| match file {
            Some(f) => f.get(&(rows.host_id(i).to_owned(), rows.t_ms[i])).copied(),
            None => Some(label::unstable(
                rows.max_mean[i],
                rows.cv[i],
                params,
                cv_threshold,
            )),
        })
        .collect()
}
