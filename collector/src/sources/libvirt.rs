//! Per-VM metrics from libvirt (feature `libvirt`), VMs identified by UUID.
//!
//! Per round: list the active domains, then for each, in its own thread with a deadline of
//! `call_timeout`, read `info` (CPU time, vCPUs, memory), `memoryStats` (balloon, RSS, guest
//! available/unused), and the block and interface counters of the devices named in its XML.
//! CPU time becomes utilisation of the VM's vCPUs; byte counters become KiB/s; a counter that
//! went down (the VM restarted) gives no value that round.
//!
//! Lessons from collectd's virt plugin: one hung domain must not stall the round (the deadline;
//! a domain whose previous call has not returned is skipped, not piled up on), and a domain that
//! vanishes between listing and stats is normal (logged at DEBUG, never an error). vCPU delay
//! (`vcpu.N.delay`, the host-side steal signal) is only in libvirt's bulk stats call, which the
//! `virt` crate does not wrap safely, so `cpu_delay` stays null here; the [`cgroup`](super::cgroup)
//! source measures it from the vCPU threads' `schedstat`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use keel_core::schema::{Metrics, Sample};
use virt::connect::Connect;
use virt::domain::Domain;

use super::{Detail, Round};
use crate::config::LibvirtSettings;
use crate::rate::Rate;

/// Measurement of libvirt VM detail.
pub const M_VM_LIBVIRT: &str = "vm_libvirt";

// libvirt's `virDomainMemoryStatTags`.
const STAT_UNUSED: u32 = 4;
const STAT_AVAILABLE: u32 = 5;
const STAT_BALLOON: u32 = 6;
const STAT_RSS: u32 = 7;

/// One domain's raw readings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainReading {
    /// UUID.
    pub uuid: String,
    /// Name (a tag; it can change).
    pub name: String,
    /// CPU time, ns.
    pub cpu_time_ns: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// Current memory, KiB.
    pub memory_kib: u64,
    /// Maximum memory, KiB.
    pub max_mem_kib: u64,
    /// Balloon size, KiB.
    pub balloon_kib: Option<u64>,
    /// Host RSS of the VM process, KiB.
    pub rss_kib: Option<u64>,
    /// Guest-visible memory and its unused part, KiB.
    pub guest_avail_unused_kib: Option<(u64, u64)>,
    /// Sum of block read and write bytes.
    pub block_bytes: Option<(u64, u64)>,
    /// Sum of interface rx and tx bytes.
    pub net_bytes: Option<(u64, u64)>,
}

/// The `dev` attribute of every `<target>` inside `<tag>` elements of a domain XML.
pub fn target_devs(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag} ");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let body = &rest[i..];
        let end = body.find(&close).unwrap_or(body.len());
        let el = &body[..end];
        if let Some(t) = el.find("<target ") {
            let t = &el[t..];
            let t = &t[..t.find('>').unwrap_or(t.len())];
            for q in ['\'', '"'] {
                if let Some(p) = t.find(&format!("dev={q}")) {
                    let v = &t[p + 5..];
                    if let Some(e) = v.find(q) {
                        out.push(v[..e].to_owned());
                    }
                }
            }
        }
        rest = &body[end.max(1)..];
    }
    out
}

fn is_vanished(e: &virt::error::Error) -> bool {
    matches!(
        e.code(),
        virt::enumutil::Enum::Known(virt::error::ErrorNumber::NoDomain)
    )
}

/// Reads one domain (blocking libvirt calls).
///
/// # Errors
/// The libvirt error of the first call that failed.
pub fn read_domain(d: &Domain) -> Result<DomainReading, virt::error::Error> {
    let info = d.info()?;
    let mut r = DomainReading {
        uuid: d.uuid_string()?,
        name: d.name()?,
        cpu_time_ns: info.cpu_time,
        vcpus: info.nr_virt_cpu,
        memory_kib: info.memory,
        max_mem_kib: info.max_mem,
        ..DomainReading::default()
    };
    if let Ok(stats) = d.memory_stats(0) {
        let get = |tag| stats.iter().find(|s| s.tag == tag).map(|s| s.val);
        r.balloon_kib = get(STAT_BALLOON);
        r.rss_kib = get(STAT_RSS);
        r.guest_avail_unused_kib = get(STAT_AVAILABLE).zip(get(STAT_UNUSED));
    }
    let xml = d.xml_desc(0)?;
    let to_u = |v: i64| u64::try_from(v).unwrap_or(0);
    let mut blk: Option<(u64, u64)> = None;
    for dev in target_devs(&xml, "disk") {
        if let Ok(b) = d.block_stats(&dev) {
            let (a, c) = blk.unwrap_or((0, 0));
            blk = Some((a + to_u(b.rd_bytes), c + to_u(b.wr_bytes)));
        }
    }
    r.block_bytes = blk;
    let mut net: Option<(u64, u64)> = None;
    for dev in target_devs(&xml, "interface") {
        if let Ok(s) = d.interface_stats(&dev) {
            let (a, c) = net.unwrap_or((0, 0));
            net = Some((a + to_u(s.rx_bytes), c + to_u(s.tx_bytes)));
        }
    }
    r.net_bytes = net;
    Ok(r)
}

#[derive(Debug, Default)]
struct VmState {
    cpu: Rate,
    rd: Rate,
    wr: Rate,
    rx: Rate,
    tx: Rate,
    /// Set while a call for this domain is running (a hung call makes later rounds skip it).
    busy: Arc<AtomicBool>,
}

/// The libvirt source.
#[derive(Debug)]
pub struct LibvirtSource {
    settings: LibvirtSettings,
    conn: Option<Arc<Connect>>,
    vms: HashMap<String, VmState>,
    last_error: Option<String>,
    /// Failed calls since the last [`LibvirtSource::take_errors`] (vanished domains excluded).
    errors: u64,
}

impl LibvirtSource {
    /// A source for `settings.uri`; connects lazily (and again after a failure).
    pub fn new(settings: LibvirtSettings) -> Self {
        // libvirt prints every error to stderr by default; we log them ourselves, once.
        virt::error::clear_error_callback();
        Self {
            settings,
            conn: None,
            vms: HashMap::new(),
            last_error: None,
            errors: 0,
        }
    }

    /// Failed calls since the previous call (for the `source_errors` self-metric).
    pub fn take_errors(&mut self) -> u64 {
        std::mem::take(&mut self.errors)
    }

    fn report(&mut self, msg: String) {
        self.errors += 1;
        if self.last_error.as_deref() != Some(msg.as_str()) {
            tracing::warn!(uri = %self.settings.uri, error = %msg, "libvirt unavailable; no VM rows this round.");
            self.last_error = Some(msg);
        }
    }

    fn list(&mut self) -> Option<Vec<Domain>> {
        let conn = match &self.conn {
            Some(c) => Arc::clone(c),
            None => match Connect::open_read_only(Some(&self.settings.uri)) {
                Ok(c) => {
                    let c = Arc::new(c);
                    self.conn = Some(Arc::clone(&c));
                    c
                }
                Err(e) => {
                    self.report(e.to_string());
                    return None;
                }
            },
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            _ = tx.send(
                conn.list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
                    .map_err(|e| e.to_string()),
            );
        });
        match rx.recv_timeout(self.settings.call_timeout) {
            Ok(Ok(d)) => {
                self.last_error = None;
                Some(d)
            }
            Ok(Err(e)) => {
                // The connection may be gone (daemon restarted): reconnect next round.
                self.conn = None;
                self.report(e);
                None
            }
            Err(_) => {
                self.conn = None;
                self.report("listing domains timed out".into());
                None
            }
        }
    }

    /// Appends one row per active domain.
    pub fn poll(&mut self, round: &mut Round, dt_s: f64, host_id: &str) {
        let Some(domains) = self.list() else { return };
        let deadline = Instant::now() + self.settings.call_timeout;
        let mut pending = Vec::new();
        for d in domains {
            // Key by UUID where we can get it cheaply (it is cached client-side).
            let key = d.uuid_string().unwrap_or_default();
            let busy = Arc::clone(&self.vms.entry(key.clone()).or_default().busy);
            if busy.swap(true, Ordering::AcqRel) {
                tracing::debug!(uuid = %key, "Previous libvirt call still running; skipping this domain.");
                continue;
            }
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let r = read_domain(&d);
                busy.store(false, Ordering::Release);
                _ = tx.send(r);
            });
            pending.push((key, rx));
        }
        let mut seen = HashSet::new();
        for (key, rx) in pending {
            seen.insert(key.clone());
            let left = deadline.saturating_duration_since(Instant::now());
            let r = match rx.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(Ok(r)) => r,
                Ok(Err(e)) if is_vanished(&e) => {
                    tracing::debug!(uuid = %key, "Domain vanished during the round.");
                    seen.remove(&key);
                    continue;
                }
                Ok(Err(e)) => {
                    self.errors += 1;
                    tracing::debug!(uuid = %key, error = %e, "Domain stats failed this round.");
                    continue;
                }
                Err(_) => {
                    self.errors += 1;
                    tracing::warn!(uuid = %key, timeout_s = self.settings.call_timeout.as_secs_f64(), "libvirt call timed out; skipping the domain this round.");
                    continue;
                }
            };
            let st = self.vms.entry(key).or_default();
            self::push_rows(round, st, &r, dt_s, host_id);
        }
        // Domains no longer listed are forgotten (unless a hung call still holds them).
        self.vms
            .retain(|k, v| seen.contains(k) || v.busy.load(Ordering::Acquire));
    }
}

fn push_rows(round: &mut Round, st: &mut VmState, r: &DomainReading, dt_s: f64, host_id: &str) {
    const KIB_PER_MIB: f64 = 1024.0;
    let cpu = st.cpu.update(r.cpu_time_ns, dt_s).map(|ns| ns / 1e9);
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
    let m = Metrics {
        cpu_util: cpu.map(|c| c / f64::from(r.vcpus.max(1))),
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

    #[test]
    fn target_devs_from_xml() {
        let xml = r#"<domain><devices>
            <disk type='file' device='disk'><source file='/a'/><target dev='vda' bus='virtio'/></disk>
            <disk type="file"><target dev="hdb"/></disk>
            <interface type='network'><mac address='aa'/><target dev='vnet3'/></interface>
            <interface type='user'></interface>
        </devices></domain>"#;
        assert_eq!(target_devs(xml, "disk"), ["vda", "hdb"]);
        assert_eq!(target_devs(xml, "interface"), ["vnet3"]);
    }

    fn source(uri: &str) -> LibvirtSource {
        LibvirtSource::new(LibvirtSettings {
            uri: uri.into(),
            call_timeout: Duration::from_secs(5),
        })
    }

    #[test]
    fn test_driver_gives_rows_by_uuid_with_rates() {
        let mut s = source("test:///default");
        let mut r0 = Round::default();
        s.poll(&mut r0, 0.0, "h");
        assert_eq!(
            r0.samples.len(),
            1,
            "test:///default has one running domain"
        );
        let uuid = r0.samples[0].vm_id.clone().unwrap();
        assert_eq!(uuid.len(), 36, "{uuid}");
        assert!(r0.samples[0].metrics.mem_used_mib.unwrap() > 0.0);
        std::thread::sleep(Duration::from_millis(50));
        let mut r1 = Round::default();
        s.poll(&mut r1, 0.05, "h");
        let m = r1.samples[0].metrics;
        // The test driver's CPU time grows with wall time: utilisation is a finite fraction.
        let u = m.cpu_util.expect("rate on the second round");
        assert!(u.is_finite() && u >= 0.0, "{u}");
        assert_eq!(r1.details[0].measurement, M_VM_LIBVIRT);
    }

    #[test]
    fn custom_node_gives_one_row_per_running_domain_keyed_by_uuid() {
        let xml = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/libvirt/node.xml");
        let mut s = source(&format!("test://{}", xml.display()));
        let mut r0 = Round::default();
        s.poll(&mut r0, 0.0, "h");
        let mut ids: Vec<_> = r0
            .samples
            .iter()
            .map(|x| x.vm_id.clone().unwrap())
            .collect();
        ids.sort();
        // The test driver starts every domain defined in a node file.
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert!(
            ids.contains(&"11111111-2222-3333-4444-555555555501".to_owned()),
            "{ids:?}"
        );
        assert!(
            ids.contains(&"11111111-2222-3333-4444-555555555502".to_owned()),
            "{ids:?}"
        );
        let web = r0
            .details
            .iter()
            .find(|d| d.tags.iter().any(|(k, v)| *k == "vm_name" && v == "web1"))
            .unwrap();
        assert!(web.fields.contains(&("vcpus", 2.0)), "{:?}", web.fields);
        std::thread::sleep(Duration::from_millis(20));
        let mut r1 = Round::default();
        s.poll(&mut r1, 0.02, "h");
        for row in &r1.samples {
            let u = row.metrics.cpu_util.expect("second round has a CPU rate");
            assert!(u.is_finite() && u >= 0.0);
            assert!(row.metrics.mem_used_mib.unwrap() > 0.0);
        }
    }

    #[test]
    fn unreachable_uri_gives_no_rows_and_no_panic() {
        let mut s = source("test:///nonexistent/node.xml");
        let mut r = Round::default();
        s.poll(&mut r, 1.0, "h");
        assert!(r.samples.is_empty());
        assert_eq!(s.take_errors(), 1);
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
        let mut r = Round::default();
        push_rows(&mut r, &mut st, &reading, 1.0, "h");
        reading.cpu_time_ns += 1_000_000_000;
        push_rows(&mut r, &mut st, &reading, 1.0, "h");
        assert_eq!(r.samples[1].metrics.cpu_util, Some(0.5));
        // Restart: counters start again near zero.
        reading.cpu_time_ns = 10_000_000;
        reading.net_bytes = Some((5, 5));
        push_rows(&mut r, &mut st, &reading, 1.0, "h");
        assert_eq!(r.samples[2].metrics.cpu_util, None);
        assert_eq!(r.samples[2].metrics.net_rx_kib_s, None);
        reading.cpu_time_ns += 2_000_000_000;
        push_rows(&mut r, &mut st, &reading, 1.0, "h");
        assert_eq!(r.samples[3].metrics.cpu_util, Some(1.0));
    }
}
