//! Host series: from host-level rows directly, or from VM-only traces by a deterministic placement.
//!
//! Stability is a property of hosts, but PlanetLab and Bitbrains record VMs only. The placement
//! here is documented and deterministic so that training and evaluation rebuild the same hosts:
//!
//! 1. Time grid: the median positive step between a VM's samples; every timestamp is floored to it.
//! 2. A VM's demand at a step is its `cpu_demand` where present, else `cpu_util` × its capacity
//!    from the inventory; a VM without a sample at a step demands nothing.
//! 3. VMs are sorted by their mean demand over the first hour (`--placement-window-s`) (ties: inventory order, then id) in
//!    decreasing order and placed first-fit on hosts opened in order: a VM fits when the hosts'
//!    summed first-hour demand stays ≤ `target` × CPU capacity and, for `--pack cpu-mem`, the
//!    summed provisioned memory stays ≤ `target` × host memory. A VM that fits nowhere opens a host.
//! 4. Host types: MIPS inventories use CloudSim's data centre (even index HP ProLiant ML110 G4,
//!    odd G5); MHz inventories (Bitbrains) use [`mhz_host`]: 2 × 8 cores × 2600 MHz, 256 GiB,
//!    10 Gbit/s, a typical two-socket server of the trace's era.
//! 5. A host's `cpu_util` is Σ VM demand / host capacity; memory Σ `mem_used_mib` / host memory
//!    (where VMs report memory); network Σ rx + tx / bandwidth.
//!
//! Packing by CPU only gives ~20 PlanetLab VMs per host and a real prediction problem; packing by
//! CPU and memory leaves ~2 VMs per host and almost no overload (see the model card).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use keel_core::catalog::cloudsim_hosts;
use keel_core::inventory::{CpuUnit, HostSpec};
use keel_core::model::Placement;
use keel_core::parquet_io::{write_samples, WriteOptions};
use keel_core::schema::{Metrics, Sample};
use serde::Serialize;

use crate::load::{load, Entity, Table};

/// Arguments of `keel-trainer hosts`.
#[derive(Debug, clap::Args)]
pub struct HostsArgs {
    /// Resources packing respects: `cpu` or `cpu-mem`.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cpu-mem"])]
    pub pack: String,
    /// Target utilisation of each packed resource (first-hour mean).
    #[arg(long, default_value_t = 0.7)]
    pub target: f64,
    /// Canonical Parquet input (VM-only or host-level).
    #[arg(long)]
    pub data: PathBuf,
    /// Span (seconds from each VM's first sample) of the mean demand that packing uses.
    #[arg(long, default_value_t = 3600.0)]
    pub placement_window_s: f64,
    /// Output Parquet of host-level series; the placement goes to `<out>.placement.json`.
    #[arg(short, long)]
    pub out: PathBuf,
}

/// One host's utilisation series on a regular grid (NaN where unknown).
#[derive(Debug, Clone)]
pub struct HostSeries {
    /// Host id.
    pub id: String,
    /// Seconds between values.
    pub step_s: f64,
    /// Timestamp of the first value, ms.
    pub t0_ms: i64,
    /// CPU utilisation.
    pub cpu: Vec<f64>,
    /// Memory utilisation, where known.
    pub mem: Option<Vec<f64>>,
    /// Network utilisation, where known.
    pub net: Option<Vec<f64>>,
    /// CPU demand, summed (host-level files: as recorded).
    pub cpu_demand: Vec<f64>,
    /// Memory used, MiB, summed.
    pub mem_mib: Vec<f64>,
}

/// The outcome of building host series for one file.
#[derive(Debug, Clone)]
pub struct Hosts {
    /// The series.
    pub series: Vec<HostSeries>,
    /// VM → host, when a placement was made.
    pub assignment: Vec<(String, String)>,
    /// The host specs (of a placement, or from the inventory).
    pub hosts: Vec<HostSpec>,
    /// Whether the file was host-level already.
    pub host_level: bool,
}

/// The host type used for MHz (Bitbrains-style) inventories.
pub fn mhz_host(id: String) -> HostSpec {
    HostSpec {
        id,
        cores: 16,
        cpu_per_core: 2600.0,
        mem_mib: 256.0 * 1024.0,
        bandwidth_mbit: Some(10_000.0),
        power: None,
        host_type: Some("keel-2x8-2600mhz-256g".into()),
    }
}

fn host_spec(unit: CpuUnit, i: usize) -> HostSpec {
    match unit {
        CpuUnit::Mips => {
            let mut h = cloudsim_hosts(i + 1).swap_remove(i);
            h.id = format!("host-{i:04}");
            h
        }
        CpuUnit::Mhz => mhz_host(format!("host-{i:04}")),
    }
}

/// Median positive difference between consecutive timestamps, seconds.
fn grid_step_s<'a>(series: impl Iterator<Item = &'a [i64]>) -> anyhow::Result<f64> {
    let mut diffs: Vec<i64> = series
        .flat_map(|ts| ts.windows(2).map(|w| w[1] - w[0]))
        .filter(|d| *d > 0)
        .take(1_000_000)
        .collect();
    if diffs.is_empty() {
        bail!("too few samples: no entity has two distinct timestamps");
    }
    let mid = diffs.len() / 2;
    let (_, m, _) = diffs.select_nth_unstable(mid);
    Ok(*m as f64 / 1000.0)
}

struct Grid {
    t0: i64,
    step_ms: i64,
    len: usize,
}

impl Grid {
    fn of<'a>(
        entities: impl Iterator<Item = &'a Entity> + Clone,
        step_s: f64,
    ) -> anyhow::Result<Self> {
        let step_ms = (step_s * 1000.0).round() as i64;
        let lo = entities.clone().filter_map(|e| e.ts_ms.first()).min();
        let hi = entities.filter_map(|e| e.ts_ms.last()).max();
        let (Some(lo), Some(hi)) = (lo, hi) else {
            bail!("no samples");
        };
        let t0 = lo.div_euclid(step_ms) * step_ms;
        let len = usize::try_from((hi - t0) / step_ms + 1).context("time span")?;
        Ok(Self { t0, step_ms, len })
    }
    fn index(&self, t: i64) -> usize {
        // Timestamps are ≥ t0 by construction.
        usize::try_from((t - self.t0) / self.step_ms).unwrap_or(0)
    }
}

/// Puts values on the grid (last value wins in a bucket); `fill` where nothing was measured.
fn on_grid(grid: &Grid, ts: &[i64], v: &[f64], fill: f64) -> Vec<f64> {
    let mut out = vec![fill; grid.len];
    for (t, x) in ts.iter().zip(v) {
        if x.is_finite() {
            out[grid.index(*t)] = *x;
        }
    }
    out
}

/// Builds host series for a loaded file: host-level rows directly, else VMs placed by `placement`.
///
/// # Errors
/// Too few samples, or VMs without demand that the inventory cannot size.
pub fn build(table: &Table, placement: &Placement) -> anyhow::Result<Hosts> {
    let path = table.path.display();
    let host_rows: Vec<&Entity> = table.entities.iter().filter(|e| e.is_host()).collect();
    if !host_rows.is_empty() {
        let step = grid_step_s(host_rows.iter().map(|e| e.ts_ms.as_slice()))
            .with_context(|| format!("{path}"))?;
        let grid = Grid::of(host_rows.iter().copied(), step)?;
        let series = host_rows
            .iter()
            .map(|e| {
                let id = e.host_id.clone().unwrap_or_default();
                let spec = table.inventory.host(&id);
                let mem = spec
                    .filter(|_| e.mem_used_mib.iter().any(|v| v.is_finite()))
                    .map(|h| {
                        let m: Vec<f64> = e.mem_used_mib.iter().map(|v| v / h.mem_mib).collect();
                        on_grid(&grid, &e.ts_ms, &m, f64::NAN)
                    });
                HostSeries {
                    id,
                    step_s: step,
                    t0_ms: grid.t0,
                    cpu: on_grid(&grid, &e.ts_ms, &e.cpu_util, f64::NAN),
                    mem,
                    net: None,
                    cpu_demand: on_grid(&grid, &e.ts_ms, &e.cpu_demand, f64::NAN),
                    mem_mib: on_grid(&grid, &e.ts_ms, &e.mem_used_mib, f64::NAN),
                }
            })
            .collect();
        return Ok(Hosts {
            series,
            assignment: Vec::new(),
            hosts: table.inventory.hosts.clone(),
            host_level: true,
        });
    }
    place(table, placement)
}

fn place(table: &Table, placement: &Placement) -> anyhow::Result<Hosts> {
    let path = table.path.display();
    if !(placement.target > 0.0 && placement.target <= 1.0) {
        bail!("--target must be in (0, 1], got {}", placement.target);
    }
    let by_mem = match placement.pack.as_str() {
        "cpu" => false,
        "cpu-mem" => true,
        other => bail!("unknown packing {other:?} (cpu or cpu-mem)"),
    };
    let vms: Vec<&Entity> = table
        .entities
        .iter()
        .filter(|e| e.vm_id.is_some())
        .collect();
    if vms.is_empty() {
        bail!("{path}: no VM rows and no host rows");
    }
    let step = grid_step_s(vms.iter().take(2000).map(|e| e.ts_ms.as_slice()))
        .with_context(|| format!("{path}"))?;
    let grid = Grid::of(vms.iter().copied(), step)?;
    let order: HashMap<&str, usize> = table
        .inventory
        .vms
        .iter()
        .enumerate()
        .map(|(i, v)| (v.id.as_str(), i))
        .collect();
    let first_hour = ((placement.window_s / step).round() as usize).max(1);
    struct Vm<'a> {
        e: &'a Entity,
        id: &'a str,
        demand: Vec<f64>,
        key: f64,
        mem_mib: f64,
        order: usize,
    }
    let mut unsized_vms = 0usize;
    let mut list: Vec<Vm<'_>> = Vec::with_capacity(vms.len());
    for e in vms {
        let id = e.vm_id.as_deref().unwrap_or_default();
        let spec = table.inventory.vm(id);
        let cap = spec.map(|s| s.cpu_capacity());
        let d: Vec<f64> = e
            .cpu_demand
            .iter()
            .zip(&e.cpu_util)
            .map(|(d, u)| {
                if d.is_finite() {
                    *d
                } else {
                    cap.map_or(f64::NAN, |c| u * c)
                }
            })
            .collect();
        if d.iter().all(|v| !v.is_finite()) {
            unsized_vms += 1;
            continue;
        }
        let demand = on_grid(&grid, &e.ts_ms, &d, 0.0);
        let start = grid.index(e.ts_ms[0]);
        let head = &demand[start..(start + first_hour).min(grid.len)];
        let key = head.iter().sum::<f64>() / head.len().max(1) as f64;
        list.push(Vm {
            e,
            id,
            demand,
            key,
            mem_mib: spec.map_or(0.0, |s| s.mem_mib),
            order: order.get(id).copied().unwrap_or(usize::MAX),
        });
    }
    if unsized_vms > 0 {
        tracing::warn!(
            unsized_vms,
            "VMs without cpu_demand and absent from the inventory were skipped."
        );
    }
    if list.is_empty() {
        bail!("{path}: no VM has a usable CPU demand (cpu_demand, or cpu_util and an inventory)");
    }
    list.sort_by(|a, b| {
        b.key
            .total_cmp(&a.key)
            .then(a.order.cmp(&b.order))
            .then(a.id.cmp(b.id))
    });
    let unit = table.inventory.cpu_unit;
    let mut hosts: Vec<HostSpec> = Vec::new();
    let mut load_cpu: Vec<f64> = Vec::new();
    let mut load_mem: Vec<f64> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (k, vm) in list.iter().enumerate() {
        let fits = |h: usize| {
            load_cpu[h] + vm.key <= placement.target * hosts[h].cpu_capacity()
                && (!by_mem || load_mem[h] + vm.mem_mib <= placement.target * hosts[h].mem_mib)
        };
        let h = match (0..hosts.len()).find(|h| fits(*h)) {
            Some(h) => h,
            None => {
                hosts.push(host_spec(unit, hosts.len()));
                load_cpu.push(0.0);
                load_mem.push(0.0);
                members.push(Vec::new());
                hosts.len() - 1
            }
        };
        load_cpu[h] += vm.key;
        load_mem[h] += vm.mem_mib;
        members[h].push(k);
    }
    let mut assignment = Vec::with_capacity(list.len());
    let mut series = Vec::with_capacity(hosts.len());
    for (h, spec) in hosts.iter().enumerate() {
        let mut cpu_demand = vec![0.0; grid.len];
        let mut mem_mib = vec![0.0; grid.len];
        let mut net = vec![0.0; grid.len];
        let mut has_mem = false;
        let mut has_net = false;
        for &k in &members[h] {
            let vm = &list[k];
            assignment.push((vm.id.to_owned(), spec.id.clone()));
            for (c, d) in cpu_demand.iter_mut().zip(&vm.demand) {
                *c += d;
            }
            for (i, t) in vm.e.ts_ms.iter().enumerate() {
                let g = grid.index(*t);
                if vm.e.mem_used_mib[i].is_finite() {
                    mem_mib[g] += vm.e.mem_used_mib[i];
                    has_mem = true;
                }
                if vm.e.net_kib_s[i].is_finite() {
                    net[g] += vm.e.net_kib_s[i];
                    has_net = true;
                }
            }
        }
        let cap = spec.cpu_capacity();
        let bw_kib_s = spec.bandwidth_mbit.map(|m| m * 1e6 / 8.0 / 1024.0);
        series.push(HostSeries {
            id: spec.id.clone(),
            step_s: step,
            t0_ms: grid.t0,
            cpu: cpu_demand.iter().map(|d| d / cap).collect(),
            mem: has_mem.then(|| mem_mib.iter().map(|m| m / spec.mem_mib).collect()),
            net: match (has_net, bw_kib_s) {
                (true, Some(bw)) => Some(net.iter().map(|n| n / bw).collect()),
                _ => None,
            },
            cpu_demand,
            mem_mib,
        });
    }
    tracing::info!(
        file = %path,
        vms = list.len(),
        hosts = hosts.len(),
        pack = %placement.pack,
        target = placement.target,
        "Placed VMs on hosts."
    );
    Ok(Hosts {
        series,
        assignment,
        hosts,
        host_level: false,
    })
}

#[derive(Serialize)]
struct PlacementFile<'a> {
    source: String,
    placement: &'a Placement,
    assignment: Vec<(String, String)>,
}

/// Writes host-level rows (vm_id null) with the hosts added to the inventory.
fn write_hosts(out: &Path, table: &Table, hosts: &Hosts) -> anyhow::Result<usize> {
    let mut samples = Vec::new();
    for s in &hosts.series {
        for (i, u) in s.cpu.iter().enumerate() {
            if !u.is_finite() {
                continue;
            }
            let opt = |v: f64| v.is_finite().then_some(v);
            samples.push(Sample {
                ts_ms: s.t0_ms + (i as f64 * s.step_s * 1000.0).round() as i64,
                host_id: Some(s.id.clone()),
                vm_id: None,
                metrics: Metrics {
                    cpu_util: Some(*u),
                    cpu_demand: opt(s.cpu_demand[i]),
                    mem_used_mib: s.mem.as_ref().and_then(|_| opt(s.mem_mib[i])),
                    ..Default::default()
                },
            });
        }
    }
    let mut inv = table.inventory.clone();
    inv.hosts.clone_from(&hosts.hosts);
    inv.source = Some(format!(
        "keel-trainer hosts from {}",
        table
            .path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    ));
    write_samples(out, &samples, &inv, WriteOptions::default())
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(samples.len())
}

/// Runs `keel-trainer hosts`.
///
/// # Errors
/// Any failure, with context.
pub fn run(args: HostsArgs) -> anyhow::Result<()> {
    let table = load(&args.data)?;
    let placement = Placement {
        pack: args.pack.clone(),
        target: args.target,
        window_s: args.placement_window_s,
    };
    let hosts = build(&table, &placement)?;
    let rows = write_hosts(&args.out, &table, &hosts)?;
    let mut side = args.out.clone().into_os_string();
    side.push(".placement.json");
    let side = PathBuf::from(side);
    let pf = PlacementFile {
        source: args.data.display().to_string(),
        placement: &placement,
        assignment: hosts.assignment.clone(),
    };
    let tmp = side.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&pf)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &side).with_context(|| format!("writing {}", side.display()))?;
    println!(
        "{} hosts ({}), {} rows -> {}; placement -> {}",
        hosts.series.len(),
        if hosts.host_level {
            "host-level input"
        } else {
            "placed"
        },
        rows,
        args.out.display(),
        side.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::catalog::cloudsim_vm_type_for;
    use keel_core::inventory::Inventory;

    fn vm(id: &str, util: &[f64]) -> Entity {
        Entity {
            host_id: None,
            vm_id: Some(id.into()),
            ts_ms: (0..util.len() as i64).map(|i| i * 300_000).collect(),
            cpu_util: util.to_vec(),
            cpu_demand: vec![f64::NAN; util.len()],
            mem_used_mib: vec![f64::NAN; util.len()],
            net_kib_s: vec![f64::NAN; util.len()],
            disk_kib_s: vec![f64::NAN; util.len()],
        }
    }

    fn table(n: usize) -> Table {
        let mut inventory = Inventory::default();
        let mut entities = Vec::new();
        for i in 0..n {
            let id = format!("vm{i:03}");
            inventory
                .vms
                .push(cloudsim_vm_type_for(i, n).spec(id.clone()));
            entities.push(vm(&id, &[0.1 + 0.01 * (i % 7) as f64; 24]));
        }
        Table {
            path: "t.parquet".into(),
            inventory,
            rows: n * 24,
            entities,
        }
    }

    #[test]
    fn cpu_packing_is_dense_and_cpu_mem_is_sparse_and_deterministic() {
        let t = table(80);
        let cpu = build(
            &t,
            &Placement {
                pack: "cpu".into(),
                target: 0.7,
                window_s: 3600.0,
            },
        )
        .unwrap();
        let mem = build(
            &t,
            &Placement {
                pack: "cpu-mem".into(),
                target: 0.7,
                window_s: 3600.0,
            },
        )
        .unwrap();
        assert!(
            cpu.series.len() < mem.series.len(),
            "{} vs {}",
            cpu.series.len(),
            mem.series.len()
        );
        assert_eq!(cpu.assignment.len(), 80);
        // Host 0 is a G4, host 1 a G5, utilisation = demand / capacity ≤ target at the start.
        assert_eq!(cpu.hosts[0].cpu_capacity(), 3720.0);
        assert!(cpu.series.iter().all(|s| s.cpu[0] <= 0.7 + 1e-9));
        let again = build(
            &t,
            &Placement {
                pack: "cpu".into(),
                target: 0.7,
                window_s: 3600.0,
            },
        )
        .unwrap();
        assert_eq!(again.assignment, cpu.assignment);
        // Demand is conserved.
        let total: f64 = cpu.series.iter().map(|s| s.cpu_demand[3]).sum();
        let expect: f64 = t
            .inventory
            .vms
            .iter()
            .zip(&t.entities)
            .map(|(v, e)| v.cpu_capacity() * e.cpu_util[3])
            .sum();
        approx::assert_relative_eq!(total, expect, epsilon = 1e-6);
    }

    #[test]
    fn host_level_rows_are_taken_as_they_are() {
        let mut t = table(2);
        let mut h = vm("x", &[0.5, 0.6, 0.7]);
        h.vm_id = None;
        h.host_id = Some("h9".into());
        t.entities.push(h);
        let hs = build(
            &t,
            &Placement {
                pack: "cpu".into(),
                target: 0.7,
                window_s: 3600.0,
            },
        )
        .unwrap();
        assert!(hs.host_level);
        assert_eq!(hs.series.len(), 1);
        assert_eq!(hs.series[0].cpu, vec![0.5, 0.6, 0.7]);
        assert_eq!(hs.series[0].step_s, 300.0);
    }

    #[test]
    fn too_few_samples_is_an_error() {
        let mut t = table(1);
        t.entities[0] = vm("vm000", &[0.5]);
        let e = format!(
            "{:#}",
            build(
                &t,
                &Placement {
                    pack: "cpu".into(),
                    target: 0.7,
                    window_s: 3600.0,
                }
            )
            .unwrap_err()
        );
        assert!(e.contains("too few samples"), "{e}");
    }
}
