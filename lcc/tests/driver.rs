//! The async driver: two peers over tokio channels, and the receive timeout under a paused clock.

use std::sync::Arc;
use std::time::Duration;

use keel_lcc::interp::driver::{drive, DriveConfig, DriveEnd, DriveStats};
use keel_lcc::{Directory, Envelope, FactBase, Peer, Program, Value};
use tokio::sync::mpsc;

const SHOP: &str = include_str!("../examples/buyer_shopkeeper.lcc");

/// Resolves every unbound recipient to one fixed id.
struct Fixed(&'static str);

impl Directory for Fixed {
    fn resolve(&mut self, _role: &Value, _body: &Value) -> Option<Value> {
        Some(Value::atom(self.0))
    }
}

#[tokio::test]
async fn buyer_and_shopkeeper_run_as_tasks() {
    let prog = Arc::new(Program::compile(SHOP).unwrap());
    let facts = FactBase::parse(include_str!("../examples/buyer_shopkeeper.facts")).unwrap();
    let (out_tx, mut out_rx) = mpsc::channel::<Envelope>(16);
    let (b_tx, mut b_rx) = mpsc::channel::<Envelope>(16);
    let (s_tx, mut s_rx) = mpsc::channel::<Envelope>(16);
    let cfg = DriveConfig {
        receive_timeout: Duration::from_secs(5),
        tick: Duration::from_millis(10),
    };

    let mut buyer = Peer::new(Arc::clone(&prog), Value::atom("buyer"), Value::atom("b1")).unwrap();
    let mut shop = Peer::new(
        Arc::clone(&prog),
        Value::atom("shopkeeper"),
        Value::atom("s1"),
    )
    .unwrap();
    let (mut kb, mut ks) = (facts.clone(), facts);
    let out_b = out_tx.clone();
    let tb = tokio::spawn(async move {
        let mut stats = DriveStats::default();
        drive(
            &mut buyer,
            &mut kb,
            &mut Fixed("s1"),
            &mut b_rx,
            &out_b,
            cfg,
            &mut stats,
        )
        .await
    });
    let ts = tokio::spawn(async move {
        let mut stats = DriveStats::default();
        drive(
            &mut shop,
            &mut ks,
            &mut Fixed("b1"),
            &mut s_rx,
            &out_tx,
            cfg,
            &mut stats,
        )
        .await
    });
    let mut seen = Vec::new();
    while let Some(env) = out_rx.recv().await {
        seen.push(format!("{} -> {}: {}", env.from.id, env.to.id, env.body));
        let tx = if env.to.id == Value::atom("b1") {
            &b_tx
        } else {
            &s_tx
        };
        tx.send(env).await.unwrap();
        if seen.len() == 4 {
            break;
        }
    }
    assert_eq!(tb.await.unwrap().unwrap(), DriveEnd::Closed);
    assert_eq!(ts.await.unwrap().unwrap(), DriveEnd::Closed);
    assert_eq!(
        seen,
        vec![
            "b1 -> s1: ask(apple)",
            "s1 -> b1: price(apple, 3)",
            "b1 -> s1: buy(apple, 3)",
            "s1 -> b1: sold(apple)"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_request_times_out_and_restarts() {
    let src = "a(asker, A) :: q => a(answerer, B) then r <= a(answerer, B)";
    let prog = Arc::new(Program::compile(src).unwrap());
    let mut peer = Peer::new(prog, Value::atom("asker"), Value::atom("a1")).unwrap();
    let (out_tx, mut out_rx) = mpsc::channel::<Envelope>(16);
    let (_in_tx, mut in_rx) = mpsc::channel::<Envelope>(16);
    let cfg = DriveConfig {
        receive_timeout: Duration::from_secs(5),
        tick: Duration::from_secs(1),
    };
    let mut stats = DriveStats::default();
    let mut k = FactBase::default();
    let mut dir = Fixed("b1");
    let run = drive(
        &mut peer, &mut k, &mut dir, &mut in_rx, &out_tx, cfg, &mut stats,
    );
    // 12 s of virtual time: asks at 0, times out at 5 and asks again, times out at 10, asks again.
    let r = tokio::time::timeout(Duration::from_secs(12), run).await;
    assert!(r.is_err(), "the driver keeps running");
    assert_eq!(stats.timeouts, 2);
    assert_eq!(stats.sent, 3);
    let mut n = 0;
    while out_rx.try_recv().is_ok() {
        n += 1;
    }
    assert_eq!(n, 3);
}
