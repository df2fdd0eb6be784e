//! The libvirt side of `keel-collector-libvirt` (feature `libvirt`): the only code that links
//! libvirt.
//!
//! [`serve`] reads [`Request`]s line by line. A `list` runs on the reading thread (opening the
//! read-only connection on first use, and again after a failure); each `read` runs on a thread of
//! its own, so one hung domain does not hold up the others, and answers when done. Answers are
//! written whole, one line each, under a lock. The collector kills the process when a call
//! misses its deadline: a thread stuck in a C call cannot be cancelled any other way.

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::sync::{Arc, Mutex};

use virt::connect::Connect;
use virt::domain::Domain;

use super::protocol::{Answer, DomainId, DomainReading, Request, Response};

// libvirt's `virDomainMemoryStatTags`.
const STAT_UNUSED: u32 = 4;
const STAT_AVAILABLE: u32 = 5;
const STAT_BALLOON: u32 = 6;
const STAT_RSS: u32 = 7;

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

/// Writes one response line (whole, under the lock, flushed).
fn send<W: Write>(out: &Mutex<W>, resp: &Response) -> io::Result<()> {
    let mut line = serde_json::to_vec(resp).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut w = out
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    w.write_all(&line)?;
    w.flush()
}

/// The helper's state between requests.
struct Session {
    uri: String,
    conn: Option<Connect>,
    /// Domains of the last `list`, by UUID (a `read` names one of these).
    domains: HashMap<String, Domain>,
}

impl Session {
    fn list(&mut self) -> Answer {
        if self.conn.is_none() {
            match Connect::open_read_only(Some(&self.uri)) {
                Ok(c) => self.conn = Some(c),
                Err(e) => return Answer::Error(e.to_string()),
            }
        }
        let Some(conn) = &self.conn else {
            return Answer::Error("no connection".into());
        };
        match conn.list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE) {
            Ok(ds) => {
                self.domains.clear();
                let mut ids = Vec::with_capacity(ds.len());
                for d in ds {
                    // Both are cached client-side; a domain without them cannot be keyed.
                    let (Ok(uuid), Ok(name)) = (d.uuid_string(), d.name()) else {
                        continue;
                    };
                    ids.push(DomainId {
                        uuid: uuid.clone(),
                        name,
                    });
                    self.domains.insert(uuid, d);
                }
                Answer::Domains(ids)
            }
            Err(e) => {
                // The connection may be gone (daemon restarted): reconnect on the next list.
                self.conn = None;
                Answer::Error(e.to_string())
            }
        }
    }
}

/// Serves requests from `input` until it closes, answering on `out`.
///
/// # Errors
/// Reading `input` or writing `out` failed (the collector went away).
pub fn serve<R, W>(uri: &str, input: R, out: W) -> io::Result<()>
where
    R: BufRead,
    W: Write + Send + 'static,
{
    // libvirt prints every error to stderr by default; errors travel in the answers instead.
    virt::error::clear_error_callback();
    let out = Arc::new(Mutex::new(out));
    let mut session = Session {
        uri: uri.to_owned(),
        conn: None,
        domains: HashMap::new(),
    };
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let req: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                // No id to answer to: say so on stderr (the collector's log) and go on.
                eprintln!("keel-collector-libvirt: ignoring a malformed request: {e}");
                continue;
            }
        };
        match req {
            Request::List { id } => send(
                &out,
                &Response {
                    id,
                    result: session.list(),
                },
            )?,
            Request::Read { id, uuid } => match session.domains.get(&uuid).cloned() {
                None => send(
                    &out,
                    &Response {
                        id,
                        result: Answer::Vanished,
                    },
                )?,
                Some(d) => {
                    let out = Arc::clone(&out);
                    std::thread::spawn(move || {
                        let result = match read_domain(&d) {
                            Ok(r) => Answer::Reading(r),
                            Err(e) if is_vanished(&e) => Answer::Vanished,
                            Err(e) => Answer::Error(e.to_string()),
                        };
                        // A failed write means the collector is gone; the reading loop will see
                        // the closed stdin and end the process.
                        _ = send(&out, &Response { id, result });
                    });
                }
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

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

    /// A `Write` the test can read back while `serve`'s threads still hold a clone.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Runs `serve` over `requests` and waits until `n` answers are in.
    fn exchange(uri: &str, requests: &[Request], n: usize) -> Vec<Response> {
        let input: String = requests
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        let out = Shared::default();
        serve(uri, input.as_bytes(), out.clone()).unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            let resps: Vec<Response> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if resps.len() >= n || Instant::now() > end {
                return resps;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn test_driver_lists_and_reads_by_uuid() {
        let r = exchange("test:///default", &[Request::List { id: 1 }], 1);
        let Answer::Domains(ds) = &r[0].result else {
            panic!("{r:?}")
        };
        assert_eq!(ds.len(), 1, "test:///default has one running domain");
        let uuid = ds[0].uuid.clone();
        let r = exchange(
            "test:///default",
            &[
                Request::List { id: 1 },
                Request::Read {
                    id: 2,
                    uuid: uuid.clone(),
                },
                Request::Read {
                    id: 3,
                    uuid: "00000000-0000-0000-0000-000000000000".into(),
                },
            ],
            3,
        );
        let by_id = |id| r.iter().find(|x| x.id == id).unwrap().result.clone();
        let Answer::Reading(reading) = by_id(2) else {
            panic!("{r:?}")
        };
        assert_eq!(reading.uuid, uuid);
        assert!(reading.memory_kib > 0 && reading.vcpus > 0, "{reading:?}");
        assert_eq!(by_id(3), Answer::Vanished, "a UUID not in the last list");
    }

    #[test]
    fn unreachable_uri_is_an_error_answer() {
        let r = exchange(
            "test:///nonexistent/node.xml",
            &[Request::List { id: 9 }],
            1,
        );
        assert_eq!(r[0].id, 9);
        assert!(matches!(r[0].result, Answer::Error(_)), "{r:?}");
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let out = Shared::default();
        serve(
            "test:///default",
            &b"not json\n\n{\"op\":\"list\",\"id\":5}\n"[..],
            out.clone(),
        )
        .unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let r: Response = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(r.id, 5);
    }
}
