//! VM discovery from the cgroup tree, for hosts without libvirt (or where its API is off-limits).
//!
//! libvirt and systemd-machined put each QEMU guest in a scope under `machine.slice`, named
//! `machine-qemu\x2d<N>\x2d<name>.scope`. Both layouts are read:
//! - **v2** (unified): `<root>/machine.slice/<scope>/cpu.stat` (`usage_usec`), `memory.current`,
//!   `io.stat` (`rbytes=`/`wbytes=` per device), `cpu.pressure`/`memory.pressure`/`io.pressure`;
//! - **v1**: `<root>/cpuacct/machine.slice/<scope>/cpuacct.usage` (ns),
//!   `<root>/memory/…/memory.usage_in_bytes`, `<root>/blkio/…/blkio.throttle.io_service_bytes`.
//!
//! The VM's UUID and vCPU count come from the QEMU command line of a process in the scope
//! (`-uuid`, `-smp`), read under the procfs root; without a UUID the scope's VM name is the id.
//! vCPU delay (`cpu_delay`: the fraction of time the VM's vCPUs waited for a host CPU, what
//! libvirt calls `vcpu.N.delay`) comes from `/proc/<tid>/schedstat` of the scope's `CPU N/KVM`
//! threads.
//! CPU time becomes utilisation of the VM's vCPUs (`cpu_util`, null when the vCPU count is
//! unknown); counters that go down (the VM restarted) give no value for that round.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use keel_core::schema::{Metrics, Sample};

use super::{Detail, Round};
use crate::rate::Rate;

pub use crate::series::M_VM_CGROUP;

/// Which cgroup layout a root has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Unified hierarchy.
    V2,
    /// Per-controller hierarchies.
    V1,
}

/// Detects the layout: v2 if `<root>/cgroup.controllers` exists, v1 if `<root>/cpuacct` does.
pub fn detect(root: &Path) -> Option<Layout> {
    if root.join("cgroup.controllers").exists() {
        Some(Layout::V2)
    } else if root.join("cpuacct").is_dir() || root.join("cpu,cpuacct").is_dir() {
        Some(Layout::V1)
    } else {
        None
    }
}

/// Decodes systemd's `\xNN` escapes in unit names.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            if let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                out.push(char::from(v));
                i += 4;
                continue;
            }
        }
        out.push(char::from(b[i]));
        i += 1;
    }
    out
}

/// The VM name in a libvirt scope name (`machine-qemu-3-web1.scope` → `web1`).
pub fn vm_name(scope: &str) -> Option<String> {
    let s = unescape(scope.strip_suffix(".scope")?);
    let rest = s.strip_prefix("machine-")?;
    let rest = rest
        .strip_prefix("qemu-")
        .or_else(|| rest.strip_prefix("kvm-"))
        .unwrap_or(rest);
    // libvirt prefixes an instance number: `3-web1`.
    let name = match rest.split_once('-') {
        Some((n, name)) if n.chars().all(|c| c.is_ascii_digit()) => name,
        _ => rest,
    };
    Some(name.to_owned())
}

/// `-uuid` and vCPU count from a QEMU command line (NUL-separated).
pub fn parse_qemu_cmdline(cmdline: &str) -> (Option<String>, Option<u32>) {
    let args: Vec<&str> = cmdline.split('\0').collect();
    let mut uuid = None;
    let mut vcpus = None;
    for w in args.windows(2) {
        match w[0] {
            "-uuid" => uuid = Some(w[1].to_owned()),
            "-smp" => {
                let first = w[1].split(',').next().unwrap_or("");
                vcpus = first.parse().ok().or_else(|| {
                    w[1].split(',')
                        .find_map(|kv| kv.strip_prefix("cpus="))
                        .and_then(|v| v.parse().ok())
                });
            }
            _ => {}
        }
    }
    (uuid, vcpus)
}

#[derive(Debug, Default)]
struct VmState {
    cpu: Rate,
    delay: Rate,
    rd: Rate,
    wr: Rate,
    id: Option<(String, Option<u32>)>,
}

/// The cgroup VM source.
#[derive(Debug)]
pub struct CgroupSource {
    root: PathBuf,
    proc_root: PathBuf,
    vms: HashMap<String, VmState>,
    warned: bool,
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Sums `rbytes`/`wbytes` over the devices of a v2 `io.stat`.
pub fn parse_io_stat(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for kv in text.split_whitespace() {
        if let Some(v) = kv.strip_prefix("rbytes=") {
            r += v.parse::<u64>().unwrap_or(0);
        } else if let Some(v) = kv.strip_prefix("wbytes=") {
            w += v.parse::<u64>().unwrap_or(0);
        }
    }
    (r, w)
}

/// Sums `Read`/`Write` bytes over the devices of a v1 `blkio.throttle.io_service_bytes`.
pub fn parse_blkio(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [_, op, v] = f[..] {
            let v = v.parse::<u64>().unwrap_or(0);
            match op {
                "Read" => r += v,
                "Write" => w += v,
                _ => {}
            }
        }
    }
    (r, w)
}

/// One scope's raw readings.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ScopeReading {
    /// CPU time, ns.
    pub cpu_ns: Option<u64>,
    /// Memory in use, bytes.
    pub mem_bytes: Option<u64>,
    /// Bytes read and written.
    pub io: Option<(u64, u64)>,
    /// `cpu.pressure` some avg10 (v2 only), percent.
    pub psi_cpu_some: Option<f64>,
    /// A pid in the scope.
    pub pid: Option<u32>,
    /// Thread ids in the scope (`cgroup.threads` on v2, `tasks` on v1), for vCPU delay.
    pub tids: Vec<u32>,
}

/// Thread ids listed in a cgroup file; a missing file gives none.
fn ids(p: &Path) -> Vec<u32> {
    std::fs::read_to_string(p)
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Threads of the scope and its sub-groups (recent libvirt puts vCPUs in `libvirt/vcpuN`).
fn tids_under(dir: &Path, file: &str) -> Vec<u32> {
    let mut out = ids(&dir.join(file));
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    out.extend(ids(&p.join(file)));
                    stack.push(p);
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Total run-queue wait (ns) of the QEMU vCPU threads (`comm` "CPU N/KVM" or "CPU N/TCG") among `tids`, from
/// `/proc/<tid>/schedstat` (second field: time spent waiting for a CPU). This is what libvirt
/// reports as `vcpu.N.delay`: the host-side steal a guest suffers. `None` if no vCPU thread.
pub fn vcpu_wait_ns(proc_root: &Path, tids: &[u32]) -> Option<u64> {
    let mut total = None;
    for tid in tids {
        let dir = proc_root.join(tid.to_string());
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        let comm = comm.trim();
        // "CPU N/KVM" under KVM, "CPU N/TCG" under QEMU's software emulation.
        if !(comm.starts_with("CPU ") && (comm.ends_with("/KVM") || comm.ends_with("/TCG"))) {
            continue;
        }
        let wait = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok());
        if let Some(w) = wait {
            total = Some(total.unwrap_or(0) + w);
        }
    }
    total
}

fn first_pid(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

fn psi_some_avg10(p: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(p).ok()?;
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix("avg10="))?
        .parse()
        .ok()
}

/// Reads one scope under `layout`.
pub fn read_scope(root: &Path, layout: Layout, scope: &str) -> ScopeReading {
    match layout {
        Layout::V2 => {
            let d = root.join("machine.slice").join(scope);
            let cpu_ns = std::fs::read_to_string(d.join("cpu.stat"))
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("usage_usec "))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|us| us * 1000)
                });
            // The emulator's processes live in `<scope>/libvirt/emulator` on recent libvirt.
            let pid = first_pid(&d)
                .or_else(|| first_pid(&d.join("libvirt/emulator")))
                .or_else(|| first_pid(&d.join("libvirt")));
            ScopeReading {
                cpu_ns,
                mem_bytes: read_u64(&d.join("memory.current")),
                io: std::fs::read_to_string(d.join("io.stat"))
                    .ok()
                    .map(|t| parse_io_stat(&t)),
                psi_cpu_some: psi_some_avg10(&d.join("cpu.pressure")),
                pid,
                tids: tids_under(&d, "cgroup.threads"),
            }
        }
        Layout::V1 => {
            let ctl = |c: &str| root.join(c).join("machine.slice").join(scope);
            let cpuacct = if root.join("cpuacct").is_dir() {
                ctl("cpuacct")
            } else {
                ctl("cpu,cpuacct")
            };
            ScopeReading {
                cpu_ns: read_u64(&cpuacct.join("cpuacct.usage")),
                mem_bytes: read_u64(&ctl("memory").join("memory.usage_in_bytes")),
                io: std::fs::read_to_string(ctl("blkio").join("blkio.throttle.io_service_bytes"))
                    .ok()
                    .map(|t| parse_blkio(&t)),
                psi_cpu_some: None,
                pid: first_pid(&cpuacct),
                tids: tids_under(&cpuacct, "tasks"),
            }
        }
    }
}

impl CgroupSource {
    /// A source over the cgroup mount `root`, reading command lines under `proc_root`.
    pub fn new(root: PathBuf, proc_root: PathBuf) -> Self {
        Self {
            root,
            proc_root,
            vms: HashMap::new(),
            warned: false,
        }
    }

    fn scopes(&self, layout: Layout) -> Vec<String> {
        let dir = match layout {
            Layout::V2 => self.root.join("machine.slice"),
            Layout::V1 if self.root.join("cpuacct").is_dir() => {
                self.root.join("cpuacct/machine.slice")
            }
            Layout::V1 => self.root.join("cpu,cpuacct/machine.slice"),
        };
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("machine-") && n.ends_with(".scope"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Appends one row per VM scope.
    pub fn poll(&mut self, round: &mut Round, dt_s: f64, host_id: &str) {
        let Some(layout) = detect(&self.root) else {
            if !self.warned {
                self.warned = true;
                tracing::warn!(root = %self.root.display(), "No cgroup hierarchy found; no VMs discovered.");
            }
            return;
        };
        let mut seen = HashSet::new();
        for scope in self.scopes(layout) {
            let Some(name) = vm_name(&scope) else {
                continue;
            };
            let r = read_scope(&self.root, layout, &scope);
            seen.insert(scope.clone());
            let st = self.vms.entry(scope.clone()).or_default();
            if st.id.is_none() {
                let (uuid, vcpus) = r
                    .pid
                    .and_then(|p| {
                        std::fs::read_to_string(self.proc_root.join(p.to_string()).join("cmdline"))
                            .ok()
                    })
                    .map(|c| parse_qemu_cmdline(&c))
                    .unwrap_or((None, None));
                st.id = Some((uuid.unwrap_or_else(|| name.clone()), vcpus));
            }
            let (vm_id, vcpus) = st.id.clone().unwrap_or_else(|| (name.clone(), None));
            let wait = vcpu_wait_ns(&self.proc_root, &r.tids)
                .and_then(|ns| st.delay.update(ns, dt_s))
                .map(|ns_per_s| ns_per_s / 1e9);
            let cores = r
                .cpu_ns
                .and_then(|ns| st.cpu.update(ns, dt_s))
                .map(|ns_per_s| ns_per_s / 1e9);
            let (rd, wr) = match r.io {
                Some((a, b)) => (st.rd.update(a, dt_s), st.wr.update(b, dt_s)),
                None => (None, None),
            };
            let m = Metrics {
                cpu_util: cores.zip(vcpus).map(|(c, n)| c / f64::from(n.max(1))),
                cpu_delay: wait.zip(vcpus).map(|(w, n)| w / f64::from(n.max(1))),
                mem_used_mib: r.mem_bytes.map(|b| b as f64 / (1024.0 * 1024.0)),
                disk_read_kib_s: rd.map(|b| b / 1024.0),
                disk_write_kib_s: wr.map(|b| b / 1024.0),
                psi_cpu_some: r.psi_cpu_some.map(|p| p / 100.0),
                ..Metrics::default()
            };
            round.samples.push(Sample {
                ts_ms: round.ts_ms,
                host_id: Some(host_id.to_owned()),
                vm_id: Some(vm_id.clone()),
                metrics: m,
            });
            if let Some(c) = cores {
                round.details.push(Detail {
                    measurement: M_VM_CGROUP,
                    tags: vec![
                        ("host", host_id.to_owned()),
                        ("vm", vm_id),
                        ("vm_name", name),
                    ],
                    fields: vec![("cpu_cores", c)],
                });
            }
        }
        // A vanished scope (VM shut down) is forgotten; if it comes back, its rates restart.
        self.vms.retain(|k, _| seen.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cgroup")
            .join(rel)
    }

    fn two_rounds(layout: &str) -> Round {
        let mut s = CgroupSource::new(
            fixture(&format!("{layout}/t0/sys/fs/cgroup")),
            fixture(&format!("{layout}/t0/proc")),
        );
        s.poll(&mut Round::default(), 0.0, "h1");
        s.root = fixture(&format!("{layout}/t1/sys/fs/cgroup"));
        s.proc_root = fixture(&format!("{layout}/t1/proc"));
        let mut r = Round::default();
        s.poll(&mut r, 2.0, "h1");
        assert!(!r.details.is_empty());
        crate::series::check_round(&r).expect("every point is in the series catalogue");
        r
    }

    #[test]
    fn names_and_cmdlines() {
        assert_eq!(
            vm_name("machine-qemu\\x2d12\\x2dweb\\x2d1.scope").as_deref(),
            Some("web-1")
        );
        assert_eq!(vm_name("session-1.scope"), None);
        let (u, n) = parse_qemu_cmdline("qemu\0-uuid\0abc\0-smp\0cpus=4\0");
        assert_eq!((u.as_deref(), n), (Some("abc"), Some(4)));
    }

    #[test]
    fn both_layouts_give_the_same_vm_row() {
        for layout in ["v2", "v1"] {
            let r = two_rounds(layout);
            assert_eq!(r.samples.len(), 1, "{layout}");
            let s = &r.samples[0];
            assert_eq!(
                s.vm_id.as_deref(),
                Some("3f1c6a1e-9a0f-4b7e-9c55-2d1f0a1b2c3d")
            );
            let m = s.metrics;
            // 2 s of CPU over 2 s on 2 vCPUs.
            assert_abs_diff_eq!(m.cpu_util.unwrap(), 0.5, epsilon = 1e-9);
            assert_abs_diff_eq!(m.mem_used_mib.unwrap(), 600.0, epsilon = 1e-9);
            assert_abs_diff_eq!(m.disk_read_kib_s.unwrap(), 1024.0, epsilon = 1e-9);
            assert_abs_diff_eq!(m.disk_write_kib_s.unwrap(), 0.0, epsilon = 1e-9);
            // Two vCPU threads waited 0.2 s and 0.6 s in 2 s: (0.8 / 2) / 2 vCPUs.
            assert_abs_diff_eq!(m.cpu_delay.unwrap(), 0.2, epsilon = 1e-9);
        }
        assert_abs_diff_eq!(
            two_rounds("v2").samples[0].metrics.psi_cpu_some.unwrap(),
            0.04
        );
    }

    #[test]
    fn missing_tree_is_quiet() {
        let mut s = CgroupSource::new(fixture("nope"), fixture("nope"));
        let mut r = Round::default();
        s.poll(&mut r, 1.0, "h");
        assert!(r.samples.is_empty());
    }
}
