//! The core under deterministic event sequences: feed events, assert the actions.

use std::collections::HashMap;

use super::*;

/// Peers 0..n with whatever they published; discovery picks the lowest id in the asked role.
#[derive(Default)]
struct TestView {
    published: HashMap<i64, (f64, String)>,
    unstable: Vec<i64>,
}

impl View for TestView {
    fn resolve(&mut self, me: &Value, role: &str, _need: &Need, exclude: &[Value]) -> Resolved {
        let mut ids: Vec<i64> = self
            .published
            .iter()
            .filter(|(id, (_, r))| Some(**id) != me.as_int() && r == role)
            .map(|(id, _)| *id)
            .filter(|id| !exclude.contains(&Value::Int(*id)))
            .collect();
        ids.sort_unstable();
        ids.first()
            .map_or(Resolved::Nobody, |&i| Resolved::Peer(Value::Int(i)))
    }
    fn candidates(
        &mut self,
        me: &Value,
        role: &str,
        need: &Need,
        exclude: &[Value],
        k: usize,
    ) -> Vec<Value> {
        match self.resolve(me, role, need, exclude) {
            Resolved::Peer(p) => vec![p].into_iter().take(k).collect(),
            _ => Vec::new(),
        }
    }
    fn unstable(&mut self, peer: &Value) -> bool {
        peer.as_int().is_some_and(|p| self.unstable.contains(&p))
    }
    fn busier_exists(&mut self, me: &Value, cpu: f64) -> bool {
        self.published
            .iter()
            .any(|(id, (c, _))| Some(*id) != me.as_int() && *c > cpu)
    }
    fn neighbour(&mut self, me: &Value) -> Option<Value> {
        let me = me.as_int()?;
        let n = self.published.len() as i64;
        Some(Value::Int((me + 1) % n.max(1)))
    }
    fn publish(&mut self, me: &Value, st: &Published<'_>) {
        if let Some(id) = me.as_int() {
            self.published.insert(id, (st.cpu, st.role.to_string()));
        }
    }
}

fn load(vms: &[(i64, f64)]) -> HostLoad {
    HostLoad {
        capacity: 1000.0,
        pe_capacity: 1000.0,
        mem_capacity: None,
        other: 0.0,
        vms: vms
            .iter()
            .map(|&(id, cpu)| VmLoad {
                id: Value::Int(id),
                cpu,
                mem: 0.0,
                ram: 512.0,
                pe_cpu: cpu,
                migrating: false,
                stay_s: f64::INFINITY,
                hist: Vec::new(),
            })
            .collect(),
        step_util: None,
    }
}

fn agents(src: &str, n: i64) -> Vec<HostAgent> {
    agents_with(src, n, &CoreConfig::default())
}

/// `n` agents (ids 0..n) running `src` under `cfg`.
fn agents_with(src: &str, n: i64, cfg: &CoreConfig) -> Vec<HostAgent> {
    let p = compile_model("test.lcc", src).expect("model compiles");
    (0..n)
        .map(|i| HostAgent::new(Value::Int(i), Arc::clone(&p), cfg.clone(), 0).unwrap())
        .collect()
}

/// Delivers every message until none is left; returns the executed (vm, target) pairs and
/// the names of the model's messages, in order.
fn pump(
    ags: &mut [HostAgent],
    view: &mut TestView,
    mut q: Vec<(usize, Output)>,
) -> (Vec<(String, String)>, Vec<String>) {
    let now = Time::from_secs_f64(1.0);
    let mut executed = Vec::new();
    let mut names = Vec::new();
    let mut guard = 0;
    while !q.is_empty() {
        guard += 1;
        assert!(guard < 10_000, "messages never settle");
        let (from, o) = q.remove(0);
        match o {
            Output::Lcc { to, env } => {
                names.push(env.body.name().unwrap_or("?").to_string());
                let to = usize::try_from(to.as_int().unwrap()).unwrap();
                let out = ags[to].on_lcc(now, env, view);
                q.extend(out.into_iter().map(|o| (to, o)));
            }
            Output::Neg { to, msg } => {
                let to: usize = to.parse().unwrap();
                let out = ags[to].on_neg(now, &from.to_string(), msg, view);
                q.extend(out.into_iter().map(|o| (to, o)));
            }
            Output::Execute { neg, vm, target } => {
                executed.push((vm, target));
                let out = ags[from].on_executed(now, &neg, Ok(()), view);
                q.extend(out.into_iter().map(|o| (from, o)));
            }
            Output::Finished(_) => {}
        }
    }
    (executed, names)
}

fn tick_all(
    ags: &mut [HostAgent],
    view: &mut TestView,
    loads: Vec<HostLoad>,
) -> Vec<(usize, Output)> {
    let mut q = Vec::new();
    for (i, (a, l)) in ags.iter_mut().zip(loads).enumerate() {
        q.extend(
            a.tick(Time::from_secs_f64(1.0), l, view)
                .into_iter()
                .map(|o| (i, o)),
        );
    }
    // Agents that waited for discovery go on once every role is known.
    for (i, a) in ags.iter_mut().enumerate() {
        if a.is_busy() {
            q.extend(
                a.resume(Time::from_secs_f64(1.0), view)
                    .into_iter()
                    .map(|o| (i, o)),
            );
        }
    }
    q
}

const POWER_SAVING: &str = include_str!("../../protocols/power-saving.lcc");

#[test]
fn power_saving_moves_a_vm_through_the_model_and_the_commit() {
    let mut ags = agents(POWER_SAVING, 2);
    let mut view = TestView::default();
    // Host 1 first, so that it plays `underloaded` when host 0 asks.
    let mut q = Vec::new();
    q.extend(
        ags[1]
            .tick(Time::ZERO, load(&[(9, 300.0)]), &mut view)
            .into_iter()
            .map(|o| (1, o)),
    );
    q.extend(
        ags[0]
            .tick(Time::ZERO, load(&[(1, 500.0), (2, 450.0)]), &mut view)
            .into_iter()
            .map(|o| (0, o)),
    );
    let (executed, names) = pump(&mut ags, &mut view, q);
    assert_eq!(
        executed,
        vec![("1".to_string(), "1".to_string())],
        "messages: {names:?}"
    );
    assert_eq!(names, vec!["readyToMigrate", "migration"]);
    assert_eq!(ags[0].stats().agreed, 1);
    assert_eq!(ags[0].neg_counts().migrated, 1);
    assert_eq!(ags[1].planned_vms(), 1);
    assert!((ags[1].planned_cpu() - 800.0).abs() < 1e-9);
    assert!(ags[0].neg.is_idle());
    assert_eq!(ags[1].reservations(), 0);
}

#[test]
fn a_vm_is_promised_to_one_host_whatever_the_model_says() {
    // A model that agrees to move the same VM to two hosts.
    let src = "r(idle, initial)\n\
               a(idle, H) :: null <- overloaded(0.5, Vm, Need) then null <- migrate(Vm, 1) then null <- migrate(Vm, 2)";
    let mut ags = agents(src, 3);
    let mut view = TestView::default();
    let out = ags[0].tick(Time::ZERO, load(&[(7, 900.0)]), &mut view);
    let offers: Vec<&Output> = out
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Neg {
                    msg: Msg::Offer { .. },
                    ..
                }
            )
        })
        .collect();
    assert_eq!(offers.len(), 1, "{out:?}");
    assert!(matches!(offers[0], Output::Neg { to, .. } if to == "1"));
    assert_eq!(ags[0].stats().agreed, 1);
}

#[test]
fn a_target_that_reserved_nothing_and_has_no_room_rejects() {
    let src = "r(idle, initial)\n\
               a(idle, H) :: null <- overloaded(0.5, Vm, Need) then null <- migrate(Vm, 1)";
    let mut ags = agents(src, 2);
    let mut view = TestView::default();
    let mut q = tick_all(
        &mut ags,
        &mut view,
        vec![load(&[(7, 900.0)]), load(&[(8, 800.0)])],
    );
    q.retain(|(_, o)| !matches!(o, Output::Lcc { .. }));
    let (executed, _) = pump(&mut ags, &mut view, q);
    assert!(executed.is_empty());
    assert_eq!(ags[0].neg_counts().rejected, 1);
    // The VM is back in the source's plan.
    assert_eq!(ags[0].planned_vms(), 1);
    assert!((ags[0].planned_cpu() - 900.0).abs() < 1e-9);
}

#[test]
fn a_deadlocked_model_times_out_back_to_its_initial_role() {
    // Both sides wait for the other's message.
    let src = "r(idle, initial)\nr(waiter, auxiliary)\n\
               a(idle, H) :: null <- utilisation(U) then a(waiter, H)\n\
               a(waiter, H) :: ping <= a(waiter, X) then a(idle, H)";
    let mut ags = agents(src, 1);
    let mut view = TestView::default();
    ags[0].tick(Time::ZERO, load(&[(1, 100.0)]), &mut view);
    assert!(ags[0].is_busy());
    assert_eq!(ags[0].role_name(), "waiter");
    let d = ags[0].next_deadline().expect("a deadline while waiting");
    assert_eq!(d, Time::ZERO + ags[0].config().lcc_wait);
    ags[0].on_timer(d, &mut view);
    assert_eq!(ags[0].stats().timed_out, 1);
    // Back in `idle`, which leads straight to `waiter` again: the wait restarts from now.
    assert_eq!(ags[0].next_deadline(), Some(d + ags[0].config().lcc_wait));
}

#[test]
fn a_model_calling_an_unknown_predicate_is_refused_with_its_position() {
    let src = "r(idle, initial)\na(idle, H) ::\n  null <- frobnicate(H)";
    match compile_model("bad.lcc", src) {
        Err(CoreError::UnknownPredicates { origin, names }) => {
            assert_eq!(origin, "bad.lcc");
            assert_eq!(names, "frobnicate/1 (3:11)");
        }
        other => panic!("{other:?}"),
    }
    let err = compile_model("broken.lcc", "a(idle, H) :: null <-").unwrap_err();
    assert!(
        matches!(&err, CoreError::Compile(t) if t.contains("broken.lcc")),
        "{err}"
    );
}

#[test]
fn a_runtime_error_returns_the_agent_to_its_initial_role() {
    let src = "r(idle, initial)\nr(x, auxiliary)\n\
               a(idle, H) :: null <- utilisation(U) then a(x, H)\n\
               a(x, H) :: null <- overloaded(notanumber, V, N)";
    let mut ags = agents(src, 1);
    let mut view = TestView::default();
    ags[0].tick(Time::ZERO, load(&[(1, 100.0)]), &mut view);
    assert_eq!(ags[0].stats().model_errors, 1);
    assert!(ags[0]
        .stats()
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("number")));
}

#[test]
fn every_shipped_model_compiles_against_the_registered_predicates() {
    for (name, src) in [
        ("seed", include_str!("../../protocols/seed.lcc")),
        ("power-saving", POWER_SAVING),
        ("agility", include_str!("../../protocols/agility.lcc")),
        ("auction", include_str!("../../protocols/auction.lcc")),
        ("peer-group", include_str!("../../protocols/peer-group.lcc")),
    ] {
        compile_model(name, src).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn the_seed_model_moves_a_vm() {
    let mut ags = agents(include_str!("../../protocols/seed.lcc"), 2);
    let mut view = TestView::default();
    let mut q = Vec::new();
    q.extend(
        ags[1]
            .tick(Time::ZERO, load(&[(9, 100.0)]), &mut view)
            .into_iter()
            .map(|o| (1, o)),
    );
    q.extend(
        ags[0]
            .tick(Time::ZERO, load(&[(1, 500.0), (2, 450.0)]), &mut view)
            .into_iter()
            .map(|o| (0, o)),
    );
    let (executed, names) = pump(&mut ags, &mut view, q);
    assert_eq!(names, vec!["readyToMigrate", "migration"]);
    // Excess 150 over `high` = 0.8: the smallest VM that removes it.
    assert_eq!(executed, vec![("2".to_string(), "1".to_string())]);
}

#[test]
fn the_seed_model_keeps_a_vm_that_just_arrived_while_another_can_go() {
    let cfg = CoreConfig {
        min_stay_s: 3600.0,
        ..CoreConfig::default()
    };
    let mut ags = agents_with(include_str!("../../protocols/seed.lcc"), 2, &cfg);
    let mut view = TestView::default();
    let mut q = Vec::new();
    q.extend(
        ags[1]
            .tick(Time::ZERO, load(&[(9, 100.0)]), &mut view)
            .into_iter()
            .map(|o| (1, o)),
    );
    // VM 2, the seed's pick, arrived 10 minutes ago: VM 1 goes instead.
    let mut l = load(&[(1, 500.0), (2, 450.0)]);
    l.vms[1].stay_s = 600.0;
    q.extend(
        ags[0]
            .tick(Time::ZERO, l, &mut view)
            .into_iter()
            .map(|o| (0, o)),
    );
    let (executed, _) = pump(&mut ags, &mut view, q);
    assert_eq!(executed, vec![("1".to_string(), "1".to_string())]);
}

#[test]
fn a_new_model_replaces_the_running_one() {
    let mut ags = agents(POWER_SAVING, 1);
    let p = compile_model("seed", include_str!("../../protocols/seed.lcc")).unwrap();
    ags[0].set_program(p).unwrap();
    assert_eq!(ags[0].stats().models_adopted, 1);
    let mut view = TestView::default();
    ags[0].tick(Time::ZERO, load(&[(1, 100.0)]), &mut view);
    // The seed model's underloaded role (power saving has `underloaded(Cap)` too, but reaches
    // it through `spare/2`; the seed through `underloaded/1`).
    assert_eq!(ags[0].role_name(), "underloaded");
}

/// A model that says "unstable" when the mean of the scored series reaches `at`.
fn mean_model(at: f64) -> Arc<keel_core::model::ModelFile> {
    let schema = keel_core::features::FeatureSchema::cpu_default();
    Arc::new(
        keel_core::model::ModelFile::one_feature_logistic(schema, "cpu_mean", 1000.0, at, 0.0)
            .expect("the schema has cpu_mean"),
    )
}

/// Host 1 at 30 % for the model's whole window, then host 0 measured as `l0` (both under `cfg`,
/// which holds a model) and the exchange run. Returns the VMs that moved and host 1's vetoes.
fn offer_to_a_host_with_history(cfg: CoreConfig, l0: HostLoad) -> (Vec<String>, u64) {
    let mut ags = agents_with(POWER_SAVING, 2, &cfg);
    let mut view = TestView::default();
    for k in 0..model_window(&cfg) {
        let mut l = load(&[(9, 300.0)]);
        l.step_util = Some(0.3);
        let _ = ags[1].tick(Time::from_secs_f64(k as f64), l, &mut view);
    }
    let moved = measure_host_0(&mut ags, &mut view, Time::ZERO, l0);
    (moved, ags[1].stats().model_vetoes)
}

/// Host 0 measured as `l0` at `now`, and the exchange run: the VMs that moved.
fn measure_host_0(
    ags: &mut [HostAgent],
    view: &mut TestView,
    now: Time,
    l0: HostLoad,
) -> Vec<String> {
    let q: Vec<(usize, Output)> = ags[0]
        .tick(now, l0, view)
        .into_iter()
        .map(|o| (0, o))
        .collect();
    let (executed, _) = pump(ags, view, q);
    executed.into_iter().map(|(vm, _)| vm).collect()
}

/// Samples in the window of `cfg`'s model.
fn model_window(cfg: &CoreConfig) -> usize {
    cfg.stability.as_ref().unwrap().window_samples(cfg.step_s)
}

/// Host 0 overloaded with VMs 1 (500) and 2 (450, at 100 over the window); host 1 at 30 % for
/// the model's whole window. VM 1's history is `vm1_hist`. Returns the VMs that moved and host 1's vetoes.
fn offer_to_a_host_with_a_model(
    vm1_hist: Vec<f64>,
    min_stay: f64,
    vm1_stay: f64,
) -> (Vec<String>, u64) {
    let cfg = CoreConfig {
        stability: Some(mean_model(0.75)),
        min_stay_s: min_stay,
        model_consult: ModelConsult::Every,
        ..CoreConfig::default()
    };
    let mut l0 = load(&[(1, 500.0), (2, 450.0)]);
    l0.vms[0].hist = vm1_hist;
    l0.vms[0].stay_s = vm1_stay;
    l0.vms[1].hist = vec![100.0; 12];
    offer_to_a_host_with_history(cfg, l0)
}

#[test]
fn a_receiver_scores_its_history_with_the_vm_added_and_declines_an_overload() {
    // Flat at 500: 0.3 + 0.5 = 0.8 over the whole window, above the model's 0.75.
    let (moved, vetoes) = offer_to_a_host_with_a_model(vec![500.0; 12], 0.0, f64::INFINITY);
    assert_eq!((moved, vetoes), (Vec::<String>::new(), 1));
    // The same VM now, but at 100 for the rest of the window: 0.3 + 0.133 on average.
    let mut hist = vec![100.0; 11];
    hist.push(500.0);
    let (moved, vetoes) = offer_to_a_host_with_a_model(hist, 0.0, f64::INFINITY);
    assert_eq!((moved, vetoes), (vec!["1".to_string()], 0));
    // Without its history, the VM's demand now is held over the window: declined.
    let (moved, vetoes) = offer_to_a_host_with_a_model(Vec::new(), 0.0, f64::INFINITY);
    assert_eq!((moved, vetoes), (Vec::<String>::new(), 1));
}

#[test]
fn a_vm_that_just_arrived_stays_while_another_can_go() {
    let calm = vec![100.0; 12];
    // VM 1 (the first pick by RAM) arrived 10 minutes ago: VM 2 goes instead.
    let (moved, _) = offer_to_a_host_with_a_model(calm.clone(), 3600.0, 600.0);
    assert_eq!(moved, vec!["2".to_string()]);
    // After its minimum stay it is the first pick again.
    let (moved, _) = offer_to_a_host_with_a_model(calm, 3600.0, 4000.0);
    assert_eq!(moved, vec!["1".to_string()]);
}

#[test]
fn integer_ids_are_written_as_display_writes_them() {
    for i in [0, 7, -7, 10, 799, -1_000_000, i64::MAX, i64::MIN] {
        assert_eq!(id_str(&Value::Int(i)), i.to_string());
    }
    assert_eq!(id_str(&Value::atom("h1")), "h1");
}

#[test]
fn an_empty_host_repeats_its_quiet_tick_until_something_reaches_it() {
    let mut ags = agents(POWER_SAVING, 2);
    let mut view = TestView::default();
    let now = Time::from_secs_f64(1.0);
    for _ in 0..3 {
        assert!(ags[1].tick(now, load(&[]), &mut view).is_empty());
    }
    assert_eq!(
        ags[1].stats().quiet_ticks,
        2,
        "the second and third ticks repeat the first"
    );
    assert_eq!(ags[1].role_name(), "underloaded");
    // An overloaded host offers it a VM: the empty host answers, so its next tick runs the
    // model again (and takes the VM into its plan), and only the one after can be quiet.
    let q: Vec<(usize, Output)> = ags[0]
        .tick(now, load(&[(1, 500.0), (2, 450.0)]), &mut view)
        .into_iter()
        .map(|o| (0, o))
        .collect();
    let (executed, _) = pump(&mut ags, &mut view, q);
    assert_eq!(executed, vec![("1".to_string(), "1".to_string())]);
    ags[1].tick(now, load(&[(1, 500.0)]), &mut view);
    assert_eq!(ags[1].stats().quiet_ticks, 2);
    ags[1].tick(now, load(&[]), &mut view);
    ags[1].tick(now, load(&[]), &mut view);
    assert_eq!(ags[1].stats().quiet_ticks, 3);
}

#[test]
fn repeating_quiet_ticks_changes_nothing_for_any_shipped_model() {
    let models = [
        ("seed", include_str!("../../protocols/seed.lcc")),
        ("power-saving", POWER_SAVING),
        ("agility", include_str!("../../protocols/agility.lcc")),
        ("auction", include_str!("../../protocols/auction.lcc")),
        ("peer-group", include_str!("../../protocols/peer-group.lcc")),
    ];
    // Rounds of loads for four hosts: busy, overloaded or light hosts beside empty ones, an
    // empty host that later gets a VM, and the same loads repeated.
    let rounds: Vec<[Vec<(i64, f64)>; 4]> = vec![
        [
            vec![(1, 500.0), (2, 450.0)],
            vec![(3, 300.0)],
            vec![],
            vec![],
        ],
        [
            vec![(1, 500.0), (2, 450.0)],
            vec![(3, 300.0)],
            vec![],
            vec![],
        ],
        [
            vec![(2, 450.0)],
            vec![(1, 500.0), (3, 300.0)],
            vec![],
            vec![],
        ],
        [
            vec![(2, 100.0)],
            vec![(1, 500.0), (3, 300.0)],
            vec![(4, 50.0)],
            vec![],
        ],
        [
            vec![],
            vec![(1, 500.0), (3, 300.0), (2, 100.0)],
            vec![(4, 50.0)],
            vec![],
        ],
        [
            vec![],
            vec![(1, 900.0), (3, 300.0), (2, 100.0)],
            vec![],
            vec![],
        ],
        [
            vec![],
            vec![(1, 900.0), (3, 300.0), (2, 100.0)],
            vec![],
            vec![],
        ],
    ];
    for (name, src) in models {
        let run = |repeat: bool| {
            let cfg = CoreConfig {
                repeat_quiet_ticks: repeat,
                ..CoreConfig::default()
            };
            let mut ags = agents_with(src, 4, &cfg);
            let mut view = TestView::default();
            let mut trace = Vec::new();
            for r in &rounds {
                let loads = r.iter().map(|vms| load(vms)).collect();
                let q = tick_all(&mut ags, &mut view, loads);
                trace.push(format!("{q:?}"));
                let (executed, names) = pump(&mut ags, &mut view, q);
                let mut published: Vec<_> = view.published.iter().collect();
                published.sort_by_key(|(id, _)| **id);
                trace.push(format!("{executed:?} {names:?} {published:?}"));
            }
            let mut stats: Vec<CoreStats> = ags.iter().map(|a| a.stats().clone()).collect();
            let quiet: u64 = stats.iter().map(|s| s.quiet_ticks).sum();
            for s in &mut stats {
                s.quiet_ticks = 0;
            }
            (trace, stats, quiet)
        };
        let (with, stats_with, quiet) = run(true);
        let (without, stats_without, none) = run(false);
        assert_eq!(none, 0);
        assert!(quiet > 0, "{name}: no tick was repeated");
        assert_eq!(with, without, "{name}");
        assert_eq!(stats_with, stats_without, "{name}");
    }
}

/// A VM of `cpu` with CPU history `hist` (the newest last) and RAM `ram`.
fn vm(id: i64, cpu: f64, ram: f64, hist: Vec<f64>) -> VmLoad {
    VmLoad {
        id: Value::Int(id),
        cpu,
        mem: 0.0,
        ram,
        pe_cpu: cpu,
        migrating: false,
        stay_s: f64::INFINITY,
        hist,
    }
}

/// The VM a host sheds (above `thr`) with `vms` under `choice`, after measurements of its own
/// utilisation `host_hist` (oldest first; the last with the overloaded measurement).
fn shed(choice: VmChoice, thr: f64, vms: &[VmLoad], host_hist: &[f64]) -> String {
    let src = format!(
        "r(idle, initial)\n\
         a(idle, H) :: null <- overloaded({thr}, Vm, Need) then null <- migrate(Vm, 1)"
    );
    let p = compile_model("shed.lcc", &src).expect("model compiles");
    let cfg = CoreConfig {
        vm_choice: choice,
        ..CoreConfig::default()
    };
    let mut a = HostAgent::new(Value::Int(0), p, cfg, 0).unwrap();
    let mut view = TestView::default();
    let (last, before) = host_hist.split_last().expect("a measurement");
    for (k, &u) in before.iter().enumerate() {
        // Under the threshold: the history grows, nothing is offered.
        let mut l = load(&[(99, 1.0)]);
        l.step_util = Some(u);
        assert!(a
            .tick(Time::from_secs_f64(k as f64), l, &mut view)
            .is_empty());
    }
    let l = HostLoad {
        vms: vms.to_vec(),
        step_util: Some(*last),
        ..load(&[])
    };
    let out = a.tick(Time::from_secs_f64(1e3), l, &mut view);
    let offered: Vec<String> = out
        .into_iter()
        .filter_map(|o| match o {
            Output::Neg {
                msg: Msg::Offer { vm, .. },
                ..
            } => Some(vm),
            _ => None,
        })
        .collect();
    assert_eq!(offered.len(), 1, "{offered:?}");
    offered[0].clone()
}

#[test]
fn an_overloaded_host_sheds_the_calm_vm_and_the_one_that_rises_with_its_peaks() {
    // Equal size and RAM: VM 1 swings 100..500, VM 2 stays near 300 (a period of three, so
    // that neither follows the other).
    let swing: Vec<f64> = (0..12).map(|k| [100.0, 500.0][k % 2]).collect();
    let calm: Vec<f64> = (0..12).map(|k| [300.0, 303.0, 297.0][k % 3]).collect();
    let host: Vec<f64> = swing
        .iter()
        .zip(&calm)
        .map(|(a, b)| (a + b) / 1000.0)
        .collect();
    let vms = [
        vm(1, 300.0, 512.0, swing.clone()),
        vm(2, 300.0, 512.0, calm.clone()),
    ];
    assert_eq!(shed(VmChoice::Calm, 0.5, &vms, &host), "2");
    // By size the two are equal: the first goes.
    assert_eq!(shed(VmChoice::Size, 0.5, &vms, &host), "1");

    // Equal swings: VM 1 against the host's peaks, VM 2 with them (VM 3, migrating already,
    // drives the peaks). Moving VM 2 relieves the host.
    let s = |k: usize| if k % 2 == 0 { 1.0 } else { -1.0 };
    let against: Vec<f64> = (0..12).map(|k| 300.0 - 100.0 * s(k)).collect();
    let with: Vec<f64> = (0..12).map(|k| 300.0 + 100.0 * s(k)).collect();
    let host: Vec<f64> = (0..12).map(|k| (900.0 + 300.0 * s(k)) / 1000.0).collect();
    let mut driver = vm(3, 300.0, 512.0, Vec::new());
    driver.migrating = true;
    let vms = [
        vm(1, 300.0, 512.0, against),
        vm(2, 300.0, 512.0, with),
        driver,
    ];
    assert!(
        calm_score(&vms[1].hist, None) == calm_score(&vms[0].hist, None),
        "equal volatility"
    );
    assert_eq!(shed(VmChoice::Calm, 0.75, &vms, &host), "2");
    assert_eq!(shed(VmChoice::Size, 0.75, &vms, &host), "1");
}

#[test]
fn an_overloaded_host_sheds_a_vm_that_removes_the_excess_first() {
    // 650 on 1000 above 0.5: an excess of 150. VM 1 (calm, least RAM) does not remove it; VM 2
    // (swinging) does, and goes: one move relieves the host.
    let calm = vec![100.0; 12];
    let swing: Vec<f64> = (0..12).map(|k| [50.0, 450.0][k % 2]).collect();
    let mut busy = vm(3, 300.0, 512.0, Vec::new());
    busy.migrating = true;
    let vms = [vm(1, 100.0, 512.0, calm), vm(2, 250.0, 1024.0, swing), busy];
    let host = vec![0.65; 12];
    assert_eq!(shed(VmChoice::Calm, 0.5, &vms, &host), "2");
    assert_eq!(shed(VmChoice::Size, 0.5, &vms, &host), "1");
    // Without histories the same rule holds: the smallest VM that removes the excess (550 above
    // 0.4: 150).
    let bare: Vec<VmLoad> = [(1, 100.0), (2, 250.0), (4, 200.0)]
        .iter()
        .map(|&(id, cpu)| vm(id, cpu, 512.0, Vec::new()))
        .collect();
    assert_eq!(shed(VmChoice::Calm, 0.4, &bare, &[0.55]), "4");
    // None removes it (an excess of 400): the largest.
    assert_eq!(shed(VmChoice::Calm, 0.15, &bare, &[0.55]), "2");
}

/// Host 1 at 30 % for the model's whole window (a model flagging a mean above `model_at`,
/// consulted as `consult` says); host 0 with `vms`, each at its demand over the window.
/// Returns the VMs that moved and host 1's vetoes.
fn offer_consulting(
    vms: &[(i64, f64)],
    model_at: f64,
    consult: ModelConsult,
) -> (Vec<String>, u64) {
    let cfg = CoreConfig {
        stability: Some(mean_model(model_at)),
        model_consult: consult,
        ..CoreConfig::default()
    };
    let mut l0 = load(vms);
    for v in &mut l0.vms {
        v.hist = vec![v.cpu; model_window(&cfg)];
    }
    offer_to_a_host_with_history(cfg, l0)
}

#[test]
fn consulting_on_consolidation_only_lets_an_overloaded_hosts_vm_go_and_still_guards_drains() {
    let one = |v: &str| vec![v.to_string()];
    let none = Vec::<String>::new();
    // Overloaded host 0 (0.95): VM 1 (500) would take host 1 to 0.8, above the model's 0.75.
    let shed = [(1, 500.0), (2, 450.0)];
    assert_eq!(
        offer_consulting(&shed, 0.75, ModelConsult::Every),
        (none.clone(), 1)
    );
    assert_eq!(
        offer_consulting(&shed, 0.75, ModelConsult::Consolidation),
        (one("1"), 0)
    );
    // Host 0 emptying itself (0.25): VM 1 would take host 1 to 0.55.
    let drain = [(1, 250.0)];
    assert_eq!(
        offer_consulting(&drain, 0.75, ModelConsult::Consolidation),
        (one("1"), 0)
    );
    assert_eq!(
        offer_consulting(&drain, 0.5, ModelConsult::Consolidation),
        (none.clone(), 1)
    );
    assert_eq!(
        offer_consulting(&drain, 0.5, ModelConsult::Every),
        (none, 1)
    );
}

/// Hosts 0 and 1 with histories at `u0` and 0.3 over the model's window (a model flagging a
/// mean of 0.9 or more, consulted as `consult` says); then host 0 measured with `vms` and the
/// exchange run. Returns the VMs that moved and host 0's waits.
fn shed_after_history(u0: f64, vms: &[(i64, f64)], consult: ModelConsult) -> (Vec<String>, u64) {
    shed_after_history_in(POWER_SAVING, u0, vms, consult)
}

fn shed_after_history_in(
    src: &str,
    u0: f64,
    vms: &[(i64, f64)],
    consult: ModelConsult,
) -> (Vec<String>, u64) {
    let cfg = CoreConfig {
        stability: Some(mean_model(0.9)),
        model_consult: consult,
        ..CoreConfig::default()
    };
    let mut ags = agents_with(src, 2, &cfg);
    let mut view = TestView::default();
    let n = model_window(&cfg);
    for k in 0..n {
        let t = Time::from_secs_f64(k as f64);
        for (a, u) in [(0, u0), (1, 0.3)] {
            let mut l = load(&[(9 + a as i64, 300.0)]);
            l.step_util = Some(u);
            let _ = ags[a].tick(t, l, &mut view);
        }
    }
    let mut l0 = load(vms);
    l0.step_util = Some(u0);
    let moved = measure_host_0(&mut ags, &mut view, Time::from_secs_f64(n as f64), l0);
    (moved, ags[0].stats().model_waits)
}

#[test]
fn an_overload_below_capacity_waits_while_the_model_expects_the_host_to_stay_below_it() {
    let one = |v: &str| vec![v.to_string()];
    let none = Vec::<String>::new();
    // 0.95 of capacity, above the 0.9 threshold; the host's history is calm (0.3).
    let over = [(1, 500.0), (2, 450.0)];
    assert_eq!(
        shed_after_history(0.3, &over, ModelConsult::Optional),
        (none, 1)
    );
    // Consulted on offers only, the host sheds as without a model.
    for c in [ModelConsult::Every, ModelConsult::Consolidation] {
        assert_eq!(shed_after_history(0.3, &over, c), (one("1"), 0), "{c:?}");
    }
    // A history the model flags (0.95 over the window): the host sheds.
    assert_eq!(
        shed_after_history(0.95, &over, ModelConsult::Optional),
        (one("1"), 0)
    );
    // At capacity (1.02) the host sheds whatever the model says.
    let full = [(1, 500.0), (2, 520.0)];
    assert_eq!(
        shed_after_history(0.3, &full, ModelConsult::Optional),
        (one("1"), 0)
    );
    // The seed model's `overloaded/1` asks the same question.
    let seed = include_str!("../../protocols/seed.lcc");
    assert_eq!(
        shed_after_history_in(seed, 0.3, &over, ModelConsult::Optional),
        (Vec::new(), 1)
    );
    assert_eq!(
        shed_after_history_in(seed, 0.3, &over, ModelConsult::Every).1,
        0
    );
}

#[test]
fn a_vm_no_candidate_can_take_is_given_up_at_once_and_one_declined_after_every_try() {
    let auction = include_str!("../../protocols/auction.lcc");
    let over = [(1, 500.0), (2, 450.0)];
    // Alone: discovery names no candidate for either VM. Each is offered once in the interval
    // (asking again would find none either), not `max_tries` times.
    let mut ags = agents(auction, 1);
    let mut view = TestView::default();
    let moved = measure_host_0(&mut ags, &mut view, Time::ZERO, load(&over));
    assert!(moved.is_empty());
    let s = ags[0].stats();
    assert_eq!((s.started, s.refused), (2, 2), "{s:?}");
    // Beside a full host that declines every bid: each VM is offered `max_tries` times.
    let mut ags = agents(auction, 2);
    let mut view = TestView::default();
    let _ = ags[1].tick(Time::ZERO, load(&[(9, 850.0)]), &mut view);
    let moved = measure_host_0(&mut ags, &mut view, Time::ZERO, load(&over));
    assert!(moved.is_empty());
    let s = ags[0].stats();
    let tries = u64::from(CoreConfig::default().max_tries);
    assert_eq!((s.started, s.refused), (2 * tries, 2), "{s:?}");
}
