//! Per-VM metrics from libvirt, VMs identified by UUID, read through a helper process.
//!
//! The collector itself does not link libvirt: its shared libraries (gnutls, glib, ICU, libxml2,
//! libssh …) cost ~8 MB of RSS just by being loaded, on every host, even where libvirt is not
//! configured. The libvirt calls live in `keel-collector-libvirt` (a second binary of this
//! crate, built with feature `libvirt`), spawned only when the libvirt source is on and spoken
//! to in line-delimited JSON over its stdin/stdout ([`protocol`]).
//!
//! Per round: `list` the active domains, then `read` each one (the helper reads them
//! concurrently) and wait for the answers until `call_timeout`. CPU time becomes utilisation of
//! the VM's vCPUs; byte counters become KiB/s; a counter that went down (the VM restarted) gives
//! no value that round. Rates use each VM's own time between readings, so a round it missed does
//! not make a spike.
//!
//! Lessons from collectd's virt plugin, made real by the process boundary:
//! - A call that misses its deadline is counted as a timeout, and the helper is **killed** (a
//!   thread stuck in a C call cannot be cancelled; a process can) and started again for the next
//!   round. The domain that hung sits out 1, 2, 4 … up to 32 rounds, so one hung domain costs
//!   the others nothing and does not make the collector restart the helper every round.
//! - A helper that cannot be started, dies, or stops making sense is started again with back-off
//!   (1 s doubling to 60 s, reset by a round that worked).
//! - A domain that vanishes between listing and reading is normal (DEBUG, never an error).
//!
//! vCPU delay (`cpu_delay`, libvirt's `vcpu.N.delay`: time the vCPUs waited for a host CPU, the
//! host-side steal signal) is read without libvirt: the `virt` crate does not wrap the bulk
//! stats call safely, but the number is the run-queue wait in `/proc/<tid>/schedstat` of the
//! QEMU process's `CPU N/KVM` (or `CPU N/TCG`) threads, found by `-uuid` on the QEMU command line under the procfs
//! root (as the [`cgroup`](super::cgroup) source does). Null where there is no such process
//! (another hypervisor, the test driver, a container without the host's `/proc`).

#[cfg(feature = "libvirt")]
pub mod helper;
pub mod protocol;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use keel_core::schema::{Metrics, Sample};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::Instant;

use super::cgroup::{parse_qemu_cmdline, vcpu_wait_ns};
use super::{Detail, Round};
use crate::config::LibvirtSettings;
use crate::rate::Rate;
use protocol::{Answer, DomainReading, Request, Response};

pub use crate::series::M_VM_LIBVIRT;
/// File name of the helper binary (looked up beside the collector's own executable by default).
pub const HELPER_NAME: &str = "keel-collector-libvirt";
/// Longest wait before starting a failed helper again.
pub const MAX_RESPAWN_BACKOFF: Duration = Duration::from_secs(60);
/// Most rounds a domain that timed out sits out.
pub const MAX_QUARANTINE_ROUNDS: u64 = 32;
/// How often to look for the QEMU process of a VM that has none yet (a scan of `/proc`).
const PID_RESCAN: Duration = Duration::from_secs(60);

/// The default helper path: `keel-collector-libvirt` beside the running executable if it is
/// there, else the bare name (found on `PATH`).
pub fn default_helper() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(HELPER_NAME))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(HELPER_NAME))
}

#[derive(Debug, Default)]
struct VmState {
    cpu: Rate,
    delay: Rate,
    rd: Rate,
    wr: Rate,
    rx: Rate,
    tx: Rate,
    /// When the previous reading arrived (rates divide by this VM's own interval).
    last_read: Option<Instant>,
    /// Consecutive timeouts; the domain sits out `2^(n-1)` rounds (capped) after the n-th.
    timeouts: u32,
    /// Skip the domain until this round number.
    skip_until: u64,
    /// The QEMU process of this VM (for vCPU delay), if found.
    pid: Option<u32>,
}

/// The running helper.
#[derive(Debug)]
struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// Why no answer came.
#[derive(Debug)]
enum RecvError {
    /// The deadline passed.
    Timeout,
    /// The helper closed its stdout (it died) or wrote something that is not a response.
    Lost(String),
}

impl Helper {
    async fn send(&mut self, reqs: &[Request]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for r in reqs {
            serde_json::to_writer(&mut buf, r).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        self.stdin.write_all(&buf).await?;
        self.stdin.flush().await
    }

    async fn recv(&mut self, deadline: Instant) -> Result<Response, RecvError> {
        match tokio::time::timeout_at(deadline, self.stdout.next_line()).await {
            Err(_) => Err(RecvError::Timeout),
            Ok(Ok(Some(line))) => serde_json::from_str(&line)
                .map_err(|e| RecvError::Lost(format!("helper sent a malformed answer: {e}"))),
            Ok(Ok(None)) => Err(RecvError::Lost("helper exited".into())),
            Ok(Err(e)) => Err(RecvError::Lost(format!("reading from the helper: {e}"))),
        }
    }

    /// Kills the process and reaps it.
    async fn kill(mut self) {
        _ = self.child.start_kill();
        _ = self.child.wait().await;
    }
}

/// The libvirt source.
#[derive(Debug)]
pub struct LibvirtSource {
    settings: LibvirtSettings,
    /// procfs root, for the vCPU threads of QEMU processes.
    proc_root: PathBuf,
    helper: Option<Helper>,
    /// Started helpers (the first start included).
    spawns: u64,
    /// No helper start before this instant (back-off after a failure).
    respawn_at: Option<Instant>,
    backoff: Duration,
    next_id: u64,
    round_no: u64,
    vms: HashMap<String, VmState>,
    last_pid_scan: Option<Instant>,
    last_error: Option<String>,
    /// Failed calls since the last [`LibvirtSource::take_errors`] (timeouts included, vanished
    /// domains excluded).
    errors: u64,
    /// Calls that missed their deadline since the last [`LibvirtSource::take_timeouts`].
    timeouts: u64,
}

impl LibvirtSource {
    /// A source for `settings.uri`. The helper starts on the first poll (and again after it
    /// fails).
    pub fn new(settings: LibvirtSettings, proc_root: PathBuf) -> Self {
        Self {
            settings,
            proc_root,
            helper: None,
            spawns: 0,
            respawn_at: None,
            backoff: Duration::from_secs(1),
            next_id: 0,
            round_no: 0,
            vms: HashMap::new(),
            last_pid_scan: None,
            last_error: None,
            errors: 0,
            timeouts: 0,
        }
    }

    /// Failed calls since the previous call (for the `source_errors` self-metric).
    pub fn take_errors(&mut self) -> u64 {
        std::mem::take(&mut self.errors)
    }

    /// Timed-out calls since the previous call (for the `source_timeouts` self-metric).
    pub fn take_timeouts(&mut self) -> u64 {
        std::mem::take(&mut self.timeouts)
    }

    /// How many times the helper was started (1 while it never failed).
    pub fn spawns(&self) -> u64 {
        self.spawns
    }

    fn report(&mut self, msg: String) {
        self.errors += 1;
        if self.last_error.as_deref() != Some(msg.as_str()) {
            tracing::warn!(uri = %self.settings.uri, error = %msg, "libvirt unavailable; no VM rows this round.");
            self.last_error = Some(msg);
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Backs off the next start of the helper.
    fn back_off(&mut self) {
        self.respawn_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_RESPAWN_BACKOFF);
    }

    /// The running helper, starting it if allowed.
    fn helper(&mut self) -> Option<Helper> {
        if let Some(h) = self.helper.take() {
            return Some(h);
        }
        if self.respawn_at.is_some_and(|t| Instant::now() < t) {
            self.errors += 1;
            return None;
        }
        let mut cmd = Command::new(&self.settings.helper);
        cmd.arg("--uri")
            .arg(&self.settings.uri)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        match cmd.spawn() {
            Ok(mut child) => {
                let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                    self.report("helper started without pipes".into());
                    self.back_off();
                    return None;
                };
                self.spawns += 1;
                if self.spawns > 1 {
                    tracing::info!(spawns = self.spawns, "libvirt helper started again.");
                }
                Some(Helper {
                    child,
                    stdin,
                    stdout: BufReader::new(stdout).lines(),
                })
            }
            Err(e) => {
                self.report(format!(
                    "cannot start {}: {e}",
                    self.settings.helper.display()
                ));
                self.back_off();
                None
            }
        }
    }

    /// The helper failed (died, garbage, or a hung `list`): kill it and back off.
    async fn lose(&mut self, h: Helper, msg: String) {
        h.kill().await;
        self.report(msg);
        self.back_off();
    }

    /// Appends one row per active domain that answered in time.
    pub async fn poll(&mut self, round: &mut Round, host_id: &str) {
        self.round_no += 1;
        let timeout = self.settings.call_timeout;
        let Some(mut h) = self.helper() else { return };

        // 1. List.
        let id = self.id();
        if let Err(e) = h.send(&[Request::List { id }]).await {
            return self.lose(h, format!("writing to the helper: {e}")).await;
        }
        let deadline = Instant::now() + timeout;
        let domains = loop {
            match h.recv(deadline).await {
                Ok(r) if r.id != id => continue, // a late answer from a previous round
                Ok(Response {
                    result: Answer::Domains(d),
                    ..
                }) => break d,
                Ok(Response {
                    result: Answer::Error(e),
                    ..
                }) => {
                    self.helper = Some(h);
                    return self.report(e);
                }
                Ok(other) => {
                    return self
                        .lose(h, format!("unexpected answer to list: {other:?}"))
                        .await
                }
                Err(RecvError::Timeout) => {
                    self.timeouts += 1;
                    return self.lose(h, "listing domains timed out".into()).await;
                }
                Err(RecvError::Lost(m)) => return self.lose(h, m).await,
            }
        };
        self.last_error = None;

        // 2. Read every domain not sitting out, concurrently in the helper.
        let mut pending: HashMap<u64, String> = HashMap::new();
        let mut reqs = Vec::new();
        let mut listed = Vec::with_capacity(domains.len());
        for d in domains {
            listed.push(d.uuid.clone());
            let st = self.vms.entry(d.uuid.clone()).or_default();
            if self.round_no <= st.skip_until {
                tracing::debug!(uuid = %d.uuid, "Domain timed out recently; sitting out this round.");
                continue;
            }
            let id = self.id();
            pending.insert(id, d.uuid.clone());
            reqs.push(Request::Read { id, uuid: d.uuid });
        }
        if let Err(e) = h.send(&reqs).await {
            return self.lose(h, format!("writing to the helper: {e}")).await;
        }
        let deadline = Instant::now() + timeout;
        let mut lost = None;
        let mut readings = Vec::new();
        while !pending.is_empty() {
            match h.recv(deadline).await {
                Ok(r) => {
                    let Some(uuid) = pending.remove(&r.id) else {
                        continue;
                    };
                    match r.result {
                        Answer::Reading(reading) => readings.push((reading, Instant::now())),
                        Answer::Vanished => {
                            tracing::debug!(%uuid, "Domain vanished during the round.");
                            self.vms.remove(&uuid);
                            listed.retain(|u| *u != uuid);
                        }
                        Answer::Error(e) => {
                            self.errors += 1;
                            tracing::debug!(%uuid, error = %e, "Domain stats failed this round.");
                        }
                        Answer::Domains(_) => {
                            lost = Some("unexpected domain list in answer to a read".to_owned());
                            break;
                        }
                    }
                }
                Err(RecvError::Timeout) => break,
                Err(RecvError::Lost(m)) => {
                    lost = Some(m);
                    break;
                }
            }
        }

        // 3. Rows for what arrived.
        self.find_qemu_pids(&readings);
        for (r, at) in &readings {
            let st = self.vms.entry(r.uuid.clone()).or_default();
            st.timeouts = 0;
            let wait_ns = st
                .pid
                .and_then(|pid| qemu_vcpu_wait_ns(&self.proc_root, pid));
            push_rows(round, st, r, wait_ns, *at, host_id);
        }
        // Domains no longer listed are forgotten.
        self.vms.retain(|k, _| listed.contains(k));

        // 4. What did not arrive.
        if let Some(m) = lost {
            self.errors += pending.len() as u64;
            return self.lose(h, m).await;
        }
        if pending.is_empty() {
            self.backoff = Duration::from_secs(1);
            self.helper = Some(h);
            return;
        }
        for uuid in pending.values() {
            self.timeouts += 1;
            self.errors += 1;
            let st = self.vms.entry(uuid.clone()).or_default();
            st.timeouts += 1;
            let sit_out = (1u64 << (st.timeouts - 1).min(5)).min(MAX_QUARANTINE_ROUNDS);
            st.skip_until = self.round_no + sit_out;
            tracing::warn!(
                %uuid,
                timeout_s = timeout.as_secs_f64(),
                sit_out_rounds = sit_out,
                "libvirt call timed out; restarting the helper, the domain sits out."
            );
        }
        // The helper has a thread stuck in libvirt: only killing the process ends the call. The
        // next round starts a fresh one (no back-off: the domain that hung sits out).
        h.kill().await;
    }

    /// Finds the QEMU process of VMs that have none (at most one `/proc` scan per
    /// [`PID_RESCAN`]), and forgets a pid that no longer runs that VM.
    fn find_qemu_pids(&mut self, readings: &[(DomainReading, Instant)]) {
        let mut missing = Vec::new();
        for (r, _) in readings {
            let st = self.vms.entry(r.uuid.clone()).or_default();
            if let Some(pid) = st.pid {
                if qemu_uuid(&self.proc_root, pid).as_deref() != Some(r.uuid.as_str()) {
                    st.pid = None;
                    st.delay = Rate::default();
                }
            }
            if st.pid.is_none() {
                missing.push(r.uuid.clone());
            }
        }
        if missing.is_empty() || self.last_pid_scan.is_some_and(|t| t.elapsed() < PID_RESCAN) {
            return;
        }
        self.last_pid_scan = Some(Instant::now());
        let Ok(rd) = std::fs::read_dir(&self.proc_root) else {
            return;
        };
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(uuid) = qemu_uuid(&self.proc_root, pid) {
                if missing.contains(&uuid) {
                    if let Some(st) = self.vms.get_mut(&uuid) {
                        st.pid = Some(pid);
                    }
                }
            }
        }
    }
}

/// The `-uuid` of process `pid` if it is a QEMU process.
fn qemu_uuid(proc_root: &Path, pid: u32) -> Option<String> {
    let dir = proc_root.join(pid.to_string());
    // `comm` is short and cheap: skip the command line of everything that is not QEMU.
    let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
    if !comm.starts_with("qemu") {
        return None;
    }
    let cmdline = std::fs::read_to_string(dir.join("cmdline")).ok()?;
    parse_qemu_cmdline(&cmdline).0
}

/// Total run-queue wait (ns) of the vCPU threads of QEMU process `pid`.
fn qemu_vcpu_wait_ns(proc_root: &Path, pid: u32) -> Option<u64> {
    let tids: Vec<u32> = std::fs::read_dir(proc_root.join(pid.to_string()).join("task"))
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    vcpu_wait_ns(proc_root, &tids)
}

fn push_rows(
    round: &mut Round,
    st: &mut VmState,
    r: &DomainReading,
    wait_ns: Option<u64>,
    at: Instant,
    host_id: &str,
) {
    const KIB_PER_MIB: f64 = 1024.0;
    let dt_s = st
        .last_read
        .replace(at)
        .map_or(0.0, |prev| at.duration_since(prev).as_secs_f64());
    let cpu = st.cpu.update(r.cpu_time_ns, dt_s).map(|ns| ns / 1e9);
    let delay = wait_ns
        .and_then(|ns| st.delay.update(ns, dt_s))
        .map(|ns| ns / 1e9);
    let (rd, wr) = match r.block_bytes {
        Some((a, b)) => (st.rd.update(a, dt_s), st.wr.update(b, dt_s)),
        None => (None, None),
    };
    let (rx, tx) = match r.net_bytes {
        Some((a, b)) => (st.rx.update(a, dt_s), st.tx.update(b, dt_s)),
        None => (None, None),
    };
    let mem_used_kib = match r.guest_avail_unused_kib {
        Some((avail, unused)) => avail.saturating_sub(unused),
        None => r.rss_kib.unwrap_or(r.memory_kib),
    };
    let vcpus = f64::from(r.vcpus.max(1));
    let m = Metrics {
        cpu_util: cpu.map(|c| c / vcpus),
        cpu_delay: delay.map(|d| d / vcpus),
        mem_used_mib: Some(mem_used_kib as f64 / KIB_PER_MIB),
        net_rx_kib_s: rx.map(|b| b / 1024.0),
        net_tx_kib_s: tx.map(|b| b / 1024.0),
        disk_read_kib_s: rd.map(|b| b / 1024.0),
        disk_write_kib_s: wr.map(|b| b / 1024.0),
        ..Metrics::default()
    };
    round.samples.push(Sample {
        ts_ms: round.ts_ms,
        host_id: Some(host_id.to_owned()),
        vm_id: Some(r.uuid.clone()),
        metrics: m,
    });
    let mut fields = vec![
        ("vcpus", f64::from(r.vcpus)),
        ("memory_mib", r.memory_kib as f64 / KIB_PER_MIB),
        ("max_memory_mib", r.max_mem_kib as f64 / KIB_PER_MIB),
    ];
    if let Some(b) = r.balloon_kib {
        fields.push(("balloon_mib", b as f64 / KIB_PER_MIB));
    }
    if let Some(b) = r.rss_kib {
        fields.push(("rss_mib", b as f64 / KIB_PER_MIB));
    }
    if let Some(c) = cpu {
        fields.push(("cpu_cores", c));
    }
    if let Some(d) = delay {
        fields.push(("vcpu_delay_cores", d));
    }
    round.details.push(Detail {
        measurement: M_VM_LIBVIRT,
        tags: vec![
            ("host", host_id.to_owned()),
            ("vm", r.uuid.clone()),
            ("vm_name", r.name.clone()),
        ],
        fields,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tests/fixtures/libvirt/fake-helper.sh`: a stand-in for `keel-collector-libvirt` that
    /// never answers a read of the UUID given as its URI (a hung libvirt call).
    fn fake_helper() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/libvirt/fake-helper.sh")
    }

    fn source(helper: PathBuf, uri: &str, timeout_ms: u64) -> LibvirtSource {
        LibvirtSource::new(
            LibvirtSettings {
                uri: uri.into(),
                call_timeout: Duration::from_millis(timeout_ms),
                helper,
            },
            "/nonexistent-proc".into(),
        )
    }

    fn vm_ids(r: &Round) -> Vec<String> {
        r.samples.iter().filter_map(|s| s.vm_id.clone()).collect()
    }

    #[tokio::test]
    async fn a_hung_call_times_out_is_counted_and_the_others_keep_their_rows() {
        let mut s = source(fake_helper(), "u-hang", 300);
        let mut per_round = Vec::new();
        for _ in 0..5 {
            let mut r = Round::default();
            let t = std::time::Instant::now();
            s.poll(&mut r, "h").await;
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "a round waits for the deadline only"
            );
            per_round.push((vm_ids(&r), s.take_timeouts(), s.spawns(), r));
        }
        // Every round has the healthy domain; the hung one never produces a row.
        for (ids, ..) in &per_round {
            assert_eq!(ids, &["u-ok"]);
        }
        // Round 1 times out and kills the helper; u-hang sits out round 2 (1 round), is tried
        // again in round 3 (timeout, killed), sits out rounds 4 and 5 (2 rounds).
        let timeouts: Vec<u64> = per_round.iter().map(|x| x.1).collect();
        assert_eq!(timeouts, [1, 0, 1, 0, 0]);
        let spawns: Vec<u64> = per_round.iter().map(|x| x.2).collect();
        assert_eq!(spawns, [1, 2, 2, 3, 3], "a fresh helper after each timeout");
        // Rates carry across helper restarts (the VM's own interval, its counter kept growing).
        for (.., r) in &per_round[1..] {
            let u = r.samples[0]
                .metrics
                .cpu_util
                .expect("a rate after the first round");
            assert!((0.3..0.7).contains(&u), "{u}");
            assert_eq!(r.samples[0].metrics.cpu_delay, None, "no QEMU process here");
        }
    }

    #[tokio::test]
    async fn a_missing_or_dying_helper_is_an_error_with_back_off() {
        let mut s = source("/nonexistent/keel-collector-libvirt".into(), "x", 300);
        let mut r = Round::default();
        s.poll(&mut r, "h").await;
        s.poll(&mut r, "h").await;
        assert!(r.samples.is_empty());
        assert_eq!(
            s.take_errors(),
            2,
            "a failed start, then a round inside the back-off"
        );
        assert_eq!(s.spawns(), 0);

        // A helper that exits at once: lost, then not restarted before the back-off ends.
        let mut s = source("/bin/true".into(), "x", 300);
        s.poll(&mut r, "h").await;
        s.poll(&mut r, "h").await;
        assert_eq!(s.spawns(), 1);
        assert_eq!(s.take_errors(), 2);
        assert!(r.samples.is_empty());
    }

    #[test]
    fn vm_restart_resets_rates_instead_of_spiking() {
        let mut st = VmState::default();
        let mut reading = DomainReading {
            uuid: "u".into(),
            vcpus: 2,
            cpu_time_ns: 50_000_000_000,
            memory_kib: 1024,
            net_bytes: Some((10_000, 10_000)),
            ..DomainReading::default()
        };
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut r = Round::default();
        push_rows(&mut r, &mut st, &reading, None, at(0), "h");
        reading.cpu_time_ns += 1_000_000_000;
        push_rows(&mut r, &mut st, &reading, Some(100), at(1), "h");
        assert_eq!(r.samples[1].metrics.cpu_util, Some(0.5));
        // Restart: counters start again near zero.
        reading.cpu_time_ns = 10_000_000;
        reading.net_bytes = Some((5, 5));
        push_rows(&mut r, &mut st, &reading, Some(200), at(2), "h");
        assert_eq!(r.samples[2].metrics.cpu_util, None);
        assert_eq!(r.samples[2].metrics.net_rx_kib_s, None);
        // Two seconds since the VM's previous reading (it sat out a round): no spike.
        reading.cpu_time_ns += 2_000_000_000;
        push_rows(
            &mut r,
            &mut st,
            &reading,
            Some(200 + 1_000_000_000),
            at(4),
            "h",
        );
        assert_eq!(r.samples[3].metrics.cpu_util, Some(0.5));
        // 1 s of vCPU wait over 2 s, shared by 2 vCPUs.
        assert_eq!(r.samples[3].metrics.cpu_delay, Some(0.25));
        crate::series::check_round(&r).expect("every point is in the series catalogue");
    }

    #[test]
    fn vcpu_delay_comes_from_the_qemu_threads_of_the_vm() {
        let proc_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/libvirt/proc");
        let uuid = "11111111-2222-3333-4444-555555555501";
        assert_eq!(qemu_uuid(&proc_root, 5150).as_deref(), Some(uuid));
        assert_eq!(qemu_uuid(&proc_root, 1).as_deref(), None, "not QEMU");
        // Threads 5151 and 5152 are "CPU 0/KVM" and "CPU 1/KVM"; 5153 is an I/O thread.
        assert_eq!(
            qemu_vcpu_wait_ns(&proc_root, 5150),
            Some(3_000_000 + 4_000_000)
        );
        let mut s = LibvirtSource::new(
            LibvirtSettings {
                uri: "x".into(),
                call_timeout: Duration::from_secs(1),
                helper: "/nonexistent".into(),
            },
            proc_root,
        );
        let reading = DomainReading {
            uuid: uuid.into(),
            ..DomainReading::default()
        };
        s.find_qemu_pids(&[(reading, Instant::now())]);
        assert_eq!(s.vms[uuid].pid, Some(5150));
    }
}
