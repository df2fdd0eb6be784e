//! Host metrics from procfs, read under a configurable root so that every parser runs on fixture
//! trees in tests (as node_exporter's `--path.procfs` / `--path.sysfs`).
//!
//! Per round: `/proc/stat` per-mode CPU times (clamped monotonic per mode, since iowait can step
//! backwards) become fractions of all CPU time in the round; `meminfo` gives memory in use
//! (`MemTotal - MemAvailable`); `loadavg` the load; `net/dev` per-interface byte counters become
//! KiB/s (resets yield no value for that interface that round); `diskstats` per whole device
//! (`/sys/block/<dev>` exists, loop and ram devices skipped) sectors become KiB/s; and
//! `pressure/{cpu,memory,io}` `avg10` becomes a 0..1 fraction. A file that is missing or does not
//! parse leaves its metrics null (never zero) and is logged once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use keel_core::schema::{Metrics, Sample};
use procfs::{FromBufRead, FromBufReadSI};

use super::{Detail, Round};
use crate::rate::{Monotonic, Rate};

pub use crate::series::{
    CPU_MODES as MODES, M_HOST_BLOCKDEV, M_HOST_CPU_MODE, M_HOST_NETDEV, M_HOST_SYSTEM,
};

/// Where and what to read.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The host id written in every row.
    pub host_id: String,
    /// procfs root (normally `/proc`).
    pub proc_root: PathBuf,
    /// sysfs root (normally `/sys`).
    pub sys_root: PathBuf,
    /// Interface name prefixes left out of the host's network totals (still reported per
    /// interface unless `lo`). VM taps and bridges double-count guest traffic on a hypervisor.
    pub net_exclude: Vec<String>,
}

#[derive(Debug, Default)]
struct DevState {
    a: Rate,
    b: Rate,
}

/// The host source: holds the previous counters.
#[derive(Debug)]
pub struct HostSource {
    cfg: HostConfig,
    cpu: [Monotonic; 8],
    cpu_prev: Option<[u64; 8]>,
    net: HashMap<String, DevState>,
    disk: HashMap<String, DevState>,
    /// Files whose failure has been logged already (log once, not every round).
    warned: HashSet<&'static str>,
    /// Read failures since the last [`HostSource::take_errors`].
    errors: u64,
}

fn mode_values(c: &procfs::CpuTime) -> [u64; 8] {
    [
        c.user,
        c.nice,
        c.system,
        c.idle,
        c.iowait.unwrap_or(0),
        c.irq.unwrap_or(0),
        c.softirq.unwrap_or(0),
        c.steal.unwrap_or(0),
    ]
}

/// CPU fractions computed from one round's per-mode deltas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuFractions {
    /// Fraction per mode, in [`MODES`] order; sums to 1.
    pub modes: [f64; 8],
}

impl CpuFractions {
    /// Busy fraction: everything but idle, iowait and steal.
    pub fn util(&self) -> f64 {
        1.0 - self.modes[3] - self.modes[4] - self.modes[7]
    }
}

/// Fractions from two clamped readings; `None` if no time passed.
pub fn cpu_fractions(prev: &[u64; 8], now: &[u64; 8]) -> Option<CpuFractions> {
    let d: Vec<u64> = now
        .iter()
        .zip(prev)
        .map(|(n, p)| n.saturating_sub(*p))
        .collect();
    let total: u64 = d.iter().sum();
    if total == 0 {
        return None;
    }
    let mut modes = [0.0; 8];
    for (m, v) in modes.iter_mut().zip(&d) {
        *m = *v as f64 / total as f64;
    }
    Some(CpuFractions { modes })
}

fn open(path: &Path) -> std::io::Result<std::io::BufReader<std::fs::File>> {
    std::fs::File::open(path).map(std::io::BufReader::new)
}

impl HostSource {
    /// A source reading under `cfg`'s roots.
    pub fn new(cfg: HostConfig) -> Self {
        Self {
            cfg,
            cpu: [Monotonic::default(); 8],
            cpu_prev: None,
            net: HashMap::new(),
            disk: HashMap::new(),
            warned: HashSet::new(),
            errors: 0,
        }
    }

    /// Read failures since the previous call (for the `source_errors` self-metric).
    pub fn take_errors(&mut self) -> u64 {
        std::mem::take(&mut self.errors)
    }

    fn proc(&self, rel: &str) -> PathBuf {
        self.cfg.proc_root.join(rel)
    }

    fn warn_once(&mut self, what: &'static str, path: &Path, err: &dyn std::fmt::Display) {
        self.errors += 1;
        if self.warned.insert(what) {
            tracing::warn!(path = %path.display(), error = %err, "Cannot read host metrics; leaving them null.");
        }
    }

    /// Reads everything once and appends the host row and its breakdowns to `round`.
    /// `dt_s` is the monotonic time since the previous poll (ignored on the first).
    pub fn poll(&mut self, round: &mut Round, dt_s: f64) {
        let mut m = Metrics::default();
        let host = self.cfg.host_id.clone();
        self.poll_cpu(&mut m, round, &host);
        self.poll_mem_load(&mut m, round, &host);
        self.poll_net(&mut m, round, &host, dt_s);
        self.poll_disk(&mut m, round, &host, dt_s);
        self.poll_psi(&mut m);
        round.samples.push(Sample {
            ts_ms: round.ts_ms,
            host_id: Some(host),
            vm_id: None,
            metrics: m,
        });
    }

    fn poll_cpu(&mut self, m: &mut Metrics, round: &mut Round, host: &str) {
        let path = self.proc("stat");
        // Ticks per second only scale the absolute times; fractions do not depend on it.
        let si = procfs::ExplicitSystemInfo {
            boot_time_secs: 0,
            ticks_per_second: 100,
            page_size: 4096,
            is_little_endian: cfg!(target_endian = "little"),
        };
        let stats = match open(&path)
            .map_err(|e| e.to_string())
            .and_then(|r| procfs::KernelStats::from_buf_read(r, &si).map_err(|e| e.to_string()))
        {
            Ok(s) => s,
            Err(e) => return self.warn_once("stat", &path, &e),
        };
        let raw = mode_values(&stats.total);
        let mut now = [0u64; 8];
        for ((n, r), mono) in now.iter_mut().zip(raw).zip(self.cpu.iter_mut()) {
            *n = mono.clamp(r);
        }
        if let Some(prev) = self.cpu_prev.replace(now) {
            if let Some(f) = cpu_fractions(&prev, &now) {
                m.cpu_util = Some(f.util());
                m.cpu_iowait = Some(f.modes[4]);
                m.cpu_steal = stats.total.steal.map(|_| f.modes[7]);
                round.details.push(Detail {
                    measurement: M_HOST_CPU_MODE,
                    tags: vec![("host", host.to_owned())],
                    fields: MODES.iter().copied().zip(f.modes).collect(),
                });
            }
        }
    }

    fn poll_mem_load(&mut self, m: &mut Metrics, round: &mut Round, host: &str) {
        const MIB: f64 = 1024.0 * 1024.0;
        let mut fields = Vec::new();
        let path = self.proc("meminfo");
        match open(&path)
            .map_err(|e| e.to_string())
            .and_then(|r| procfs::Meminfo::from_buf_read(r).map_err(|e| e.to_string()))
        {
            Ok(mi) => {
                let avail = mi
                    .mem_available
                    .unwrap_or(mi.mem_free + mi.buffers + mi.cached);
                let used = mi.mem_total.saturating_sub(avail) as f64 / MIB;
                m.mem_used_mib = Some(used);
                fields.push(("mem_total_mib", mi.mem_total as f64 / MIB));
                fields.push(("mem_available_mib", avail as f64 / MIB));
            }
            Err(e) => self.warn_once("meminfo", &path, &e),
        }
        let path = self.proc("loadavg");
        match open(&path).map_err(|e| e.to_string()).and_then(|r| {
            <procfs::LoadAverage as procfs::FromRead>::from_read(r).map_err(|e| e.to_string())
        }) {
            Ok(l) => {
                fields.push(("load1", f64::from(l.one)));
                fields.push(("load5", f64::from(l.five)));
                fields.push(("load15", f64::from(l.fifteen)));
            }
            Err(e) => self.warn_once("loadavg", &path, &e),
        }
        if !fields.is_empty() {
            round.details.push(Detail {
                measurement: M_HOST_SYSTEM,
                tags: vec![("host", host.to_owned())],
                fields,
            });
        }
    }

    fn poll_net(&mut self, m: &mut Metrics, round: &mut Round, host: &str, dt_s: f64) {
        let path = self.proc("net/dev");
        let devs = match open(&path).map_err(|e| e.to_string()).and_then(|r| {
            procfs::net::InterfaceDeviceStatus::from_buf_read(r).map_err(|e| e.to_string())
        }) {
            Ok(d) => d,
            Err(e) => return self.warn_once("net/dev", &path, &e),
        };
        let mut names: Vec<&String> = devs.0.keys().collect();
        names.sort();
        let (mut rx_sum, mut tx_sum, mut any) = (0.0, 0.0, false);
        let mut seen = HashSet::new();
        for name in names {
            let d = &devs.0[name];
            seen.insert(name.clone());
            let st = self.net.entry(name.clone()).or_default();
            let rx = st.a.update(d.recv_bytes, dt_s).map(|b| b / 1024.0);
            let tx = st.b.update(d.sent_bytes, dt_s).map(|b| b / 1024.0);
            if name == "lo" {
                continue;
            }
            let excluded = self
                .cfg
                .net_exclude
                .iter()
                .any(|p| name.starts_with(p.as_str()));
            if let (Some(rx), Some(tx)) = (rx, tx) {
                if !excluded {
                    rx_sum += rx;
                    tx_sum += tx;
                    any = true;
                }
                round.details.push(Detail {
                    measurement: M_HOST_NETDEV,
                    tags: vec![("host", host.to_owned()), ("interface", name.clone())],
                    fields: vec![("rx_kib_s", rx), ("tx_kib_s", tx)],
                });
            }
        }
        // Interfaces that vanished: forget them so a recreated one starts afresh.
        self.net.retain(|k, _| seen.contains(k));
        if any {
            m.net_rx_kib_s = Some(rx_sum);
            m.net_tx_kib_s = Some(tx_sum);
        }
    }

    /// Whether `name` is a whole disk worth reporting.
    fn is_whole_disk(&self, name: &str) -> bool {
        if name.starts_with("loop") || name.starts_with("ram") || name.starts_with("zram") {
            return false;
        }
        let block = self.cfg.sys_root.join("block");
        if block.is_dir() {
            block.join(name).exists()
        } else {
            // No sysfs: fall back to "not a partition" by name (sda1, nvme0n1p1, vda2 ...).
            let partition = name.starts_with("nvme") && name.contains('p')
                || (!name.starts_with("nvme")
                    && !name.starts_with("dm-")
                    && !name.starts_with("md")
                    && name.ends_with(|c: char| c.is_ascii_digit()));
            !partition
        }
    }

    fn poll_disk(&mut self, m: &mut Metrics, round: &mut Round, host: &str, dt_s: f64) {
        let path = self.proc("diskstats");
        let stats = match open(&path)
            .map_err(|e| e.to_string())
            .and_then(|r| procfs::DiskStats::from_buf_read(r).map_err(|e| e.to_string()))
        {
            Ok(d) => d,
            Err(e) => return self.warn_once("diskstats", &path, &e),
        };
        let (mut rd, mut wr, mut any) = (0.0, 0.0, false);
        let mut seen = HashSet::new();
        for d in &stats.0 {
            if !self.is_whole_disk(&d.name) {
                continue;
            }
            seen.insert(d.name.clone());
            let st = self.disk.entry(d.name.clone()).or_default();
            // Sectors in diskstats are always 512 bytes: KiB = sectors / 2.
            let r = st.a.update(d.sectors_read, dt_s).map(|s| s / 2.0);
            let w = st.b.update(d.sectors_written, dt_s).map(|s| s / 2.0);
            if let (Some(r), Some(w)) = (r, w) {
                rd += r;
                wr += w;
                any = true;
                round.details.push(Detail {
                    measurement: M_HOST_BLOCKDEV,
                    tags: vec![("host", host.to_owned()), ("device", d.name.clone())],
                    fields: vec![("read_kib_s", r), ("write_kib_s", w)],
                });
            }
        }
        self.disk.retain(|k, _| seen.contains(k));
        if any {
            m.disk_read_kib_s = Some(rd);
            m.disk_write_kib_s = Some(wr);
        }
    }

    fn poll_psi(&mut self, m: &mut Metrics) {
        let frac = |r: &procfs::PressureRecord| f64::from(r.avg10) / 100.0;
        for (file, what) in [
            ("cpu", "pressure/cpu"),
            ("memory", "pressure/memory"),
            ("io", "pressure/io"),
        ] {
            let path = self.proc("pressure").join(file);
            let (some, full) = match read_pressure(&path) {
                Ok(r) => r,
                Err(e) => {
                    self.warn_once(what, &path, &e);
                    continue;
                }
            };
            let (s, f) = (some.as_ref().map(frac), full.as_ref().map(frac));
            match file {
                "cpu" => m.psi_cpu_some = s,
                "memory" => (m.psi_mem_some, m.psi_mem_full) = (s, f),
                _ => (m.psi_io_some, m.psi_io_full) = (s, f),
            }
        }
    }
}

type Pressure = (
    Option<procfs::PressureRecord>,
    Option<procfs::PressureRecord>,
);

/// Reads a PSI file: a `some` line and (except for `cpu` on kernels before 5.13) a `full` line.
fn read_pressure(path: &Path) -> Result<Pressure, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let (mut some, mut full) = (None, None);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        // The parser slices after the 5-byte `some `/`full ` prefix: refuse shorter lines first.
        if line.len() <= 5 || !line.is_char_boundary(5) {
            return Err(format!("malformed line {line:?}"));
        }
        let rec = procfs::parse_pressure_record(line).map_err(|e| format!("{e}: {line:?}"))?;
        if line.starts_with("some") {
            some = Some(rec);
        } else if line.starts_with("full") {
            full = Some(rec);
        }
    }
    if some.is_none() {
        return Err("no `some` line".into());
    }
    Ok((some, full))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel)
    }

    fn source(snapshot: &str) -> HostSource {
        HostSource::new(HostConfig {
            host_id: "h1".into(),
            proc_root: fixture(&format!("host/{snapshot}/proc")),
            sys_root: fixture(&format!("host/{snapshot}/sys")),
            net_exclude: vec!["lo".into(), "vnet".into()],
        })
    }

    /// Polls `t0` then `t1` two seconds later, the way the loop does.
    fn two_rounds() -> Round {
        let mut s = source("t0");
        s.poll(&mut Round::default(), 0.0);
        s.cfg.proc_root = fixture("host/t1/proc");
        s.cfg.sys_root = fixture("host/t1/sys");
        let mut r = Round {
            ts_ms: 42,
            ..Round::default()
        };
        s.poll(&mut r, 2.0);
        crate::series::check_round(&r).expect("every point is in the series catalogue");
        r
    }

    #[test]
    fn first_round_has_levels_but_no_rates() {
        let mut r = Round::default();
        source("t0").poll(&mut r, 0.0);
        let m = r.samples[0].metrics;
        assert_eq!(m.cpu_util, None);
        assert_eq!(m.net_rx_kib_s, None);
        assert_abs_diff_eq!(m.mem_used_mib.unwrap(), 8000.0, epsilon = 1e-9);
        assert_abs_diff_eq!(m.psi_cpu_some.unwrap(), 0.125, epsilon = 1e-6);
    }

    #[test]
    fn cpu_fractions_clamp_iowait_going_backwards() {
        let r = two_rounds();
        let s = &r.samples[0];
        assert_eq!(
            (s.ts_ms, s.host_id.as_deref(), s.vm_id.as_deref()),
            (42, Some("h1"), None)
        );
        let m = s.metrics;
        // Deltas: user 600, system 200, idle 900, iowait 90-100 → clamped 0, irq 50, softirq 50,
        // steal 200: total 2000.
        assert_abs_diff_eq!(m.cpu_util.unwrap(), 0.45, epsilon = 1e-12);
        assert_abs_diff_eq!(m.cpu_steal.unwrap(), 0.10, epsilon = 1e-12);
        assert_abs_diff_eq!(m.cpu_iowait.unwrap(), 0.0, epsilon = 1e-12);
        let cpu = r
            .details
            .iter()
            .find(|d| d.measurement == M_HOST_CPU_MODE)
            .unwrap();
        let sum: f64 = cpu.fields.iter().map(|(_, v)| v).sum();
        assert_abs_diff_eq!(sum, 1.0, epsilon = 1e-12);
    }

    #[test]
    fn net_and_disk_rates_with_exclusions_and_resets() {
        let r = two_rounds();
        let m = r.samples[0].metrics;
        // eth0 only: lo and vnet* excluded; vnet0's counter went down (tap recreated).
        assert_abs_diff_eq!(m.net_rx_kib_s.unwrap(), 1024.0, epsilon = 1e-9);
        assert_abs_diff_eq!(m.net_tx_kib_s.unwrap(), 2048.0, epsilon = 1e-9);
        let nets: Vec<_> = r
            .details
            .iter()
            .filter(|d| d.measurement == M_HOST_NETDEV)
            .map(|d| d.tags[1].1.as_str())
            .collect();
        assert_eq!(
            nets,
            ["eth0"],
            "vnet0 reset gives no rate; lo never reported"
        );
        // sda + nvme0n1 (whole disks); sda1 is a partition, loop0 skipped.
        assert_abs_diff_eq!(m.disk_read_kib_s.unwrap(), 1024.0, epsilon = 1e-9);
        assert_abs_diff_eq!(m.disk_write_kib_s.unwrap(), 2048.0, epsilon = 1e-9);
        let disks: Vec<_> = r
            .details
            .iter()
            .filter(|d| d.measurement == M_HOST_BLOCKDEV)
            .map(|d| d.tags[1].1.as_str())
            .collect();
        assert_eq!(disks, ["sda", "nvme0n1"]);
    }

    #[test]
    fn psi_memory_and_load() {
        let r = two_rounds();
        let m = r.samples[0].metrics;
        assert_abs_diff_eq!(m.psi_mem_some.unwrap(), 0.01, epsilon = 1e-6);
        assert_abs_diff_eq!(m.psi_mem_full.unwrap(), 0.005, epsilon = 1e-6);
        assert_abs_diff_eq!(m.psi_io_some.unwrap(), 0.25, epsilon = 1e-6);
        assert_abs_diff_eq!(m.psi_io_full.unwrap(), 0.10, epsilon = 1e-6);
        let sys = r
            .details
            .iter()
            .find(|d| d.measurement == M_HOST_SYSTEM)
            .unwrap();
        assert!(sys.fields.contains(&("load1", 1.5)));
    }

    #[test]
    fn garbage_and_missing_files_give_nulls_not_panics() {
        for snap in ["garbage", "does-not-exist"] {
            let mut s = source(snap);
            let mut r = Round::default();
            s.poll(&mut r, 0.0);
            s.poll(&mut r, 1.0);
            let m = r.samples[1].metrics;
            assert_eq!(m, Metrics::default(), "{snap}: every metric null");
            assert!(s.take_errors() >= 14, "{snap}: every failed read counted");
        }
    }

    proptest::proptest! {
        /// Whatever the raw counters do (including going backwards), the clamped fractions are
        /// each in [0, 1] and sum to 1.
        #[test]
        fn fractions_are_a_distribution(rounds in proptest::collection::vec(
            proptest::array::uniform8(0u64..1_000_000), 2..20)) {
            let mut mono = [Monotonic::default(); 8];
            let mut prev: Option<[u64; 8]> = None;
            for raw in rounds {
                let mut now = [0u64; 8];
                for ((n, r), m) in now.iter_mut().zip(raw).zip(mono.iter_mut()) {
                    *n = m.clamp(r);
                }
                if let Some(p) = prev {
                    if let Some(f) = cpu_fractions(&p, &now) {
                        proptest::prop_assert!(f.modes.iter().all(|v| (0.0..=1.0).contains(v)));
                        proptest::prop_assert!((f.modes.iter().sum::<f64>() - 1.0).abs() < 1e-9);
                        proptest::prop_assert!((-1e-9..=1.0 + 1e-9).contains(&f.util()));
                    }
                }
                prev = Some(now);
            }
        }
    }

    #[test]
    fn fractions_need_time() {
        assert_eq!(cpu_fractions(&[1; 8], &[1; 8]), None);
    }
}
