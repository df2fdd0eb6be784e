//! Negotiation round trips over loopback TCP with HMAC-authenticated frames.
//!
//! A real agent (the target) runs in a tokio runtime; the benchmark plays the source over its own
//! transport. `offer_accept` is one round trip (Offer → Accept, then an Abort to release the
//! reservation, not timed); `full_negotiation` is the whole commit protocol (Offer → Accept →
//! Commit → CommitAck → Done → DoneAck: three round trips).
//!
//! Run: `cargo bench -p keel-agent --bench negotiation`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use keel_agent::negotiation::rank::NoModel;
use keel_agent::negotiation::{Msg, NegId};
use keel_agent::net::{now_ms, ClusterKey, FaultPlan, Inbound, NetConfig, Transport};
use keel_agent::node::load::SimFleet;
use keel_agent::node::membership::{PeerInfo, SwimConfig};
use keel_agent::node::{self, Body, NodeConfig, Role};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Source {
    t: Arc<Transport<Body>>,
    rx: mpsc::Receiver<Inbound<Body>>,
    target: SocketAddr,
    seq: u64,
}

impl Source {
    async fn expect(&mut self, f: impl Fn(&Msg) -> bool) {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), self.rx.recv())
                .await
                .expect("answer within 5 s")
                .expect("transport open");
            if let Body::Neg { msg } = m.body {
                if f(&msg) {
                    return;
                }
            }
        }
    }

    fn send(&self, msg: Msg) {
        self.t.send(self.target, &Body::Neg { msg }).unwrap();
    }

    fn next(&mut self) -> NegId {
        self.seq += 1;
        NegId {
            origin: "bench-src".into(),
            seq: self.seq,
        }
    }

    async fn offer_accept(&mut self) -> Duration {
        let neg = self.next();
        let t0 = Instant::now();
        self.send(Msg::Offer {
            neg: neg.clone(),
            vm: "v".into(),
            demand: 1.0,
        });
        self.expect(|m| matches!(m, Msg::Accept { .. })).await;
        let d = t0.elapsed();
        self.send(Msg::Abort { neg });
        d
    }

    async fn full(&mut self) -> Duration {
        let neg = self.next();
        let t0 = Instant::now();
        self.send(Msg::Offer {
            neg: neg.clone(),
            vm: "v".into(),
            demand: 1.0,
        });
        self.expect(|m| matches!(m, Msg::Accept { .. })).await;
        self.send(Msg::Commit { neg: neg.clone() });
        self.expect(|m| matches!(m, Msg::CommitAck { .. })).await;
        self.send(Msg::Done { neg, ok: true });
        self.expect(|m| matches!(m, Msg::DoneAck { .. })).await;
        t0.elapsed()
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let key = ClusterKey::new(b"keel bench cluster key 012345678").unwrap();
    let (target, mut src, stop, tracker) = rt.block_on(async {
        let fleet = SimFleet::new(&[("t-1", "t", 10.0)]);
        let mut cfg = NodeConfig::local("t", key.clone(), 1000.0);
        cfg.eval_interval = Duration::from_millis(100);
        let target = node::spawn(
            cfg,
            fleet.load_for("t"),
            Arc::new(fleet.executor()),
            Arc::new(NoModel),
        )
        .await
        .unwrap();
        let tracker = TaskTracker::new();
        let stop = CancellationToken::new();
        let (t, rx) = Transport::<Body>::bind(
            "bench-src".into(),
            "127.0.0.1:0".parse().unwrap(),
            key,
            NetConfig::default(),
            FaultPlan::default(),
            tracker.clone(),
            stop.clone(),
        )
        .await
        .unwrap();
        // Join the target's fleet over SWIM and keep the record published.
        let me = PeerInfo {
            id: "bench-src".into(),
            addr: t.local_addr(),
            role: Role::Overloaded,
            plays: "overloaded".into(),
            capacity: 1000.0,
            used: 900.0,
            history: vec![],
            step_s: 300.0,
            heartbeat: now_ms(),
            libvirt_uri: None,
            policy_version: 0,
        };
        let swim = SwimConfig {
            period: Duration::from_millis(200),
            fanout: 3,
            dead_after: Duration::from_secs(5),
        };
        let rx = node::bare_member(
            Arc::clone(&t),
            rx,
            me,
            vec![target.addr],
            swim,
            &tracker,
            stop.clone(),
        );
        // Wait until the target knows us and is underloaded.
        loop {
            let st = target.status();
            if st.role == Some(Role::Underloaded) && st.peers.iter().any(|p| p.id == "bench-src") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let src = Source {
            t,
            rx,
            target: target.addr,
            seq: 0,
        };
        (target, src, stop, tracker)
    });
    let mut g = c.benchmark_group("negotiation_loopback_tcp");
    g.bench_function("offer_accept", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += src.offer_accept().await;
                }
                total
            })
        });
    });
    g.bench_function("full_negotiation", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += src.full().await;
                }
                total
            })
        });
    });
    g.finish();
    rt.block_on(async {
        stop.cancel();
        tracker.close();
        tracker.wait().await;
        target.shutdown().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
