//! Feature rows and the leak-free split.
//!
//! Every host step with a full history window before it and a full horizon after it becomes a
//! row (for host-level input, unless the host ran nothing in the whole window): features from keel-core's [`extract`] (the very function the agent scores with), the
//! future statistics the label needs, and where the row came from (file, host, time).
//!
//! The split cannot leak: per file, rows at `t ≤ b − (W + H)` may train and rows at `t ≥ b` may
//! test, where `b` is at `train_share` of the file's time span; so no training label window
//! overlaps any test feature window. On top, a share of hosts (by a hash of file and host id) is
//! held out: they never train, and only they test.

use keel_core::features::{extract, FeatureSchema, HostWindow};

use crate::hosts::HostSeries;
use crate::label::{future, LabelParams};

/// Feature rows with their provenance.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    /// Features, row-major (`len() × width`).
    pub x: Vec<f64>,
    /// Features per row.
    pub width: usize,
    /// File index of each row.
    pub file: Vec<u16>,
    /// Host index (into `host_ids`) of each row.
    pub host: Vec<u32>,
    /// Host ids, `file:host`.
    pub host_ids: Vec<String>,
    /// Time of each row, ms.
    pub t_ms: Vec<i64>,
    /// Highest rolling mean over the horizon.
    pub max_mean: Vec<f64>,
    /// CV over the horizon.
    pub cv: Vec<f64>,
}

impl Rows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.t_ms.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.t_ms.is_empty()
    }

    /// Row `i`'s features.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.width..(i + 1) * self.width]
    }

    /// Appends the rows of one file's hosts; with `skip_idle`, not the steps whose whole window is
    /// zero (a replay export keeps every host of the data centre, most of them switched off).
    pub fn add_file(
        &mut self,
        file: u16,
        hosts: &[HostSeries],
        schema: &FeatureSchema,
        label: &LabelParams,
        skip_idle: bool,
    ) {
        self.width = schema.len();
        for h in hosts {
            let hidx = u32::try_from(self.host_ids.len()).unwrap_or(u32::MAX);
            self.host_ids.push(format!("{file}:{}", h.id));
            let steps = label.steps(h.step_s);
            let need = ((schema.window_s / h.step_s).round() as usize).max(1);
            for t in need.saturating_sub(1)..h.cpu.len() {
                if !h.cpu[t].is_finite() {
                    continue;
                }
                // A host switched off (or empty) for the whole window is not a row: nothing runs
                // there to predict.
                if skip_idle
                    && h.cpu[t + 1 - need..=t]
                        .iter()
                        .all(|v| *v == 0.0 || v.is_nan())
                {
                    continue;
                }
                let Some((m, cv)) = future(&h.cpu, t, steps) else {
                    continue;
                };
                let w = HostWindow {
                    step_s: h.step_s,
                    cpu: &h.cpu[..=t],
                    mem: h.mem.as_deref().map(|v| &v[..=t]),
                    net: h.net.as_deref().map(|v| &v[..=t]),
                    disk: None,
                };
                self.x.extend(extract(&w, schema));
                self.file.push(file);
                self.host.push(hidx);
                self.t_ms
                    .push(h.t0_ms + (t as f64 * h.step_s * 1000.0).round() as i64);
                self.max_mean.push(m);
                self.cv.push(cv);
            }
        }
    }

    /// The host id (without the file prefix) of row `i`.
    pub fn host_id(&self, i: usize) -> &str {
        let s = &self.host_ids[self.host[i] as usize];
        s.split_once(':').map_or(s.as_str(), |(_, h)| h)
    }
}

/// Split settings (recorded in the model so evaluation can rebuild the test rows).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    /// Share of each file's time span before the boundary.
    pub train_share: f64,
    /// Share of hosts held out.
    pub holdout_hosts: f64,
    /// Gap at each boundary, ms (W + H).
    pub gap_ms: i64,
}

/// Which side of the split a row is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// May be used for fitting.
    Train,
    /// Held out for testing.
    Test,
    /// In a gap or on the wrong side for its host.
    Neither,
}

/// FNV-1a of a string, for deterministic host hold-out.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether a host (by `file:host` id) is held out.
pub fn held_out(host: &str, share: f64) -> bool {
    (fnv(host) % 10_000) as f64 / 10_000.0 < share
}

impl Split {
    /// The side of every row.
    pub fn sides(&self, rows: &Rows) -> Vec<Side> {
        let nfiles = rows
            .file
            .iter()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        let mut span = vec![(i64::MAX, i64::MIN); nfiles];
        for (f, t) in rows.file.iter().zip(&rows.t_ms) {
            let s = &mut span[*f as usize];
            s.0 = s.0.min(*t);
            s.1 = s.1.max(*t);
        }
        let held: Vec<bool> = rows
            .host_ids
            .iter()
            .map(|h| held_out(h, self.holdout_hosts))
            .collect();
        (0..rows.len())
            .map(|i| {
                let (lo, hi) = span[rows.file[i] as usize];
                let b = lo + ((hi - lo) as f64 * self.train_share) as i64;
                let t = rows.t_ms[i];
                let h = held[rows.host[i] as usize];
                if t <= b - self.gap_ms && !h {
                    Side::Train
                } else if t >= b && h {
                    Side::Test
                } else {
                    Side::Neither
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, n: usize) -> HostSeries {
        HostSeries {
            id: id.into(),
            step_s: 300.0,
            t0_ms: 0,
            cpu: (0..n).map(|i| (i % 10) as f64 / 10.0).collect(),
            mem: None,
            net: None,
            cpu_demand: vec![0.0; n],
            mem_mib: vec![0.0; n],
        }
    }

    #[test]
    fn rows_need_a_full_window_and_horizon() {
        let mut r = Rows::default();
        r.add_file(
            0,
            &[host("a", 30)],
            &FeatureSchema::cpu_default(),
            &LabelParams::default(),
            true,
        );
        // t from 11 (12 points of history) to 23 (6 steps ahead): 13 rows.
        assert_eq!(r.len(), 13);
        assert_eq!(r.t_ms[0], 11 * 300_000);
        // A host idle for a whole window gives no row there.
        let mut idle = host("b", 30);
        idle.cpu[..14].iter_mut().for_each(|v| *v = 0.0);
        let mut ri = Rows::default();
        ri.add_file(
            0,
            &[idle.clone()],
            &FeatureSchema::cpu_default(),
            &LabelParams::default(),
            true,
        );
        // Windows ending at t = 11..=13 are all zero.
        assert_eq!(ri.len(), 10);
        assert_eq!(ri.t_ms[0], 14 * 300_000);
        // Without skip_idle (placed VM traces) every step is a row.
        let mut ra = Rows::default();
        ra.add_file(
            0,
            &[idle],
            &FeatureSchema::cpu_default(),
            &LabelParams::default(),
            false,
        );
        assert_eq!(ra.len(), 13);
        assert_eq!(r.row(0).len(), 16);
        assert_eq!(r.host_id(0), "a");
    }

    #[test]
    fn split_leaves_a_gap_and_holds_out_hosts() {
        let mut r = Rows::default();
        let hosts: Vec<HostSeries> = (0..40).map(|i| host(&format!("h{i}"), 300)).collect();
        r.add_file(
            0,
            &hosts,
            &FeatureSchema::cpu_default(),
            &LabelParams::default(),
            true,
        );
        let split = Split {
            train_share: 0.6,
            holdout_hosts: 0.3,
            gap_ms: 5_400_000,
        };
        let sides = split.sides(&r);
        let train_max = (0..r.len())
            .filter(|i| sides[*i] == Side::Train)
            .map(|i| r.t_ms[i])
            .max()
            .unwrap();
        let test_min = (0..r.len())
            .filter(|i| sides[*i] == Side::Test)
            .map(|i| r.t_ms[i])
            .min()
            .unwrap();
        assert!(
            test_min - train_max >= split.gap_ms,
            "{train_max} {test_min}"
        );
        let train_hosts: std::collections::HashSet<u32> = (0..r.len())
            .filter(|i| sides[*i] == Side::Train)
            .map(|i| r.host[i])
            .collect();
        assert!((0..r.len())
            .filter(|i| sides[*i] == Side::Test)
            .all(|i| !train_hosts.contains(&r.host[i])));
        let tested = (0..r.len()).filter(|i| sides[*i] == Side::Test).count();
        assert!(tested > 0);
    }
}
