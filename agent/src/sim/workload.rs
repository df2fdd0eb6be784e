//! Per-VM utilisation series read from a canonical Parquet dataset.
//!
//! Only the columns the replay needs are decoded (`ts`, `vm_id`, `cpu_util`, `mem_used_mib`),
//! one Arrow batch at a time, into one flat `f64` array per metric: a day of PlanetLab (1052 VMs)
//! takes 2.4 MB. VMs are taken in the inventory's order (for PlanetLab: sorted file names, which
//! is the order that fixes CloudSim's VM types). Samples are placed on a grid of the dataset's
//! step from the earliest timestamp; a missing sample repeats the previous one. As in CloudSim's
//! `UtilizationModelPlanetLabInMemory`, one extra point repeating the last sample closes the
//! series, and the value between grid points is interpolated linearly.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context};
use keel_core::inventory::Inventory;
use keel_core::parquet_io::batch_to_samples;
use keel_core::schema::{CPU_UTIL, HOST_ID, MEM_USED_MIB, TS, VM_ID};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

/// Utilisation series of every VM on a common time grid.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The dataset's inventory (VM sizes and types).
    pub inventory: Inventory,
    /// Grid step, seconds.
    pub step_s: f64,
    /// Samples per VM on the grid (without the closing repeat).
    pub n_steps: usize,
    /// First timestamp of the grid, ms since the epoch.
    pub start_ms: i64,
    /// `cpu[v * (n_steps + 1) + i]`: CPU utilisation of VM `v` at grid point `i`, fraction.
    cpu: Vec<f64>,
    /// The same samples time-major, `by_time[i * n_vms + v]`: an update reads every VM at one
    /// time, so this layout keeps those reads together in memory.
    by_time: Vec<f64>,
    /// Memory in use, MiB, same layout, where the dataset has it.
    mem: Option<Vec<f32>>,
}

impl Workload {
    /// Builds a workload from series already on the grid (`cpu[v][i]`, fractions).
    ///
    /// # Errors
    /// Series of different lengths, or a count that does not match the inventory.
    pub fn from_series(
        inventory: Inventory,
        step_s: f64,
        cpu: &[Vec<f64>],
        mem: Option<&[Vec<f64>]>,
    ) -> anyhow::Result<Self> {
        if cpu.len() != inventory.vms.len() {
            bail!("{} series for {} VMs", cpu.len(), inventory.vms.len());
        }
        let n_steps = cpu.first().map_or(0, Vec::len);
        if n_steps == 0 || cpu.iter().any(|s| s.len() != n_steps) {
            bail!("every VM needs the same non-zero number of samples");
        }
        let flat = |s: &[Vec<f64>]| -> Vec<f64> {
            s.iter()
                .flat_map(|v| v.iter().copied().chain(v.last().copied()))
                .collect()
        };
        let flat_cpu = flat(cpu);
        Ok(Self {
            by_time: time_major(&flat_cpu, inventory.vms.len(), n_steps + 1),
            inventory,
            step_s,
            n_steps,
            start_ms: 0,
            cpu: flat_cpu,
            mem: mem.map(|m| flat(m).into_iter().map(|x| x as f32).collect()),
        })
    }

    /// Reads a canonical Parquet dataset (VM rows; host rows are ignored).
    ///
    /// # Errors
    /// I/O and Parquet errors, a dataset without VMs in its inventory, rows naming a VM the
    /// inventory lacks, and timestamps that do not fall on a common step; each names the file.
    pub fn from_parquet(path: &Path) -> anyhow::Result<Self> {
        let ctx = || format!("reading dataset {}", path.display());
        let inventory = keel_core::parquet_io::read_inventory(path).with_context(ctx)?;
        if inventory.vms.is_empty() {
            bail!("{}: the inventory lists no VMs", path.display());
        }
        let file = File::open(path).with_context(ctx)?;
        let b = ParquetRecordBatchReaderBuilder::try_new(file).with_context(ctx)?;
        let leaves: Vec<usize> = {
            let s = b.parquet_schema();
            (0..s.num_columns())
                .filter(|&i| {
                    matches!(
                        s.column(i).name(),
                        TS | VM_ID | HOST_ID | CPU_UTIL | MEM_USED_MIB
                    )
                })
                .collect()
        };
        let mask = ProjectionMask::leaves(b.parquet_schema(), leaves);
        let reader = b
            .with_projection(mask)
            .with_batch_size(32 * 1024)
            .build()
            .with_context(ctx)?;
        let index: HashMap<&str, usize> = inventory
            .vms
            .iter()
            .enumerate()
            .map(|(i, v)| (v.id.as_str(), i))
            .collect();
        // (vm, ts, cpu, mem) compact rows.
        let mut rows: Vec<(u32, i64, f64, f32)> = Vec::new();
        let mut any_mem = false;
        let mut samples = Vec::new();
        for batch in reader {
            let batch = batch.with_context(ctx)?;
            samples.clear();
            batch_to_samples(path, &batch, &mut samples).with_context(ctx)?;
            for s in &samples {
                let Some(vm) = s.vm_id.as_deref() else {
                    continue;
                };
                let Some(&v) = index.get(vm) else {
                    bail!(
                        "{}: row for VM {vm:?} that the inventory does not list",
                        path.display()
                    );
                };
                let cpu = s.metrics.cpu_util.unwrap_or(f64::NAN);
                let mem = s.metrics.mem_used_mib.map_or(f32::NAN, |m| m as f32);
                any_mem |= !mem.is_nan();
                rows.push((v as u32, s.ts_ms, cpu, mem));
            }
        }
        if rows.is_empty() {
            bail!("{}: no VM rows", path.display());
        }
        let start_ms = rows.iter().map(|r| r.1).min().unwrap_or(0);
        let end_ms = rows.iter().map(|r| r.1).max().unwrap_or(0);
        // The step: the smallest positive gap between consecutive samples of one VM.
        rows.sort_unstable_by_key(|r| (r.0, r.1));
        let step_ms = rows
            .windows(2)
            .filter(|w| w[0].0 == w[1].0 && w[1].1 > w[0].1)
            .map(|w| w[1].1 - w[0].1)
            .min()
            .unwrap_or(300_000);
        let n_steps = ((end_ms - start_ms) / step_ms) as usize + 1;
        let n_vms = inventory.vms.len();
        let stride = n_steps + 1;
        let mut cpu = vec![f64::NAN; n_vms * stride];
        let mut mem = vec![f32::NAN; if any_mem { n_vms * stride } else { 0 }];
        for (v, ts, c, m) in rows {
            let off = ts - start_ms;
            if off % step_ms != 0 {
                bail!(
                    "{}: VM {:?} has a sample at {ts} ms, off the {step_ms} ms grid",
                    path.display(),
                    inventory.vms[v as usize].id
                );
            }
            let i = v as usize * stride + (off / step_ms) as usize;
            cpu[i] = c;
            if any_mem {
                mem[i] = m;
            }
        }
        // Fill gaps with the previous value (0 before the first) and close each series.
        for v in 0..n_vms {
            let s = &mut cpu[v * stride..(v + 1) * stride];
            fill_forward(s, 0.0);
            if any_mem {
                let m = &mut mem[v * stride..(v + 1) * stride];
                fill_forward(m, 0.0);
            }
        }
        Ok(Self {
            by_time: time_major(&cpu, inventory.vms.len(), n_steps + 1),
            inventory,
            step_s: step_ms as f64 / 1000.0,
            n_steps,
            start_ms,
            cpu,
            mem: any_mem.then_some(mem),
        })
    }

    /// Number of VMs.
    pub fn n_vms(&self) -> usize {
        self.inventory.vms.len()
    }

    /// Whether the dataset measured memory.
    pub fn has_mem(&self) -> bool {
        self.mem.is_some()
    }

    /// CPU utilisation of VM `v` at `t` seconds from the start (CloudSim's interpolation).
    pub fn cpu_at(&self, v: usize, t: f64) -> f64 {
        let n = self.n_vms();
        interpolate_at(
            |i| self.by_time[i * n + v],
            self.n_steps + 1,
            self.step_s,
            t,
        )
    }

    /// Memory in use by VM `v` at `t`, MiB (`None` when the dataset has no memory column).
    pub fn mem_at(&self, v: usize, t: f64) -> Option<f64> {
        let m = self.mem.as_ref()?;
        let i = ((t / self.step_s).floor().max(0.0) as usize).min(self.n_steps);
        Some(f64::from(m[v * (self.n_steps + 1) + i]))
    }

    /// Simulated length covered by the samples, seconds.
    pub fn duration_s(&self) -> f64 {
        self.n_steps as f64 * self.step_s
    }

    /// `n` VMs evenly spaced in the inventory's order (every ⌈N/n⌉-th VM from the first), so
    /// that a small run keeps the mix of VM types; for quick runs and tests.
    pub fn take(&self, n: usize) -> Self {
        let total = self.n_vms();
        if n >= total {
            return self.clone();
        }
        let every = total.div_ceil(n.max(1));
        let picked: Vec<usize> = (0..total).step_by(every).take(n).collect();
        let stride = self.n_steps + 1;
        let mut inventory = self.inventory.clone();
        inventory.vms = picked
            .iter()
            .map(|&v| self.inventory.vms[v].clone())
            .collect();
        let cut = |xs: &[f64]| -> Vec<f64> {
            picked
                .iter()
                .flat_map(|&v| xs[v * stride..(v + 1) * stride].iter().copied())
                .collect()
        };
        let cpu = cut(&self.cpu);
        Self {
            by_time: time_major(&cpu, picked.len(), stride),
            inventory,
            step_s: self.step_s,
            n_steps: self.n_steps,
            start_ms: self.start_ms,
            cpu,
            mem: self.mem.as_ref().map(|m| {
                picked
                    .iter()
                    .flat_map(|&v| m[v * stride..(v + 1) * stride].iter().copied())
                    .collect()
            }),
        }
    }

    /// The workload replicated `k` times (copy `j` of VM `v` has VM `v`'s size, type and trace,
    /// and id `<id>-x<j>`), for scaling runs.
    pub fn replicate(&self, k: usize) -> Self {
        if k <= 1 {
            return self.clone();
        }
        let mut inventory = self.inventory.clone();
        inventory.vms = (0..k)
            .flat_map(|j| {
                self.inventory
                    .vms
                    .iter()
                    .map(move |v| keel_core::inventory::VmSpec {
                        id: format!("{}-x{j}", v.id),
                        ..v.clone()
                    })
            })
            .collect();
        let cpu = self.cpu.repeat(k);
        Self {
            by_time: time_major(&cpu, inventory.vms.len(), self.n_steps + 1),
            inventory,
            step_s: self.step_s,
            n_steps: self.n_steps,
            start_ms: self.start_ms,
            cpu,
            mem: self.mem.as_ref().map(|m| m.repeat(k)),
        }
    }
}

fn fill_forward<T: NanCheck + Copy>(s: &mut [T], zero: T) {
    let n = s.len();
    let mut prev = zero;
    for x in &mut s[..n - 1] {
        if x.is_nan_value() {
            *x = prev;
        } else {
            prev = *x;
        }
    }
    if n >= 2 {
        s[n - 1] = s[n - 2];
    }
}

trait NanCheck {
    fn is_nan_value(&self) -> bool;
}
impl NanCheck for f64 {
    fn is_nan_value(&self) -> bool {
        self.is_nan()
    }
}
impl NanCheck for f32 {
    fn is_nan_value(&self) -> bool {
        self.is_nan()
    }
}

/// CloudSim's `UtilizationModelPlanetLabInMemory.getUtilization`: exact at grid points, linear in
/// between; `data` carries the closing repeat.
/// `data` laid out VM-major (`n_vms` series of `stride` points) turned time-major.
fn time_major(data: &[f64], n_vms: usize, stride: usize) -> Vec<f64> {
    let mut out = vec![0.0; data.len()];
    for v in 0..n_vms {
        for i in 0..stride {
            out[i * n_vms + v] = data[v * stride + i];
        }
    }
    out
}

#[cfg(test)]
fn interpolate(data: &[f64], step: f64, t: f64) -> f64 {
    interpolate_at(|i| data[i], data.len(), step, t)
}

/// CloudSim's interpolation over `len` points read by `data`.
#[inline]
fn interpolate_at(data: impl Fn(usize) -> f64, len: usize, step: f64, t: f64) -> f64 {
    let last = len - 1;
    // `t` is a whole number of steps exactly when `floor(t / step) * step == t` (the same test
    // as `t % step == 0.0`, without the slow remainder), for the finite, non-negative times of
    // a replay.
    let q = (t / step).floor();
    if q * step == t {
        return data((q as usize).min(last));
    }
    let i1 = ((t / step).floor().max(0.0) as usize).min(last);
    let i2 = ((t / step).ceil().max(0.0) as usize).min(last);
    let (u1, u2) = (data(i1), data(i2));
    if i2 == i1 {
        return u1;
    }
    let delta = (u2 - u1) / ((i2 - i1) as f64 * step);
    u1 + delta * (t - i1 as f64 * step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_matches_cloudsim() {
        let d = [0.1, 0.3, 0.3];
        assert_eq!(interpolate(&d, 300.0, 0.0), 0.1);
        assert_eq!(interpolate(&d, 300.0, 300.0), 0.3);
        assert!((interpolate(&d, 300.0, 150.0) - 0.2).abs() < 1e-12);
        assert_eq!(interpolate(&d, 300.0, 1e9), 0.3);
    }

    #[test]
    fn series_are_closed_and_replicated() {
        let mut inv = Inventory::default();
        inv.vms
            .push(keel_core::catalog::cloudsim_vm_type(0).spec("a".into()));
        let w = Workload::from_series(inv, 300.0, &[vec![0.5, 1.0]], None).unwrap();
        assert_eq!(w.cpu_at(0, 600.0), 1.0);
        let r = w.replicate(3);
        assert_eq!(r.n_vms(), 3);
        assert_eq!(r.inventory.vms[2].id, "a-x2");
        assert!((r.cpu_at(2, 150.0) - 0.75).abs() < 1e-12);
    }
}
