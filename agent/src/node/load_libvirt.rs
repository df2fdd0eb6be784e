//! Load from the host's own libvirt: which domains run here, and how busy each one is.
//!
//! A thread reads `virsh -c URI domstats --state --cpu-total --vcpu --list-active` every
//! `period` and turns each running domain's vCPU time *plus the time its vCPUs waited for a host
//! CPU* (`vcpu.N.time + vcpu.N.delay`) into a rate: CPU demand in thousandths of a host core
//! (1000 = one vCPU that always wants to run), so the agent's `capacity` is the host's
//! cores × 1000. Counting the wait makes it demand, not use: two guests that each want a whole
//! core on a host that has one show 2000, not 1000 (the overload the agent must see). Where
//! libvirt gives no per-vCPU figures, `cpu.time` (use) is the fallback. Domains
//! that are not running (paused, an incoming migration not yet finished, shut off) are not the
//! host's load and are left out; a domain seen for the first time has no rate yet and counts 0.
//! [`LoadSource::observe`] never waits for libvirt: it returns the thread's latest reading, so a
//! slow or dead daemon cannot stall the agent's loop (the reading just stops changing, and each
//! failed read is logged).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::{LoadSource, Observation};

/// One domain's figures from `virsh domstats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomStat {
    /// Domain name.
    pub name: String,
    /// `state.state` (1 = running).
    pub state: u32,
    /// `cpu.time`, ns.
    pub cpu_time_ns: u64,
    /// Sum over vCPUs of `vcpu.N.time + vcpu.N.delay`, ns, when libvirt reports them.
    pub vcpu_demand_ns: Option<u64>,
}

impl DomStat {
    /// The counter demand is the rate of: vCPU run + wait time, else CPU time.
    fn demand_ns(&self) -> u64 {
        self.vcpu_demand_ns.unwrap_or(self.cpu_time_ns)
    }
}

/// libvirt's `VIR_DOMAIN_RUNNING`.
const RUNNING: u32 = 1;
/// Demand units per fully busy host core.
pub const UNITS_PER_CORE: f64 = 1000.0;

/// Parses `virsh domstats` text (`Domain: 'NAME'` then `  key=value` lines).
pub fn parse_domstats(text: &str) -> Vec<DomStat> {
    let mut out: Vec<DomStat> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Domain: ") {
            let name = rest.trim().trim_matches('\'').to_string();
            out.push(DomStat {
                name,
                state: 0,
                cpu_time_ns: 0,
                vcpu_demand_ns: None,
            });
        } else if let (Some(d), Some((k, v))) = (out.last_mut(), line.split_once('=')) {
            match k {
                "state.state" => d.state = v.parse().unwrap_or(0),
                "cpu.time" => d.cpu_time_ns = v.parse().unwrap_or(0),
                _ if k.starts_with("vcpu.") && (k.ends_with(".time") || k.ends_with(".delay")) => {
                    if let Ok(ns) = v.parse::<u64>() {
                        d.vcpu_demand_ns = Some(d.vcpu_demand_ns.unwrap_or(0) + ns);
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Turns successive readings into per-domain CPU demand.
#[derive(Debug, Default)]
pub struct Rates {
    prev: HashMap<String, (u64, Instant)>,
}

impl Rates {
    /// The observation for readings taken at `now`.
    pub fn observe(&mut self, stats: &[DomStat], now: Instant) -> Observation {
        let mut vms = Vec::new();
        let mut seen = HashMap::new();
        for d in stats.iter().filter(|d| d.state == RUNNING) {
            let ns = d.demand_ns();
            let demand = match self.prev.get(&d.name) {
                Some(&(t0, at)) if ns >= t0 && now > at => {
                    let dt = now.duration_since(at).as_secs_f64();
                    (ns - t0) as f64 / 1e9 / dt * UNITS_PER_CORE
                }
                // First sight, or the counter went back (the domain restarted).
                _ => 0.0,
            };
            vms.push((d.name.clone(), demand));
            seen.insert(d.name.clone(), (ns, now));
        }
        self.prev = seen;
        vms.sort_by(|a, b| a.0.cmp(&b.0));
        Observation { vms, other: 0.0 }
    }
}

/// Reads the domains of a libvirt connection in a background thread.
#[derive(Debug)]
pub struct LibvirtLoad {
    /// The thread's latest reading; the thread holds only a weak reference and stops when this
    /// source is dropped.
    latest: Arc<Mutex<Observation>>,
}

impl LibvirtLoad {
    /// Starts reading `uri` with `virsh` every `period`; each call may take up to `limit`.
    pub fn start(virsh: String, uri: String, period: Duration, limit: Duration) -> Self {
        let latest = Arc::new(Mutex::new(Observation::default()));
        let weak = Arc::downgrade(&latest);
        let spawned = std::thread::Builder::new()
            .name("keel-libvirt-load".into())
            .spawn(move || poll(&virsh, &uri, period, limit, &weak));
        if let Err(e) = spawned {
            warn!(error = %e, "Could not start the libvirt load thread; the load stays empty.");
        }
        Self { latest }
    }
}

fn poll(
    virsh: &str,
    uri: &str,
    period: Duration,
    limit: Duration,
    latest: &Weak<Mutex<Observation>>,
) {
    let mut rates = Rates::default();
    loop {
        let started = Instant::now();
        match read_domstats(virsh, uri, limit) {
            Ok(stats) => {
                let obs = rates.observe(&stats, Instant::now());
                debug!(%uri, vms = obs.vms.len(), "Libvirt load read.");
                let Some(l) = latest.upgrade() else { return };
                *l.lock().expect("load lock is never poisoned") = obs;
            }
            Err(e) => {
                warn!(%uri, error = %e, "Libvirt load not read; keeping the last reading.");
                if latest.strong_count() == 0 {
                    return;
                }
            }
        }
        std::thread::sleep(period.saturating_sub(started.elapsed()));
        if latest.strong_count() == 0 {
            return;
        }
    }
}

/// Runs `virsh domstats` with a time limit (the child is killed when it runs over).
fn read_domstats(virsh: &str, uri: &str, limit: Duration) -> Result<Vec<DomStat>, String> {
    let mut child = Command::new(virsh)
        .args([
            "-q",
            "-c",
            uri,
            "domstats",
            "--state",
            "--cpu-total",
            "--vcpu",
            "--list-active",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start {virsh}: {e}"))?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                _ = child.kill();
                _ = child.wait();
                return Err(format!(
                    "virsh domstats timed out after {} s",
                    limit.as_secs_f64()
                ));
            }
            Err(e) => return Err(format!("waiting for virsh: {e}")),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("reading virsh output: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        return Err(format!("virsh exited with {}: {first}", out.status));
    }
    Ok(parse_domstats(&String::from_utf8_lossy(&out.stdout)))
}

impl LoadSource for LibvirtLoad {
    fn observe(&mut self) -> Observation {
        self.latest
            .lock()
            .expect("load lock is never poisoned")
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Output of `virsh domstats --state --cpu-total --vcpu` for a guest of the lab (scripts/lab).
    const TEXT: &str = "Domain: 'vm1'
  state.state=1
  state.reason=1
  cpu.time=7416436000
  cpu.user=6821043000
  cpu.system=595392000
  vcpu.current=1
  vcpu.maximum=1
  vcpu.0.state=1
  vcpu.0.time=6530000000
  vcpu.0.wait=0
  vcpu.0.delay=1161251552

Domain: 'vm2'
  state.state=3
  state.reason=2
  cpu.time=100
";

    #[test]
    fn domstats_parse() {
        let d = parse_domstats(TEXT);
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0],
            DomStat {
                name: "vm1".into(),
                state: 1,
                cpu_time_ns: 7_416_436_000,
                vcpu_demand_ns: Some(6_530_000_000 + 1_161_251_552),
            }
        );
        assert_eq!((d[1].name.as_str(), d[1].state), ("vm2", 3));
        assert_eq!((d[1].demand_ns(), d[1].vcpu_demand_ns), (100, None));
        assert!(parse_domstats("garbage\n=\n").is_empty());
    }

    #[test]
    fn rates_count_running_domains_only() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        let first = r.observe(&parse_domstats(TEXT), t0);
        assert_eq!(
            first.vms,
            vec![("vm1".to_string(), 0.0)],
            "paused vm2 left out"
        );
        // Over 2 s: the vCPU ran 1 s and waited 0.5 s for a host CPU: demand is three quarters
        // of a core (cpu.time, which also counts QEMU's other threads, is not used).
        let later = TEXT
            .replace("vcpu.0.time=6530000000", "vcpu.0.time=7530000000")
            .replace("vcpu.0.delay=1161251552", "vcpu.0.delay=1661251552")
            .replace("cpu.time=7416436000", "cpu.time=9916436000");
        let o = r.observe(&parse_domstats(&later), t0 + Duration::from_secs(2));
        assert_eq!(o.vms, vec![("vm1".to_string(), 750.0)]);
        // The counter went back (restarted): no rate this round.
        let o = r.observe(&parse_domstats(TEXT), t0 + Duration::from_secs(3));
        assert_eq!(o.vms, vec![("vm1".to_string(), 0.0)]);
    }

    #[test]
    fn a_missing_virsh_keeps_the_load_empty() {
        let mut l = LibvirtLoad::start(
            "/nonexistent/virsh".into(),
            "test:///default".into(),
            Duration::from_millis(10),
            Duration::from_secs(1),
        );
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(l.observe(), Observation::default());
    }

    #[test]
    fn reads_the_test_driver() {
        // libvirt's built-in test driver has one running domain, "test" (virsh: libvirt-clients).
        let mut l = LibvirtLoad::start(
            "virsh".into(),
            "test:///default".into(),
            Duration::from_millis(20),
            Duration::from_secs(5),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while l.observe().vms.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let names: Vec<String> = l.observe().vms.into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["test".to_string()]);
    }
}
