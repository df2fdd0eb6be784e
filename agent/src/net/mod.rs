//! Authenticated, framed TCP between agents.
//!
//! Every frame on the wire is a 4-byte big-endian length (tokio-util's `LengthDelimitedCodec`,
//! capped at a configurable maximum so that a hostile length prefix is refused before any buffer
//! is allocated) followed by a 32-byte HMAC-SHA256 tag over the payload and the payload itself:
//! the JSON of a [`Frame`] (a versioned [`Header`] and a body). The tag is checked before the JSON
//! is parsed, so forged frames cost one MAC computation. Each sender numbers its frames; the
//! receiver drops any `(sender, id)` it has already seen in the freshness window and any frame
//! older than that window, so duplicates and replays never reach the negotiation layer.
//!
//! [`Transport`] owns a listener (one task per inbound connection) and one writer task per peer
//! address with a bounded queue; writers connect lazily, with a timeout on every connect and
//! write and retries with exponential backoff. Drops are counted in [`NetStats`], never hidden.
//! A [`FaultPlan`] lets tests and `keel-agent cluster` drop or duplicate outgoing frames.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// Version of the wire format; frames of another version are refused.
pub const PROTOCOL_VERSION: u16 = 1;
/// Default cap on one frame's length (1 MiB): large enough for a policy bundle.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;
/// Length of the HMAC-SHA256 tag that precedes every payload.
pub const MAC_LEN: usize = 32;
/// Shortest accepted cluster key, in bytes.
pub const MIN_KEY_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// Errors of the transport.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The cluster key is too short.
    #[error("cluster key must be at least {MIN_KEY_LEN} bytes, got {0}")]
    ShortKey(usize),
    /// A frame's tag did not verify: forged, corrupted or signed with another key.
    #[error("frame authentication failed")]
    BadMac,
    /// A frame's payload is not a valid frame.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A frame of an unsupported protocol version.
    #[error("protocol version {0} is not supported (this build speaks {PROTOCOL_VERSION})")]
    Version(u16),
    /// A frame outside the freshness window (a replay or a badly skewed clock).
    #[error("stale frame from {from}: sent {age_ms} ms away from now")]
    Stale {
        /// The claimed sender.
        from: String,
        /// Distance between the frame's timestamp and now.
        age_ms: u64,
    },
    /// A frame already seen.
    #[error("duplicate frame {id} from {from}")]
    Duplicate {
        /// The sender.
        from: String,
        /// The frame id.
        id: u64,
    },
    /// A sender not on the allow list.
    #[error("unknown sender {0}")]
    UnknownSender(String),
    /// A socket error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A wait ran out.
    #[error("timed out {0}")]
    Timeout(&'static str),
}

/// The cluster's shared secret. Its `Debug` is redacted.
#[derive(Clone)]
pub struct ClusterKey(Arc<[u8]>);

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

impl ClusterKey {
    /// A key from raw bytes.
    ///
    /// # Errors
    /// [`NetError::ShortKey`] below [`MIN_KEY_LEN`] bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, NetError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(NetError::ShortKey(bytes.len()));
        }
        Ok(Self(Arc::from(bytes)))
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length")
    }

    /// The tag of `payload`.
    pub fn tag(&self, payload: &[u8]) -> [u8; MAC_LEN] {
        let mut m = self.mac();
        m.update(payload);
        m.finalize().into_bytes().into()
    }

    /// Whether `tag` authenticates `payload` (constant-time comparison).
    pub fn verify(&self, payload: &[u8], tag: &[u8]) -> bool {
        let mut m = self.mac();
        m.update(payload);
        m.verify_slice(tag).is_ok()
    }
}

/// The authenticated header of every frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Wire format version ([`PROTOCOL_VERSION`]).
    pub v: u16,
    /// Sender's agent id.
    pub from: String,
    /// Where the sender listens (replies go there).
    pub reply_to: SocketAddr,
    /// Sender-unique frame id (duplicate suppression).
    pub id: u64,
    /// Sender's wall clock at sending, ms since the Unix epoch (freshness).
    pub sent_ms: u64,
}

/// A header and a body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Frame<B> {
    /// Who, when, which version.
    pub header: Header,
    /// The message.
    pub body: B,
}

/// Serialises and tags a frame: `tag || json`.
///
/// # Errors
/// [`NetError::Malformed`] if the body does not serialise.
pub fn encode<B: Serialize>(key: &ClusterKey, frame: &Frame<B>) -> Result<Bytes, NetError> {
    let json = serde_json::to_vec(frame).map_err(|e| NetError::Malformed(e.to_string()))?;
    let mut out = Vec::with_capacity(MAC_LEN + json.len());
    out.extend_from_slice(&key.tag(&json));
    out.extend_from_slice(&json);
    Ok(Bytes::from(out))
}

/// Checks a frame's tag, then parses it and checks its version.
///
/// # Errors
/// [`NetError::BadMac`], [`NetError::Malformed`] or [`NetError::Version`].
pub fn decode<B: DeserializeOwned>(key: &ClusterKey, data: &[u8]) -> Result<Frame<B>, NetError> {
    if data.len() < MAC_LEN {
        return Err(NetError::BadMac);
    }
    let (tag, payload) = data.split_at(MAC_LEN);
    if !key.verify(payload, tag) {
        return Err(NetError::BadMac);
    }
    // Read the version first so a future format gets a clear error rather than a parse error.
    #[derive(Deserialize)]
    struct Probe {
        header: ProbeHeader,
    }
    #[derive(Deserialize)]
    struct ProbeHeader {
        v: u16,
    }
    let probe: Probe =
        serde_json::from_slice(payload).map_err(|e| NetError::Malformed(e.to_string()))?;
    if probe.header.v != PROTOCOL_VERSION {
        return Err(NetError::Version(probe.header.v));
    }
    serde_json::from_slice(payload).map_err(|e| NetError::Malformed(e.to_string()))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Remembers `(sender, id)` pairs for a window, bounded in size.
#[derive(Debug)]
pub struct Dedup {
    seen: HashSet<(String, u64)>,
    /// Insertion order with arrival time, to forget entries past the window or over the cap.
    order: VecDeque<((String, u64), u64)>,
    window_ms: u64,
    cap: usize,
}

impl Dedup {
    /// A filter that remembers ids for `window_ms` and at most `cap` of them.
    pub fn new(window_ms: u64, cap: usize) -> Self {
        Self {
            seen: HashSet::new(),
            order: VecDeque::new(),
            window_ms,
            cap: cap.max(1),
        }
    }

    /// Checks a header: fresh and not seen before. Records it if so.
    ///
    /// # Errors
    /// [`NetError::Stale`] or [`NetError::Duplicate`].
    pub fn check(&mut self, h: &Header, now_ms: u64) -> Result<(), NetError> {
        let age = now_ms.abs_diff(h.sent_ms);
        if age > self.window_ms {
            return Err(NetError::Stale {
                from: h.from.clone(),
                age_ms: age,
            });
        }
        while let Some((_, t)) = self.order.front() {
            if now_ms.saturating_sub(*t) > self.window_ms || self.order.len() >= self.cap {
                let (k, _) = self.order.pop_front().expect("front exists");
                self.seen.remove(&k);
            } else {
                break;
            }
        }
        let k = (h.from.clone(), h.id);
        if !self.seen.insert(k.clone()) {
            return Err(NetError::Duplicate {
                from: h.from.clone(),
                id: h.id,
            });
        }
        self.order.push_back((k, now_ms));
        Ok(())
    }
}

/// Counters of the transport (all monotonic).
#[derive(Debug, Default)]
pub struct NetStats {
    /// Frames accepted and handed to the agent.
    pub frames_in: AtomicU64,
    /// Frames written to a socket.
    pub frames_out: AtomicU64,
    /// Frames refused: bad tag.
    pub rejected_mac: AtomicU64,
    /// Frames refused: malformed, wrong version, unknown sender.
    pub rejected_malformed: AtomicU64,
    /// Connections closed because a frame exceeded the size cap.
    pub rejected_oversize: AtomicU64,
    /// Frames dropped as duplicates or stale.
    pub duplicates: AtomicU64,
    /// Frames that could not be delivered after retries (peer unreachable).
    pub send_failures: AtomicU64,
    /// Frames dropped because a queue was full.
    pub queue_drops: AtomicU64,
    /// Frames dropped on purpose by the fault plan.
    pub fault_drops: AtomicU64,
    /// Frames duplicated on purpose by the fault plan.
    pub fault_dups: AtomicU64,
}

/// A snapshot of [`NetStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)] // the fields mirror NetStats
pub struct NetCounts {
    pub frames_in: u64,
    pub frames_out: u64,
    pub rejected_mac: u64,
    pub rejected_malformed: u64,
    pub rejected_oversize: u64,
    pub duplicates: u64,
    pub send_failures: u64,
    pub queue_drops: u64,
    pub fault_drops: u64,
    pub fault_dups: u64,
}

impl NetStats {
    /// Current values.
    pub fn snapshot(&self) -> NetCounts {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NetCounts {
            frames_in: l(&self.frames_in),
            frames_out: l(&self.frames_out),
            rejected_mac: l(&self.rejected_mac),
            rejected_malformed: l(&self.rejected_malformed),
            rejected_oversize: l(&self.rejected_oversize),
            duplicates: l(&self.duplicates),
            send_failures: l(&self.send_failures),
            queue_drops: l(&self.queue_drops),
            fault_drops: l(&self.fault_drops),
            fault_dups: l(&self.fault_dups),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Faults injected on sending (tests and `keel-agent cluster`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultPlan {
    /// Probability of dropping an outgoing frame.
    pub drop: f64,
    /// Probability of sending an outgoing frame twice.
    pub duplicate: f64,
    /// RNG seed.
    pub seed: u64,
}

/// Timeouts and limits of the transport.
#[derive(Debug, Clone, Copy)]
pub struct NetConfig {
    /// Largest accepted frame, bytes.
    pub max_frame: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Write timeout.
    pub write_timeout: Duration,
    /// Connection attempts per frame before it is counted as a send failure.
    pub connect_attempts: u32,
    /// First backoff between attempts (doubles each time).
    pub backoff: Duration,
    /// Freshness and duplicate window, ms.
    pub window_ms: u64,
    /// Frames queued per peer before drops.
    pub queue: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            connect_timeout: Duration::from_millis(500),
            write_timeout: Duration::from_secs(2),
            connect_attempts: 3,
            backoff: Duration::from_millis(25),
            window_ms: 30_000,
            queue: 256,
        }
    }
}

/// A frame received, authenticated and fresh.
#[derive(Debug, Clone)]
pub struct Inbound<B> {
    /// Who sent it.
    pub header: Header,
    /// What it says.
    pub body: B,
}

/// A framed connection (`read_frame`/`write_frame` over the length-delimited codec).
#[derive(Debug)]
pub struct Connection {
    framed: Framed<TcpStream, LengthDelimitedCodec>,
}

impl Connection {
    /// Wraps a stream with a frame cap of `max_frame` bytes.
    pub fn new(stream: TcpStream, max_frame: usize) -> Self {
        let codec = LengthDelimitedCodec::builder()
            .max_frame_length(max_frame)
            .new_codec();
        Self {
            framed: Framed::new(stream, codec),
        }
    }

    /// The next raw frame, `None` at a clean end of stream.
    ///
    /// # Errors
    /// I/O errors, including `InvalidData` for a frame over the cap.
    pub async fn read_frame(&mut self) -> Result<Option<bytes::BytesMut>, std::io::Error> {
        self.framed.next().await.transpose()
    }

    /// Writes one raw frame and flushes.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn write_frame(&mut self, data: Bytes) -> Result<(), std::io::Error> {
        self.framed.send(data).await
    }
}

/// Per-peer outgoing queues and the listener of one agent.
pub struct Transport<B> {
    id: String,
    addr: SocketAddr,
    key: ClusterKey,
    cfg: NetConfig,
    stats: Arc<NetStats>,
    next_id: AtomicU64,
    /// One bounded queue per destination; its writer task owns the connection.
    writers: Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>,
    faults: Mutex<(FaultPlan, ChaCha8Rng)>,
    tracker: TaskTracker,
    stop: CancellationToken,
    _body: std::marker::PhantomData<fn(B) -> B>,
}

impl<B> fmt::Debug for Transport<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl<B> Transport<B>
where
    B: Serialize + DeserializeOwned + Send + 'static,
{
    /// Binds `listen` and starts accepting. Authenticated, fresh, unique frames arrive on the
    /// returned receiver (bounded by `cfg.queue`; a full inbox applies backpressure to the
    /// connection). Tasks run on `tracker` and stop when `stop` is cancelled.
    ///
    /// # Errors
    /// Binding errors.
    pub async fn bind(
        id: String,
        listen: SocketAddr,
        key: ClusterKey,
        cfg: NetConfig,
        faults: FaultPlan,
        tracker: TaskTracker,
        stop: CancellationToken,
    ) -> Result<(Arc<Self>, mpsc::Receiver<Inbound<B>>), NetError> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(cfg.queue);
        let stats = Arc::new(NetStats::default());
        // Frame ids start at a random point so a restarted agent does not collide with its
        // previous incarnation's ids still in peers' duplicate filters.
        let start_id = rand::thread_rng().gen::<u64>() >> 1;
        let me = Arc::new(Self {
            id,
            addr,
            key,
            cfg,
            stats,
            next_id: AtomicU64::new(start_id),
            writers: Mutex::new(HashMap::new()),
            faults: Mutex::new((faults, ChaCha8Rng::seed_from_u64(faults.seed))),
            tracker: tracker.clone(),
            stop: stop.clone(),
            _body: std::marker::PhantomData,
        });
        let dedup = Arc::new(Mutex::new(Dedup::new(cfg.window_ms, 65_536)));
        let t2 = tracker.clone();
        let key = me.key.clone();
        let stats = Arc::clone(&me.stats);
        tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => break,
                    a = listener.accept() => a,
                };
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "Accept failed.");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                _ = stream.set_nodelay(true);
                let conn = Connection::new(stream, cfg.max_frame);
                t2.spawn(read_loop(
                    conn,
                    peer,
                    key.clone(),
                    Arc::clone(&dedup),
                    Arc::clone(&stats),
                    tx.clone(),
                    stop.clone(),
                ));
            }
        });
        Ok((me, rx))
    }

    /// This agent's listening address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// This agent's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<NetStats> {
        &self.stats
    }

    /// Replaces the fault plan.
    pub fn set_faults(&self, plan: FaultPlan) {
        let mut g = self.faults.lock().expect("fault lock is never poisoned");
        *g = (plan, ChaCha8Rng::seed_from_u64(plan.seed));
    }

    /// Queues `body` for `to` without waiting. Delivery is best effort: a full queue or an
    /// unreachable peer is counted, and the negotiation layer's own timeouts and retries cover it.
    ///
    /// # Errors
    /// [`NetError::Malformed`] if the body does not serialise.
    pub fn send(&self, to: SocketAddr, body: &B) -> Result<(), NetError> {
        let frame = Frame {
            header: Header {
                v: PROTOCOL_VERSION,
                from: self.id.clone(),
                reply_to: self.addr,
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                sent_ms: now_ms(),
            },
            body,
        };
        let data = encode(&self.key, &frame)?;
        let (drop, dup) = {
            let mut g = self.faults.lock().expect("fault lock is never poisoned");
            let (plan, rng) = &mut *g;
            let drop = plan.drop > 0.0 && rng.gen_bool(plan.drop.clamp(0.0, 1.0));
            let dup = plan.duplicate > 0.0 && rng.gen_bool(plan.duplicate.clamp(0.0, 1.0));
            (drop, dup)
        };
        if drop {
            bump(&self.stats.fault_drops);
            return Ok(());
        }
        self.enqueue(to, data.clone());
        if dup {
            bump(&self.stats.fault_dups);
            self.enqueue(to, data);
        }
        Ok(())
    }

    fn enqueue(&self, to: SocketAddr, data: Bytes) {
        let mut writers = self.writers.lock().expect("writer lock is never poisoned");
        let tx = writers.entry(to).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(self.cfg.queue);
            self.tracker.spawn(write_loop(
                to,
                rx,
                self.cfg,
                Arc::clone(&self.stats),
                self.stop.clone(),
            ));
            tx
        });
        if tx.try_send(data).is_err() {
            bump(&self.stats.queue_drops);
        }
    }
}

async fn read_loop<B: DeserializeOwned>(
    mut conn: Connection,
    peer: SocketAddr,
    key: ClusterKey,
    dedup: Arc<Mutex<Dedup>>,
    stats: Arc<NetStats>,
    tx: mpsc::Sender<Inbound<B>>,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return,
            n = conn.read_frame() => n,
        };
        let data = match next {
            Ok(Some(d)) => d,
            Ok(None) => return,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    bump(&stats.rejected_oversize);
                    warn!(%peer, error = %e, "Frame over the size cap; connection closed.");
                } else {
                    debug!(%peer, error = %e, "Connection read failed.");
                }
                return;
            }
        };
        let frame: Frame<B> = match decode(&key, &data) {
            Ok(f) => f,
            Err(NetError::BadMac) => {
                bump(&stats.rejected_mac);
                warn!(%peer, "Frame failed authentication; connection closed.");
                return;
            }
            Err(e) => {
                bump(&stats.rejected_malformed);
                warn!(%peer, error = %e, "Frame refused.");
                continue;
            }
        };
        let checked = dedup
            .lock()
            .expect("dedup lock is never poisoned")
            .check(&frame.header, now_ms());
        if let Err(e) = checked {
            bump(&stats.duplicates);
            debug!(%peer, error = %e, "Frame dropped.");
            continue;
        }
        bump(&stats.frames_in);
        let inbound = Inbound {
            header: frame.header,
            body: frame.body,
        };
        tokio::select! {
            () = stop.cancelled() => return,
            r = tx.send(inbound) => if r.is_err() { return },
        }
    }
}

async fn write_loop(
    to: SocketAddr,
    mut rx: mpsc::Receiver<Bytes>,
    cfg: NetConfig,
    stats: Arc<NetStats>,
    stop: CancellationToken,
) {
    let mut conn: Option<Connection> = None;
    loop {
        let data = tokio::select! {
            () = stop.cancelled() => return,
            d = rx.recv() => match d { Some(d) => d, None => return },
        };
        let mut delivered = false;
        let mut backoff = cfg.backoff;
        for attempt in 0..cfg.connect_attempts.max(1) {
            if attempt > 0 {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff *= 2;
            }
            if conn.is_none() {
                match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(to)).await {
                    Ok(Ok(s)) => {
                        _ = s.set_nodelay(true);
                        conn = Some(Connection::new(s, cfg.max_frame));
                    }
                    Ok(Err(e)) => {
                        debug!(%to, attempt, error = %e, "Connect failed.");
                        continue;
                    }
                    Err(_) => {
                        debug!(%to, attempt, "Connect timed out.");
                        continue;
                    }
                }
            }
            let c = conn.as_mut().expect("connected above");
            match tokio::time::timeout(cfg.write_timeout, c.write_frame(data.clone())).await {
                Ok(Ok(())) => {
                    delivered = true;
                    break;
                }
                Ok(Err(e)) => debug!(%to, attempt, error = %e, "Write failed."),
                Err(_) => debug!(%to, attempt, "Write timed out."),
            }
            conn = None;
        }
        if delivered {
            bump(&stats.frames_out);
        } else {
            bump(&stats.send_failures);
            debug!(%to, "Frame not delivered after retries.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ClusterKey {
        ClusterKey::new(b"0123456789abcdef0123").unwrap()
    }

    fn header(id: u64, sent_ms: u64) -> Header {
        Header {
            v: PROTOCOL_VERSION,
            from: "a".into(),
            reply_to: "127.0.0.1:1".parse().unwrap(),
            id,
            sent_ms,
        }
    }

    #[test]
    fn round_trip_and_forgery() {
        let f = Frame {
            header: header(1, 5),
            body: "hello".to_string(),
        };
        let data = encode(&key(), &f).unwrap();
        let back: Frame<String> = decode(&key(), &data).unwrap();
        assert_eq!(back.body, "hello");
        let other = ClusterKey::new(b"another key of 16+ bytes").unwrap();
        assert!(matches!(
            decode::<String>(&other, &data),
            Err(NetError::BadMac)
        ));
        let mut tampered = data.to_vec();
        let last = tampered.len() - 3;
        tampered[last] ^= 1;
        assert!(matches!(
            decode::<String>(&key(), &tampered),
            Err(NetError::BadMac)
        ));
        assert!(matches!(
            decode::<String>(&key(), b"short"),
            Err(NetError::BadMac)
        ));
    }

    #[test]
    fn other_version_is_refused() {
        let mut h = header(1, 5);
        h.v = 99;
        let data = encode(
            &key(),
            &Frame {
                header: h,
                body: 1u8,
            },
        )
        .unwrap();
        assert!(matches!(
            decode::<u8>(&key(), &data),
            Err(NetError::Version(99))
        ));
    }

    #[test]
    fn short_key_is_refused() {
        assert!(ClusterKey::new(b"short").is_err());
        assert_eq!(format!("{:?}", key()), "ClusterKey(<redacted>)");
    }

    #[test]
    fn dedup_drops_repeats_and_stale_frames() {
        let mut d = Dedup::new(1000, 4);
        assert!(d.check(&header(1, 10_000), 10_000).is_ok());
        assert!(matches!(
            d.check(&header(1, 10_000), 10_001),
            Err(NetError::Duplicate { .. })
        ));
        assert!(d.check(&header(2, 10_000), 10_001).is_ok());
        assert!(matches!(
            d.check(&header(3, 8_000), 10_001),
            Err(NetError::Stale { .. })
        ));
        // The cap bounds memory.
        for i in 10..100 {
            d.check(&header(i, 10_000), 10_002).unwrap();
        }
        assert!(d.seen.len() <= 4);
    }
}
