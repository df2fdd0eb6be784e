//! Where a host's load comes from.
//!
//! - [`CollectorDir`]: the newest canonical-schema Parquet file the local collector wrote into a
//!   folder (host row for the host's utilisation, VM rows for the VMs on it and their demand).
//! - [`Procfs`]: `/proc/stat` directly when no collector runs (host utilisation only, no VMs).
//! - [`SimFleet`]: a simulated hypervisor shared by agents in one process (`keel-agent cluster`
//!   and the tests): it knows where each VM is, replays each VM's demand from a trace, and is the
//!   dry-run executor's bookkeeping, counting any VM moved from a host it was not on.
//! - [`libvirt::LibvirtLoad`]: the host's running libvirt domains and their CPU demand.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use keel_core::parquet_io::read_samples;
use keel_core::schema::{CPU_DEMAND, CPU_UTIL};
use tracing::warn;

use super::executor::{DryRun, MigrationRequest};

#[path = "load_libvirt.rs"]
pub mod libvirt;

/// One reading of the host's load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// VMs on the host and their CPU demand (absolute units).
    pub vms: Vec<(String, f64)>,
    /// Host CPU use not attributed to any VM (absolute units).
    pub other: f64,
}

/// A source of load readings.
pub trait LoadSource: Send + std::fmt::Debug {
    /// Reads the current load. Never fails: a source that cannot read returns its last reading
    /// (and logs why).
    fn observe(&mut self) -> Observation;
}

/// Reads the collector's newest Parquet file in a folder.
#[derive(Debug)]
pub struct CollectorDir {
    dir: PathBuf,
    host_id: String,
    capacity: f64,
    last: Observation,
}

impl CollectorDir {
    /// Reads `dir` for host `host_id` of CPU `capacity`.
    pub fn new(dir: PathBuf, host_id: String, capacity: f64) -> Self {
        Self {
            dir,
            host_id,
            capacity,
            last: Observation::default(),
        }
    }

    fn newest(&self) -> Option<PathBuf> {
        let rd = std::fs::read_dir(&self.dir).ok()?;
        rd.filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                !n.starts_with('.') && n.ends_with(".parquet")
            })
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .max()
            .map(|(_, p)| p)
    }

    fn read(&self, path: &Path) -> Result<Observation, String> {
        let ds = read_samples(path, Some(&[CPU_UTIL, CPU_DEMAND])).map_err(|e| e.to_string())?;
        let mine = |s: &&keel_core::schema::Sample| s.host_id.as_deref() == Some(&self.host_id);
        let latest = ds.samples.iter().filter(mine).map(|s| s.ts_ms).max();
        let Some(ts) = latest else {
            return Err(format!(
                "{}: no rows for host {}",
                path.display(),
                self.host_id
            ));
        };
        let mut vms: BTreeMap<String, f64> = BTreeMap::new();
        let mut host_used = None;
        for s in ds.samples.iter().filter(mine).filter(|s| s.ts_ms == ts) {
            match &s.vm_id {
                Some(vm) => {
                    let cap = ds.inventory.vm(vm).map(|v| v.cpu_capacity());
                    let d = s
                        .metrics
                        .cpu_demand
                        .or_else(|| Some(s.metrics.cpu_util? * cap?))
                        .unwrap_or(0.0);
                    vms.insert(vm.clone(), d.max(0.0));
                }
                None => host_used = s.metrics.cpu_util.map(|u| u * self.capacity),
            }
        }
        let vm_sum: f64 = vms.values().sum();
        Ok(Observation {
            other: host_used.map_or(0.0, |h| (h - vm_sum).max(0.0)),
            vms: vms.into_iter().collect(),
        })
    }
}

impl LoadSource for CollectorDir {
    fn observe(&mut self) -> Observation {
        match self.newest() {
            None => {
                warn!(dir = %self.dir.display(), "No collector output found; keeping the last reading.")
            }
            Some(p) => match self.read(&p) {
                Ok(o) => self.last = o,
                Err(e) => warn!(error = %e, "Collector output not read; keeping the last reading."),
            },
        }
        self.last.clone()
    }
}

/// Host CPU utilisation from `/proc/stat` (busy share since the previous reading).
#[derive(Debug)]
pub struct Procfs {
    capacity: f64,
    prev: Option<(u64, u64)>,
    last: Observation,
}

impl Procfs {
    /// A reader for a host of CPU `capacity`.
    pub fn new(capacity: f64) -> Self {
        Self {
            capacity,
            prev: None,
            last: Observation::default(),
        }
    }

    /// (busy, total) jiffies from the first line of `/proc/stat` text.
    pub fn parse_stat(text: &str) -> Option<(u64, u64)> {
        let line = text.lines().next()?;
        let mut it = line.split_whitespace();
        if it.next()? != "cpu" {
            return None;
        }
        let v: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
        if v.len() < 4 {
            return None;
        }
        let total: u64 = v.iter().take(8).sum();
        let idle = v[3] + v.get(4).copied().unwrap_or(0);
        Some((total - idle, total))
    }
}

impl LoadSource for Procfs {
    fn observe(&mut self) -> Observation {
        let now = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| Self::parse_stat(&t));
        if let (Some((b1, t1)), Some((b0, t0))) = (now, self.prev) {
            if t1 > t0 {
                let u = (b1.saturating_sub(b0)) as f64 / (t1 - t0) as f64;
                self.last = Observation {
                    vms: Vec::new(),
                    other: u * self.capacity,
                };
            }
        }
        if now.is_some() {
            self.prev = now;
        }
        self.last.clone()
    }
}

/// Per-VM demand replayed from a trace at a speed-up.
#[derive(Debug, Clone)]
pub struct Traces {
    /// Demand per VM per step (absolute units).
    pub series: HashMap<String, Vec<f64>>,
    /// Trace seconds per step.
    pub step_s: f64,
    /// Trace seconds per wall second.
    pub speedup: f64,
    /// Wall-clock start. Before it the trace has not begun: hosts show no VMs, so no agent has
    /// anything to negotiate about (a fleet can settle its membership first).
    pub start: std::time::Instant,
}

impl Traces {
    /// The step index now (wrapping at the end of the trace).
    pub fn step_now(&self, len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        let trace_s = self.start.elapsed().as_secs_f64() * self.speedup;
        ((trace_s / self.step_s) as usize) % len
    }
}

#[derive(Debug, Default)]
struct Fleet {
    /// VM → host it is on.
    placement: BTreeMap<String, String>,
    /// VM → constant demand (when no trace).
    demand: HashMap<String, f64>,
    traces: Option<Traces>,
    moves: u64,
    conflicts: u64,
}

/// A simulated hypervisor layer shared by in-process agents.
#[derive(Debug, Default)]
pub struct SimFleet {
    /// Everything behind one lock: placement changes and reads are atomic.
    inner: Mutex<Fleet>,
}

impl SimFleet {
    /// A fleet with VMs placed and constant demands: `(vm, host, demand)`.
    pub fn new(vms: &[(&str, &str, f64)]) -> Arc<Self> {
        let mut f = Fleet::default();
        for (vm, host, d) in vms {
            f.placement.insert((*vm).to_string(), (*host).to_string());
            f.demand.insert((*vm).to_string(), *d);
        }
        Arc::new(Self {
            inner: Mutex::new(f),
        })
    }

    /// A fleet whose demands follow traces.
    pub fn with_traces(placement: BTreeMap<String, String>, traces: Traces) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Fleet {
                placement,
                traces: Some(traces),
                ..Fleet::default()
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Fleet> {
        self.inner.lock().expect("fleet lock is never poisoned")
    }

    /// Starts the trace at `start` (see [`Traces::start`]); nothing without traces.
    pub fn start_traces_at(&self, start: std::time::Instant) {
        if let Some(t) = self.lock().traces.as_mut() {
            t.start = start;
        }
    }

    /// Where every VM is now.
    pub fn placement(&self) -> BTreeMap<String, String> {
        self.lock().placement.clone()
    }

    /// Sets a VM's constant demand.
    pub fn set_demand(&self, vm: &str, d: f64) {
        self.lock().demand.insert(vm.to_string(), d);
    }

    /// Where a VM is.
    pub fn host_of(&self, vm: &str) -> Option<String> {
        self.lock().placement.get(vm).cloned()
    }

    /// VMs on a host.
    pub fn vms_on(&self, host: &str) -> Vec<String> {
        self.lock()
            .placement
            .iter()
            .filter(|(_, h)| *h == host)
            .map(|(v, _)| v.clone())
            .collect()
    }

    /// Migrations carried out.
    pub fn moves(&self) -> u64 {
        self.lock().moves
    }

    /// Migrations refused because the VM was not on the source (a VM promised twice).
    pub fn conflicts(&self) -> u64 {
        self.lock().conflicts
    }

    /// Number of VMs.
    pub fn len(&self) -> usize {
        self.lock().placement.len()
    }

    /// Whether the fleet has no VMs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves a VM (the dry-run executor's hook).
    ///
    /// # Errors
    /// When the VM is not on the source: counted as a conflict.
    pub fn migrate(&self, req: &MigrationRequest) -> Result<(), String> {
        let mut f = self.lock();
        match f.placement.get(&req.vm).cloned() {
            Some(h) if h == req.source => {
                f.placement.insert(req.vm.clone(), req.target.clone());
                f.moves += 1;
                Ok(())
            }
            other => {
                f.conflicts += 1;
                Err(format!(
                    "vm {} is on {:?}, not on source {}",
                    req.vm, other, req.source
                ))
            }
        }
    }

    /// The dry-run executor bound to this fleet.
    pub fn executor(self: &Arc<Self>) -> DryRun {
        let me = Arc::clone(self);
        DryRun {
            hook: Some(Arc::new(move |r: &MigrationRequest| me.migrate(r))),
        }
    }

    /// The load source of one host.
    pub fn load_for(self: &Arc<Self>, host: &str) -> Box<dyn LoadSource> {
        Box::new(SimLoad {
            fleet: Arc::clone(self),
            host: host.to_string(),
        })
    }

    fn observe(&self, host: &str) -> Observation {
        let f = self.lock();
        if f.traces
            .as_ref()
            .is_some_and(|t| std::time::Instant::now() < t.start)
        {
            return Observation::default();
        }
        let vms = f
            .placement
            .iter()
            .filter(|(_, h)| *h == host)
            .map(|(vm, _)| {
                let d = match &f.traces {
                    Some(t) => t
                        .series
                        .get(vm)
                        .map_or(0.0, |s| s.get(t.step_now(s.len())).copied().unwrap_or(0.0)),
                    None => f.demand.get(vm).copied().unwrap_or(0.0),
                };
                (vm.clone(), d)
            })
            .collect();
        Observation { vms, other: 0.0 }
    }
}

#[derive(Debug)]
struct SimLoad {
    fleet: Arc<SimFleet>,
    host: String,
}

impl LoadSource for SimLoad {
    fn observe(&mut self) -> Observation {
        self.fleet.observe(&self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::inventory::Inventory;
    use keel_core::parquet_io::write_samples;
    use keel_core::schema::{Metrics, Sample};

    #[test]
    fn proc_stat_parses() {
        let t = "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(Procfs::parse_stat(t), Some((200, 1000)));
        assert_eq!(Procfs::parse_stat("bogus"), None);
    }

    #[test]
    fn fleet_refuses_moving_a_vm_from_the_wrong_host() {
        let f = SimFleet::new(&[("v1", "a", 10.0)]);
        let r = |s: &str, t: &str| MigrationRequest {
            neg: "x".into(),
            vm: "v1".into(),
            source: s.into(),
            target: t.into(),
            target_uri: None,
        };
        assert!(f.migrate(&r("a", "b")).is_ok());
        assert!(f.migrate(&r("a", "c")).is_err());
        assert_eq!(f.host_of("v1").as_deref(), Some("b"));
        assert_eq!((f.moves(), f.conflicts()), (1, 1));
    }

    #[test]
    fn collector_dir_reads_the_newest_file() {
        let dir = tempfile::tempdir().unwrap();
        let row = |ts, vm: Option<&str>, util, demand| Sample {
            ts_ms: ts,
            host_id: Some("h1".into()),
            vm_id: vm.map(String::from),
            metrics: Metrics {
                cpu_util: Some(util),
                cpu_demand: demand,
                ..Metrics::default()
            },
        };
        let samples = vec![
            row(1000, None, 0.1, None),
            row(2000, None, 0.5, None),
            row(2000, Some("vm-a"), 0.9, Some(300.0)),
            row(2000, Some("vm-b"), 0.9, Some(100.0)),
        ];
        write_samples(
            &dir.path().join("host-1.parquet"),
            &samples,
            &Inventory::default(),
            Default::default(),
        )
        .unwrap();
        let mut c = CollectorDir::new(dir.path().to_path_buf(), "h1".into(), 1000.0);
        let o = c.observe();
        assert_eq!(o.vms, vec![("vm-a".into(), 300.0), ("vm-b".into(), 100.0)]);
        assert!((o.other - 100.0).abs() < 1e-9);
        let mut missing = CollectorDir::new(dir.path().join("nope"), "h1".into(), 1.0);
        assert_eq!(missing.observe(), Observation::default());
    }
}
