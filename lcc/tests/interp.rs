//! Running interaction models: the seed's migration roles, the buyer/shopkeeper example,
//! committed choice, `par`, directory resolution, timeouts, bounded state and runtime errors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use keel_lcc::sim::{Bus, Outcome};
use keel_lcc::{
    Envelope, ErrorKind, FactBase, NoDirectory, Peer, Program, Registry, RuntimeError, Status,
    Value,
};

const SEED: &str = include_str!("protocols/migration_seed.lcc");
const SHOP: &str = include_str!("../examples/buyer_shopkeeper.lcc");

fn program(src: &str) -> Arc<Program> {
    Arc::new(Program::compile(src).unwrap())
}

fn a(s: &str) -> Value {
    Value::atom(s)
}

/// `from -> to: body` lines of a trace.
fn lines(trace: &[Envelope]) -> Vec<String> {
    trace
        .iter()
        .map(|e| format!("{} -> {}: {}", e.from.id, e.to.id, e.body))
        .collect()
}

/// Knowledge of a host in the seed protocol: overloaded `over` times, then not; underloaded
/// with capacity `cap` if given. Counts migrations.
fn host(over: Option<usize>, cap: Option<i64>, migrations: Arc<AtomicUsize>) -> Registry {
    let mut r = Registry::new();
    let left = Arc::new(AtomicUsize::new(over.unwrap_or(0)));
    r.register("overloaded", 1, move |_| {
        if left.load(Ordering::SeqCst) > 0 {
            left.fetch_sub(1, Ordering::SeqCst);
            Ok(Some(vec![Value::compound("cpu", vec![Value::Int(2)])]))
        } else {
            Ok(None)
        }
    });
    r.register("underloaded", 1, move |_| {
        Ok(cap.map(|c| vec![Value::Int(c)]))
    });
    r.register_test("canMigrate", 2, |args| {
        let need = args[1]
            .args()
            .first()
            .and_then(Value::as_int)
            .unwrap_or(i64::MAX);
        args[0].as_int().is_some_and(|c| c >= need)
    });
    r.register("migration", 2, move |args| {
        migrations.fetch_add(1, Ordering::SeqCst);
        Ok(Some(args.to_vec()))
    });
    r.register_test("waitForMigration", 0, |_| true);
    r
}

#[test]
fn seed_migration_runs_to_completion() {
    let prog = program(SEED);
    let migrations = Arc::new(AtomicUsize::new(0));
    let mut bus = Bus::new();
    let h1 = Peer::new(Arc::clone(&prog), a("idle"), a("h1")).unwrap();
    let h2 = Peer::new(Arc::clone(&prog), a("idle"), a("h2")).unwrap();
    bus.add(h1, host(Some(1), None, Arc::clone(&migrations)));
    bus.add(h2, host(None, Some(4), Arc::clone(&migrations)));
    let outcome = bus.run(100).unwrap();
    assert_eq!(outcome, Outcome::Quiescent);
    assert_eq!(
        lines(bus.trace()),
        vec![
            "h1 -> h2: readyToMigrate(cpu(2))",
            "h2 -> h1: migration(_G0)"
        ]
    );
    assert_eq!(
        bus.trace()[0].from.role,
        Value::compound(
            "overloaded",
            vec![Value::compound("cpu", vec![Value::Int(2)])]
        )
    );
    assert_eq!(bus.trace()[0].to.role, a("underloaded"));
    assert_eq!(migrations.load(Ordering::SeqCst), 1);
    // h1 is back to idle, waiting; h2 went back to idle and, still underloaded, waits as
    // underloaded for the next request.
    assert_eq!(bus.peer(0).role(), a("idle"));
    assert_eq!(
        bus.peer(1).role(),
        Value::compound("underloaded", vec![Value::Int(4)])
    );
    assert_eq!(bus.status(0), Status::Waiting);
}

#[test]
fn seed_migration_waits_when_capacity_is_too_small() {
    let prog = program(SEED);
    let migrations = Arc::new(AtomicUsize::new(0));
    let mut bus = Bus::new();
    bus.add(
        Peer::new(Arc::clone(&prog), a("idle"), a("h1")).unwrap(),
        host(Some(1), None, Arc::clone(&migrations)),
    );
    bus.add(
        Peer::new(Arc::clone(&prog), a("idle"), a("h2")).unwrap(),
        host(None, Some(1), Arc::clone(&migrations)),
    );
    assert_eq!(bus.run(100).unwrap(), Outcome::Quiescent);
    // The request went out; canMigrate(1, cpu(2)) is false so no reply comes.
    assert_eq!(lines(bus.trace()), vec!["h1 -> h2: readyToMigrate(cpu(2))"]);
    assert_eq!(migrations.load(Ordering::SeqCst), 0);
    assert_eq!(
        bus.peer(0).role(),
        Value::compound(
            "overloaded",
            vec![Value::compound("cpu", vec![Value::Int(2)])]
        )
    );
}

#[test]
fn idle_busy_loop_waits_instead_of_spinning() {
    let prog = program(SEED);
    let mut peer = Peer::new(prog, a("idle"), a("h1")).unwrap();
    let mut k = host(None, None, Arc::new(AtomicUsize::new(0)));
    let mut out = Vec::new();
    assert_eq!(
        peer.step(&mut k, &mut NoDirectory, &mut out).unwrap(),
        Status::Waiting
    );
    assert_eq!(peer.events(), 0);
    assert!(out.is_empty());
}

fn shop(facts: &str) -> Bus {
    let prog = program(SHOP);
    let fb = FactBase::parse(facts).unwrap();
    let mut bus = Bus::new();
    bus.add(
        Peer::new(Arc::clone(&prog), a("buyer"), a("b1")).unwrap(),
        fb.clone(),
    );
    bus.add(
        Peer::new(Arc::clone(&prog), a("shopkeeper"), a("s1")).unwrap(),
        fb,
    );
    bus
}

#[test]
fn buyer_buys_within_budget() {
    let mut bus = shop(include_str!("../examples/buyer_shopkeeper.facts"));
    assert_eq!(bus.run(100).unwrap(), Outcome::AllClosed);
    assert_eq!(
        lines(bus.trace()),
        vec![
            "b1 -> s1: ask(apple)",
            "s1 -> b1: price(apple, 3)",
            "b1 -> s1: buy(apple, 3)",
            "s1 -> b1: sold(apple)",
        ]
    );
}

#[test]
fn buyer_declines_over_budget() {
    let mut bus = shop("wants(pear). budget(5). price(pear, 7). sell(pear).");
    assert_eq!(bus.run(100).unwrap(), Outcome::AllClosed);
    assert_eq!(
        lines(bus.trace()),
        vec![
            "b1 -> s1: ask(pear)",
            "s1 -> b1: price(pear, 7)",
            "b1 -> s1: decline(pear)"
        ]
    );
}

#[test]
fn unknown_predicate_is_an_error_with_span_agent_and_role() {
    let src = "a(r, X) ::\n    null <- mystery(1, Y)\n";
    let mut peer = Peer::new(program(src), a("r"), a("p9")).unwrap();
    let e = peer
        .step(&mut Registry::new(), &mut NoDirectory, &mut Vec::new())
        .unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Runtime(RuntimeError::UnknownPredicate {
            name: "mystery".into(),
            arity: 2,
            agent: "p9".into(),
            role: "r".into()
        })
    );
    assert_eq!(&src[e.span.range()], "mystery(1, Y)");
}

#[test]
fn comparing_non_numbers_is_a_type_error() {
    let src = "a(r, X) :: null <- foo < 3";
    let mut peer = Peer::new(program(src), a("r"), a("p")).unwrap();
    let e = peer
        .step(&mut Registry::new(), &mut NoDirectory, &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Runtime(RuntimeError::Type { .. })),
        "{e}"
    );
    assert_eq!(&src[e.span.range()], "foo < 3");
}

#[test]
fn committed_choice_takes_the_first_branch_that_can_fire() {
    let src = "
        a(r, X) ::
            ( m1 <= a(s, Y) then null <- never )
            or ( m2 <= a(s, Y) then done(Y) => a(s, Y) )
    ";
    let mut peer = Peer::new(program(src), a("r"), a("p")).unwrap();
    let mut k = Registry::new();
    k.register_test("never", 0, |_| false);
    let mut out = Vec::new();
    assert_eq!(
        peer.step(&mut k, &mut NoDirectory, &mut out).unwrap(),
        Status::Waiting
    );
    let env = |body: &str| Envelope {
        from: keel_lcc::PeerRef {
            role: a("s"),
            id: a("q"),
        },
        to: keel_lcc::PeerRef {
            role: a("r"),
            id: a("p"),
        },
        body: a(body),
    };
    // m2 arrives first: the second branch is taken and completes.
    peer.deliver(env("m2"));
    assert_eq!(
        peer.step(&mut k, &mut NoDirectory, &mut out).unwrap(),
        Status::Closed
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].body.to_string(), "done(q)");

    // m1 first: the first branch commits, and then waits forever on `never` (no backtracking).
    let mut peer = Peer::new(program(src), a("r"), a("p")).unwrap();
    peer.deliver(env("m1"));
    peer.deliver(env("m2"));
    assert_eq!(
        peer.step(&mut k, &mut NoDirectory, &mut out).unwrap(),
        Status::Progressed
    );
    assert_eq!(
        peer.step(&mut k, &mut NoDirectory, &mut out).unwrap(),
        Status::Waiting
    );
    assert_eq!(peer.inbox().len(), 1);
}

#[test]
fn par_interleaves_and_closes_when_both_sides_close() {
    let src =
        "a(r, X) :: ( x <= a(s, Y) then ax => a(s, Y) ) par ( y <= a(s, Z) then ay => a(s, Z) )";
    let mut peer = Peer::new(program(src), a("r"), a("p")).unwrap();
    let env = |body: &str| Envelope {
        from: keel_lcc::PeerRef {
            role: a("s"),
            id: a("q"),
        },
        to: keel_lcc::PeerRef {
            role: a("r"),
            id: a("p"),
        },
        body: a(body),
    };
    let mut out = Vec::new();
    let mut k = Registry::new();
    peer.deliver(env("y"));
    assert_eq!(
        peer.step(&mut k, &mut NoDirectory, &mut out).unwrap(),
        Status::Progressed
    );
    assert_eq!(
        out.iter().map(|e| e.body.to_string()).collect::<Vec<_>>(),
        vec!["ay"]
    );
    peer.deliver(env("x"));
    assert_eq!(
        peer.step(&mut k, &mut NoDirectory, &mut out).unwrap(),
        Status::Closed
    );
    assert_eq!(out.len(), 2);
}

#[test]
fn timeout_returns_to_the_initial_role() {
    let prog = program(SEED);
    let mut peer = Peer::new(prog, a("idle"), a("h1")).unwrap();
    let mut k = host(Some(1), None, Arc::new(AtomicUsize::new(0)));
    // A directory that always names h2: the request goes out and the peer waits for the reply.
    struct To(Value);
    impl keel_lcc::Directory for To {
        fn resolve(&mut self, _: &Value, _: &Value) -> Option<Value> {
            Some(self.0.clone())
        }
    }
    let mut out = Vec::new();
    assert_eq!(
        peer.step(&mut k, &mut To(a("h2")), &mut out).unwrap(),
        Status::Progressed
    );
    assert_eq!(out.len(), 1);
    assert_eq!(peer.role().name(), Some("overloaded"));
    assert_eq!(
        peer.step(&mut k, &mut To(a("h2")), &mut out).unwrap(),
        Status::Waiting
    );
    assert_eq!(peer.timeout().unwrap(), Status::TimedOut);
    assert_eq!(peer.role(), a("idle"));
    // Back in idle, no longer overloaded: waits.
    assert_eq!(
        peer.step(&mut k, &mut To(a("h2")), &mut out).unwrap(),
        Status::Waiting
    );
    // A late reply does not disturb idle; it stays in the inbox.
    peer.deliver(Envelope {
        from: keel_lcc::PeerRef {
            role: Value::compound("underloaded", vec![Value::Int(3)]),
            id: a("h2"),
        },
        to: keel_lcc::PeerRef {
            role: a("overloaded"),
            id: a("h1"),
        },
        body: Value::compound("migration", vec![a("ok")]),
    });
    assert_eq!(
        peer.step(&mut k, &mut To(a("h2")), &mut out).unwrap(),
        Status::Waiting
    );
    assert_eq!(peer.inbox().len(), 1);
}

#[test]
fn unresolvable_recipient_waits() {
    let src = "a(r, X) :: hello => a(s, Y)";
    let mut peer = Peer::new(program(src), a("r"), a("p")).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        peer.step(&mut Registry::new(), &mut NoDirectory, &mut out)
            .unwrap(),
        Status::Waiting
    );
    assert!(out.is_empty());
}

#[test]
fn inbox_is_bounded_and_counts_drops() {
    let mut peer = Peer::new(program("a(r, X) :: m <= a(s, Y)"), a("r"), a("p")).unwrap();
    peer.set_inbox_capacity(2);
    let env = Envelope {
        from: keel_lcc::PeerRef {
            role: a("s"),
            id: a("q"),
        },
        to: keel_lcc::PeerRef {
            role: a("r"),
            id: a("p"),
        },
        body: a("other"),
    };
    assert!(peer.deliver(env.clone()));
    assert!(peer.deliver(env.clone()));
    assert!(!peer.deliver(env));
    assert_eq!(peer.dropped(), 1);
    assert_eq!(peer.inbox().len(), 2);
}

/// Loop protocol: the seed cycle forever. State must stay bounded over 100k migrations.
#[test]
fn recursion_keeps_state_bounded() {
    let prog = program(SEED);
    let mut bus = Bus::new();
    bus.set_record(false);
    let m = Arc::new(AtomicUsize::new(0));
    bus.add(
        Peer::new(Arc::clone(&prog), a("idle"), a("h1")).unwrap(),
        host(Some(usize::MAX), None, Arc::clone(&m)),
    );
    bus.add(
        Peer::new(Arc::clone(&prog), a("idle"), a("h2")).unwrap(),
        host(None, Some(4), Arc::clone(&m)),
    );
    let mut max = (0, 0);
    for i in 0..100_000 {
        bus.round().unwrap();
        if i % 1000 == 0 {
            for p in 0..2 {
                let f = bus.peer(p).footprint();
                max = (max.0.max(f.cells), max.1.max(f.nodes));
            }
        }
    }
    assert!(
        m.load(Ordering::SeqCst) > 30_000,
        "migrations: {}",
        m.load(Ordering::SeqCst)
    );
    assert!(max.0 < 600, "store cells grew to {}", max.0);
    assert!(max.1 < 20, "state nodes grew to {}", max.1);
}

#[test]
fn peers_are_send() {
    fn check<T: Send>() {}
    check::<Peer>();
    check::<Bus>();
}

#[test]
fn recursion_over_a_list_sends_one_message_per_item() {
    let src = "
        a(pinger(S), A) ::
            null <- S = [H | T]
            then ping(H) => a(agent, H)
            then a(pinger(T), A)
        a(agent, X) ::
            ping(X) <= a(pinger, P)
    ";
    let prog = program(src);
    let peers = Value::list(vec![a("p1"), a("p2"), a("p3")]);
    let mut bus = Bus::new();
    bus.add(
        Peer::new(
            Arc::clone(&prog),
            Value::compound("pinger", vec![peers]),
            a("x"),
        )
        .unwrap(),
        Registry::new(),
    );
    for id in ["p1", "p2", "p3"] {
        bus.add(
            Peer::new(Arc::clone(&prog), a("agent"), a(id)).unwrap(),
            Registry::new(),
        );
    }
    assert_eq!(bus.run(50).unwrap(), Outcome::Quiescent);
    assert_eq!(
        lines(bus.trace()),
        vec![
            "x -> p1: ping(p1)",
            "x -> p2: ping(p2)",
            "x -> p3: ping(p3)"
        ]
    );
    assert!((1..4).all(|i| bus.peer(i).is_closed()));
    // The list is exhausted: `[] = [H | T]` fails and the pinger waits in role pinger([]).
    assert_eq!(
        bus.peer(0).role(),
        Value::compound("pinger", vec![Value::Nil])
    );
}

#[test]
fn non_tail_recursion_is_bounded_by_an_error() {
    // Each entry of `x` keeps the caller alive (the recursion is not the last step).
    let src = "a(x, I) :: a(x, I) then done => a(y, I)";
    let mut peer = Peer::new(program(src), a("x"), a("p")).unwrap();
    let e = peer
        .step(&mut Registry::new(), &mut NoDirectory, &mut Vec::new())
        .unwrap_err();
    assert!(e.to_string().contains("would nest deeper than 256"), "{e}");
    assert_eq!(&src[e.span.range()], "a(x, I)");
    assert!(peer.footprint().nodes <= 3 * 256 + 3);
}

/// The sender's role in a message is the role its clause plays: the values the caller passed
/// where the head has variables, the head's own constants where it has them (`0.0` unifies with
/// `-0.0`, and the head says `0.0`).
#[test]
fn a_sent_message_carries_the_role_its_clause_plays() {
    let src = "r(start, initial)\n\
               a(start, I) :: null <- true then a(fixed(-0.0), I) then a(open(-0.0, X), I)\n\
               a(fixed(0.0), I) :: one => a(other, o)\n\
               a(open(V, W), I) :: two(W) => a(other, o)\n";
    let mut peer = Peer::new(program(src), a("start"), a("p")).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        peer.step(&mut Registry::new(), &mut NoDirectory, &mut out)
            .unwrap(),
        Status::Closed
    );
    let roles: Vec<String> = out.iter().map(|e| e.from.role.to_string()).collect();
    assert_eq!(roles, vec!["fixed(0.0)", "open(-0.0, _G0)"]);
    assert_eq!(out[1].body.to_string(), "two(_G0)");
}

/// A clause that recurses with its own head keeps playing the role it entered: each message
/// carries it, whether the role was kept from its entry (`count(1)`), has a variable
/// (`open(_)`), or has a float constant the caller wrote differently (`-0.0` entering
/// `zero(0.0)`).
#[test]
fn a_clause_recursing_with_its_own_head_keeps_its_role() {
    let src = "r(start(_), initial)\n\
               a(start(R), I) :: null <- true then a(R, I)\n\
               a(count(N), I) :: tick(N) => a(other, o) then a(count(N), I)\n\
               a(open(V), I) :: tock(V) => a(other, o) then a(open(V), I)\n\
               a(zero(0.0), I) :: tuck => a(other, o) then a(zero(0.0), I)\n";
    let prog = program(src);
    let roles = [
        Value::compound("count", vec![Value::Int(1)]),
        Value::compound("open", vec![Value::Var(0)]),
        Value::compound("zero", vec![Value::Float(-0.0)]),
    ];
    let mut seen = Vec::new();
    for role in roles {
        let start = Value::compound("start", vec![role]);
        let mut peer = Peer::new(Arc::clone(&prog), start, a("p")).unwrap();
        peer.set_step_budget(8);
        let mut out = Vec::new();
        peer.step(&mut Registry::new(), &mut NoDirectory, &mut out)
            .unwrap();
        let mut lines: Vec<String> = out
            .iter()
            .map(|e| format!("{} {}", e.from.role, e.body))
            .collect();
        assert!(lines.len() >= 3, "{lines:?}");
        lines.dedup();
        seen.extend(lines);
    }
    assert_eq!(
        seen,
        vec!["count(1) tick(1)", "open(_G0) tock(_G0)", "zero(0.0) tuck"]
    );
}
