//! Benchmarks: parse throughput on the protocol fixtures (concatenated to about 1 MB) and
//! interpreter events per second on the seed's migration cycle and a buyer/shopkeeper loop,
//! two peers on the deterministic bus.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keel_lcc::sim::Bus;
use keel_lcc::{FactBase, Peer, Program, Registry, Value};

const FIXTURES: [&str; 5] = [
    include_str!("../tests/protocols/migration_seed.lcc"),
    include_str!("../tests/protocols/buyer_shopkeeper.lcc"),
    include_str!("../tests/protocols/unicode_variants.lcc"),
    include_str!("../tests/protocols/lists_and_comparisons.lcc"),
    include_str!("../examples/buyer_shopkeeper.lcc"),
];

const SHOP_LOOP: &str = "
a(buyer, B) ::
    ask(Item) => a(shopkeeper, S) <- wants(Item)
    then price(Item, Price) <= a(shopkeeper, S)
    then ( ( buy(Item, Price) => a(shopkeeper, S) <- budget(Max) and Price =< Max
             then sold(Item) <= a(shopkeeper, S) )
           or decline(Item) => a(shopkeeper, S) )
    then a(buyer, B)

a(shopkeeper, S) ::
    ask(Item) <= a(buyer, B)
    then price(Item, Price) => a(buyer, B) <- price(Item, Price)
    then ( ( buy(Item, Price) <= a(buyer, B) then sold(Item) => a(buyer, B) )
           or decline(Item) <= a(buyer, B) )
    then a(shopkeeper, S)
";

fn parse_throughput(c: &mut Criterion) {
    let mut input = String::new();
    while input.len() < 1 << 20 {
        for f in FIXTURES {
            input.push_str(f);
            input.push('\n');
        }
    }
    assert!(keel_lcc::parse(&input).is_ok());
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("fixtures_1MB", |b| {
        b.iter(|| keel_lcc::parse(black_box(&input)).is_ok())
    });
    g.finish();
}

fn host(overloaded: bool) -> Registry {
    let mut r = Registry::new();
    r.register("overloaded", 1, move |_| {
        Ok(overloaded.then(|| vec![Value::compound("cpu", vec![Value::Int(2)])]))
    });
    r.register("underloaded", 1, move |_| {
        Ok((!overloaded).then(|| vec![Value::Int(4)]))
    });
    r.register_test("canMigrate", 2, |_| true);
    r.register_test("migration", 2, |_| true);
    r.register_test("waitForMigration", 0, |_| true);
    r
}

/// Runs `rounds` rounds and returns the number of events fired.
fn events_in(bus: &mut Bus, rounds: usize) -> u64 {
    let before: u64 = (0..bus.len()).map(|i| bus.peer(i).events()).sum();
    for _ in 0..rounds {
        bus.round().expect("no runtime error");
    }
    (0..bus.len()).map(|i| bus.peer(i).events()).sum::<u64>() - before
}

fn interpreter(c: &mut Criterion) {
    const ROUNDS: usize = 1000;
    let seed = Arc::new(Program::compile(FIXTURES[0]).unwrap());
    let mut bus = Bus::new();
    bus.set_record(false);
    bus.add(
        Peer::new(Arc::clone(&seed), Value::atom("idle"), Value::atom("h1")).unwrap(),
        host(true),
    );
    bus.add(
        Peer::new(Arc::clone(&seed), Value::atom("idle"), Value::atom("h2")).unwrap(),
        host(false),
    );
    events_in(&mut bus, 100);
    let per_iter = events_in(&mut bus, ROUNDS);
    let mut g = c.benchmark_group("interpreter");
    g.throughput(Throughput::Elements(per_iter));
    g.bench_function("seed_migration_cycle", |b| {
        b.iter(|| events_in(&mut bus, ROUNDS))
    });

    let shop = Arc::new(Program::compile(SHOP_LOOP).unwrap());
    let facts = FactBase::parse("wants(apple). budget(5). price(apple, 3).").unwrap();
    let mut bus = Bus::new();
    bus.set_record(false);
    bus.add(
        Peer::new(Arc::clone(&shop), Value::atom("buyer"), Value::atom("b1")).unwrap(),
        facts.clone(),
    );
    bus.add(
        Peer::new(
            Arc::clone(&shop),
            Value::atom("shopkeeper"),
            Value::atom("s1"),
        )
        .unwrap(),
        facts,
    );
    events_in(&mut bus, 100);
    let per_iter = events_in(&mut bus, ROUNDS);
    g.throughput(Throughput::Elements(per_iter));
    g.bench_function("buyer_shopkeeper_loop", |b| {
        b.iter(|| events_in(&mut bus, ROUNDS))
    });
    g.finish();
}

criterion_group!(benches, parse_throughput, interpreter);
criterion_main!(benches);
