//! The predicates interaction models call, over this host's plan and the driver's [`View`].
//!
//! | predicate | holds when / binds |
//! |---|---|
//! | `overloaded(Thr, Vm, Need)` | CPU (or measured memory) above `Thr`: the VM to shed (least RAM first) and its `Need` |
//! | `draining(Thr, Vm, Need)` | 0 < CPU < `Thr`, nothing incoming, a busier host exists: the largest VM to hand over |
//! | `spare(Thr, Cap)` | not draining and CPU below `Thr`: free CPU up to `Thr` |
//! | `canMigrate(Thr, [Cap,] Need)` | the VM fits up to `Thr` (CPU, memory, core speed): reserves it |
//! | `price(Thr, Need, P)` | the VM fits: `P` = utilisation after taking it (spread: 1 − that) |
//! | `candidates(Need, Cs)` | up to `bidders` peers able to bid, best first |
//! | `best(Bids, W)` | the best `bid(W, P)` (stable hosts first, then price) |
//! | `migrate(Vm, To)` | agrees to move `Vm` to `To`: the commit layer carries it out |
//! | `refused(Vm, To)` | `To` declined: tried once more (given up after `max_tries`) |
//! | `wake(Thr, Need, W)` | CPU above `Thr`: powers on a switched-off host `W` that fits |
//! | `neighbour(H, N)` | `N`: the next member of `H`'s local group |
//! | `forward(Hops, Next, N)` | `Hops > 0`: `Next = Hops − 1`, `N` the next member |
//! | `overloaded(Need)` | the seed model: utilisation above `high`; the VM to shed (the smallest that removes the excess, else the largest; settled VMs first) |
//! | `underloaded(Limit)` | the seed model: utilisation below `low`; `Limit` = `accept_below` |
//! | `migration(From, To)` | the seed model: moves the VM `overloaded/1` picked |
//! | `waitForMigration` | the seed model: true (the commit layer waits) |
//! | `utilisation(U)` | this host's planned CPU utilisation |

use std::cell::RefCell;
use std::collections::VecDeque;

use keel_lcc::{Directory, Knowledge, KnowledgeError, Program, Value};

use super::view::{Need, Resolved, View};
use super::{id_str, with_id, CoreConfig, ModelConsult, Rank, State, VmChoice};

/// Every predicate the agent registers, as `(name, arity)`.
pub const PREDICATES: &[(&str, usize)] = &[
    ("overloaded", 3),
    ("draining", 3),
    ("spare", 2),
    ("canMigrate", 3),
    ("canMigrate", 2),
    ("price", 3),
    ("candidates", 2),
    ("best", 2),
    ("migrate", 2),
    ("refused", 2),
    ("wake", 3),
    ("neighbour", 2),
    ("forward", 3),
    ("overloaded", 1),
    ("underloaded", 1),
    ("migration", 2),
    ("waitForMigration", 0),
    ("utilisation", 1),
];

/// `name/arity (line:col)` of every call in `program` to a predicate not in [`PREDICATES`].
pub fn unknown_calls(program: &Program, src: &str) -> Vec<String> {
    use keel_lcc::ast::{ConstraintKind, DefKind, TermKind};
    fn cons(c: &keel_lcc::ast::Constraint, out: &mut Vec<(String, usize, u32)>) {
        match &c.kind {
            ConstraintKind::Call(t) => match &t.kind {
                TermKind::Atom(a) => out.push((a.clone(), 0, c.span.start)),
                TermKind::Compound { name, args } => {
                    out.push((name.clone(), args.len(), c.span.start))
                }
                _ => {}
            },
            ConstraintKind::Compare { .. } => {}
            ConstraintKind::Not(x) => cons(x, out),
            ConstraintKind::And(a, b) | ConstraintKind::Or(a, b) => {
                cons(a, out);
                cons(b, out);
            }
        }
    }
    fn def(d: &keel_lcc::ast::Def, out: &mut Vec<(String, usize, u32)>) {
        match &d.kind {
            DefKind::Role { guard, .. }
            | DefKind::Send { guard, .. }
            | DefKind::Recv { guard, .. } => {
                if let Some(g) = guard {
                    cons(g, out);
                }
            }
            DefKind::Null { guard } => cons(guard, out),
            DefKind::Seq(a, b) | DefKind::Choice(a, b) | DefKind::Par(a, b) => {
                def(a, out);
                def(b, out);
            }
        }
    }
    let mut calls = Vec::new();
    for c in &program.framework().clauses {
        def(&c.body, &mut calls);
    }
    let map = keel_lcc::SourceMap::new(String::new(), src.to_string());
    let mut seen = Vec::new();
    for (name, arity, at) in calls {
        if PREDICATES.iter().any(|&(n, a)| n == name && a == arity) {
            continue;
        }
        let (line, col) = map.line_col(at);
        let s = format!("{name}/{arity} ({line}:{col})");
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    seen
}

/// What the predicates see during one step.
pub(crate) struct Cx<'a> {
    pub(crate) me: &'a Value,
    pub(crate) cfg: &'a CoreConfig,
    pub(crate) st: &'a mut State,
    pub(crate) view: &'a mut dyn View,
}

pub(crate) struct Preds<'c, 'a>(pub(crate) &'c RefCell<Cx<'a>>);
pub(crate) struct Discovery<'c, 'a>(pub(crate) &'c RefCell<Cx<'a>>);

fn num(v: &Value) -> Result<f64, KnowledgeError> {
    v.as_f64()
        .ok_or_else(|| KnowledgeError::Failed(format!("expected a number, got {v}")))
}

pub(crate) fn note_tried(st: &mut State, max: u32, vm: &str, to: Value) {
    let e = st.tried.entry(vm.to_string()).or_insert((0, Vec::new()));
    e.0 += 1;
    e.1.push(to);
    if e.0 >= max {
        st.set_exhausted(vm);
    }
}

impl Cx<'_> {
    fn need_of(&self, i: usize, drain: bool) -> Need {
        let v = &self.st.load.vms[i];
        Need {
            cpu: v.cpu,
            mem: v.mem,
            vm: v.id.clone(),
            drain,
            pe_cpu: v.pe_cpu,
            hist: v.hist.clone(),
        }
    }

    /// The term of [`Cx::need_of`], made once per VM and kind in an interval.
    fn need_value(&mut self, i: usize, drain: bool) -> Value {
        let k = usize::from(drain);
        if let Some(v) = self.st.need_vals.get(i).and_then(|c| c[k].as_ref()) {
            return v.clone();
        }
        let v = self.need_of(i, drain).to_value();
        if let Some(c) = self.st.need_vals.get_mut(i) {
            c[k] = Some(v.clone());
        }
        v
    }

    /// The stability model's verdict on this host's last window: its utilisation history, plus
    /// `add`'s demand history over its capacity when given (the projected series; without the
    /// VM's history, its demand now, held), read at `util_now`, else at the series' last point.
    /// `None` without a model, a capacity or a whole window of this host's history.
    fn window_unstable(&mut self, add: Option<&Need>, util_now: Option<f64>) -> Option<bool> {
        let m = self.cfg.stability.as_deref()?;
        let cap = self.st.load.capacity;
        let n = m.window_samples(self.cfg.step_s);
        self.st.hist_reads += 1;
        let own = &self.st.hist;
        if cap <= 0.0 || own.len() < n {
            return None;
        }
        let vm = add.map(|need| {
            (
                need,
                need.hist.len().checked_sub(n).map(|k| &need.hist[k..]),
            )
        });
        let proj: Vec<f64> = own
            .iter()
            .skip(own.len() - n)
            .enumerate()
            .map(|(i, &u)| u + vm.map_or(0.0, |(need, h)| h.map_or(need.cpu, |h| h[i]) / cap))
            .collect();
        let w = keel_core::features::HostWindow::cpu(self.cfg.step_s, &proj);
        let at = util_now.unwrap_or(proj[n - 1]);
        Some(m.score(&w).is_ok_and(|s| m.is_unstable_at(s, at)))
    }

    /// Whether the stability model says this host would overload with `need` added: it scores
    /// the projected series ([`Cx::window_unstable`]). No model, or too short a history of this
    /// host, or an offer [`CoreConfig::model_consult`] leaves unchecked: `false`.
    fn would_overload(&mut self, need: &Need) -> bool {
        if !need.drain && self.cfg.model_consult != ModelConsult::Every {
            return false;
        }
        let unstable = self.window_unstable(Some(need), None) == Some(true);
        if unstable {
            self.st.stats.model_vetoes += 1;
        }
        unstable
    }

    /// Whether this host, above its overload threshold but below its capacity (CPU, and memory
    /// below 0.9), can keep its VMs: the stability model, scoring the host's own history, does
    /// not expect it to reach capacity (its label) within its horizon
    /// ([`ModelConsult::Optional`]). No model, too short a history, or another consult: `false`.
    fn overload_passes(&mut self) -> bool {
        if self.cfg.model_consult != ModelConsult::Optional || self.cfg.stability.is_none() {
            return false;
        }
        let u = self.st.util();
        if u >= 1.0 || self.st.mem_util() > 0.9 {
            return false;
        }
        let stable = self.window_unstable(None, Some(u)) == Some(false);
        if stable {
            self.st.stats.model_waits += 1;
        }
        stable
    }

    /// Whether VM `i` arrived too recently to be offered again (the minimum stay).
    fn settling(&self, i: usize) -> bool {
        self.st.load.vms[i].stay_s < self.cfg.min_stay_s
    }

    /// A VM to move: by [`CoreConfig::vm_choice`] (by default least RAM first, the shortest
    /// migration, or largest CPU first when draining); not one moved, given up or already
    /// migrating; one still settling (minimum stay) only when no other can go. `excess`: the CPU
    /// above the overloaded host's threshold (0 when draining).
    fn pick_vm(&self, largest_first: bool, excess: f64) -> Option<usize> {
        self.pick_vm_among(largest_first, true, excess)
            .or_else(|| self.pick_vm_among(largest_first, false, excess))
    }

    fn pick_vm_among(&self, largest_first: bool, settled_only: bool, excess: f64) -> Option<usize> {
        let st = &self.st;
        let cand = (0..st.load.vms.len()).filter(|&i| {
            st.here[i]
                && !st.load.vms[i].migrating
                && (!settled_only || !self.settling(i))
                && !st.is_gone(i)
        });
        let vms = &st.load.vms;
        if largest_first {
            return cand.fold(None::<usize>, |b, i| match b {
                Some(x) if vms[x].cpu >= vms[i].cpu => Some(x),
                _ => Some(i),
            });
        }
        match self.cfg.vm_choice {
            VmChoice::Size => cand.fold(None::<usize>, |b, i| match b {
                Some(x) if vms[x].ram <= vms[i].ram => Some(x),
                _ => Some(i),
            }),
            VmChoice::Calm => {
                let cap = st.load.capacity;
                let host = (cap > 0.0).then_some((&st.hist, cap));
                // Lowest key first; ties keep the earlier VM. The score is read only for VMs
                // that remove the excess.
                let key = |i: usize| {
                    let v = &vms[i];
                    if v.cpu >= excess {
                        (false, calm_score(&v.hist, host), v.cpu)
                    } else {
                        (true, 0.0, -v.cpu)
                    }
                };
                cand.fold(None::<(usize, (bool, f64, f64))>, |b, i| {
                    let k = key(i);
                    match b {
                        Some((x, kx)) if kx <= k => Some((x, kx)),
                        _ => Some((i, k)),
                    }
                })
                .map(|(i, _)| i)
            }
        }
    }

    /// Whether this host can take `need` up to `thr` of its CPU (and memory, where measured).
    fn fits(&self, need: &Need, thr: f64) -> bool {
        let st = &self.st;
        let l = &st.load;
        if !self.cfg.takes_vms || l.capacity <= 0.0 {
            return false;
        }
        if l.pe_capacity > 0.0 && need.pe_cpu > l.pe_capacity {
            return false;
        }
        if (st.cpu + need.cpu) / l.capacity > thr {
            return false;
        }
        if let Some(mc) = l.mem_capacity {
            if st.mem + need.mem > mc * thr.max(0.9) {
                return false;
            }
        }
        if with_id(&need.vm, |key| {
            st.promises.contains_key(key) || st.index_of(key).is_some_and(|i| st.here[i])
        }) {
            return false;
        }
        if need.drain && (st.cpu <= 0.0 || st.draining) {
            // Consolidation only onto running hosts that are not emptying themselves.
            return false;
        }
        true
    }

    fn reserve(&mut self, need: &Need) {
        let key = id_str(&need.vm);
        self.st.cpu += need.cpu;
        self.st.mem += need.mem;
        self.st.incoming = true;
        self.st.promises.insert(key, (need.cpu, need.mem));
    }

    /// Agrees to move VM `vm` (key) to `to`: out of the plan, into the commit queue.
    fn agree(&mut self, vm: &str, to: &Value) -> bool {
        let st = &mut *self.st;
        let Some(i) = st.index_of(vm) else {
            return false;
        };
        if st.moved.contains(vm) || !st.here[i] {
            return false;
        }
        st.here[i] = false;
        st.cpu -= st.load.vms[i].cpu;
        st.mem -= st.load.vms[i].mem;
        st.set_moved(vm, true);
        st.commits
            .push_back((vm.to_string(), st.load.vms[i].cpu, id_str(to)));
        st.targets.insert(vm.to_string(), to.clone());
        st.stats.agreed += 1;
        true
    }
}

impl Knowledge for Preds<'_, '_> {
    #[allow(clippy::too_many_lines)]
    fn solve(&mut self, name: &str, args: &[Value]) -> Result<Option<Vec<Value>>, KnowledgeError> {
        let mut guard = self.0.borrow_mut();
        let cx = &mut *guard;
        let yes = |vals: Vec<Value>| Ok(Some(vals));
        match (name, args.len()) {
            ("overloaded", 3) => {
                let thr = num(&args[0])?;
                if !cx.cfg.gives_vms || (cx.st.util() <= thr && cx.st.mem_util() <= thr.max(0.9)) {
                    return Ok(None);
                }
                if cx.overload_passes() {
                    return Ok(None);
                }
                let excess = cx.st.cpu - thr * cx.st.load.capacity;
                let Some(i) = cx.pick_vm(false, excess) else {
                    return Ok(None);
                };
                cx.st.stats.started += 1;
                let vm = cx.st.load.vms[i].id.clone();
                yes(vec![args[0].clone(), vm, cx.need_value(i, false)])
            }
            ("draining", 3) => {
                let thr = num(&args[0])?;
                let u = cx.st.util();
                if !(cx.cfg.gives_vms && u > 0.0 && u < thr) || cx.st.incoming {
                    return Ok(None);
                }
                // Drain only towards a busier running host that is not draining itself: the
                // busiest host always stays to receive.
                if !cx.view.busier_exists(cx.me, cx.st.cpu) {
                    return Ok(None);
                }
                // A host that has just received a VM does not empty itself (minimum stay).
                if (0..cx.st.load.vms.len()).any(|i| cx.st.here[i] && cx.settling(i)) {
                    return Ok(None);
                }
                let Some(i) = cx.pick_vm(true, 0.0) else {
                    return Ok(None);
                };
                // A drain that already failed once leaves the host as it is this interval.
                let st = &cx.st;
                if (0..st.keys.len()).any(|j| st.here[j] && st.exhausted.contains(&st.keys[j])) {
                    return Ok(None);
                }
                cx.st.draining = true;
                cx.st.stats.started += 1;
                let vm = cx.st.load.vms[i].id.clone();
                yes(vec![args[0].clone(), vm, cx.need_value(i, true)])
            }
            ("spare", 2) => {
                let thr = num(&args[0])?;
                if !cx.cfg.takes_vms || cx.st.draining || cx.st.util() >= thr {
                    return Ok(None);
                }
                let cap = thr * cx.st.load.capacity - cx.st.cpu;
                yes(vec![args[0].clone(), Value::Float(cap)])
            }
            ("canMigrate", 3 | 2) => {
                let thr = num(&args[0])?;
                let Some(need) = Need::parse(&args[args.len() - 1]) else {
                    return Ok(None);
                };
                cx.view.answered(cx.me, need.cpu);
                // Without a directory to rank it, a peer the model scores unstable declines.
                if cx.view.declines(cx.me) {
                    cx.st.stats.model_vetoes += 1;
                    return Ok(None);
                }
                if cx.fits(&need, thr) && !cx.would_overload(&need) {
                    cx.reserve(&need);
                    Ok(Some(args.to_vec()))
                } else {
                    Ok(None)
                }
            }
            ("price", 3) => {
                let thr = num(&args[0])?;
                let Some(need) = Need::parse(&args[1]) else {
                    return Ok(None);
                };
                if !cx.fits(&need, thr) || cx.would_overload(&need) {
                    return Ok(None);
                }
                let after = (cx.st.cpu + need.cpu) / cx.st.load.capacity;
                let p = match cx.cfg.rank {
                    Rank::Pack => after,
                    Rank::Spread => 1.0 - after,
                };
                yes(vec![args[0].clone(), args[1].clone(), Value::Float(p)])
            }
            ("candidates", 2) => {
                let Some(need) = Need::parse(&args[0]) else {
                    return Ok(None);
                };
                let tried = with_id(&need.vm, |key| {
                    cx.st.tried.get(key).map_or_else(Vec::new, |t| t.1.clone())
                });
                let k = cx.cfg.bidders;
                let c = cx.view.candidates(cx.me, "bidder", &need, &tried, k);
                cx.st.no_candidates = c.is_empty().then(|| id_str(&need.vm));
                yes(vec![
                    args[0].clone(),
                    Value::list(c.into_iter().take(k).collect()),
                ])
            }
            ("best", 2) => {
                let Some(bids) = args[0].list_items() else {
                    return Ok(None);
                };
                let mut best: Option<(bool, f64, Value)> = None;
                for b in bids {
                    if b.name() != Some("bid") || b.args().len() != 2 {
                        continue;
                    }
                    let Some(p) = b.args()[1].as_f64() else {
                        continue;
                    };
                    let w = b.args()[0].clone();
                    let u = cx.view.unstable(&w);
                    // Stable first, then the highest price; ties keep the earlier (lower id) bid.
                    let better = match &best {
                        None => true,
                        Some((bu, bp, bw)) => {
                            (u, -p) < (*bu, -bp) || ((u, -p) == (*bu, -bp) && id_lt(&w, bw))
                        }
                    };
                    if better {
                        best = Some((u, p, w));
                    }
                }
                match best {
                    Some((_, _, w)) => yes(vec![args[0].clone(), w]),
                    None => Ok(None),
                }
            }
            ("migrate", 2) => {
                let vm = id_str(&args[0]);
                if cx.agree(&vm, &args[1]) {
                    Ok(Some(args.to_vec()))
                } else {
                    Ok(None)
                }
            }
            ("refused", 2) => {
                let vm = id_str(&args[0]);
                let max = cx.cfg.max_tries;
                note_tried(cx.st, max, &vm, args[1].clone());
                // Discovery named no candidate at all: asking again in this interval would name
                // none either (it excludes only hosts already tried), so the VM is given up now
                // rather than after `max_tries` identical rounds.
                if args[1].as_atom() == Some("nobody")
                    && cx.st.no_candidates.as_deref() == Some(&vm)
                {
                    cx.st.set_exhausted(&vm);
                }
                if cx.st.exhausted.contains(&vm) {
                    cx.st.stats.refused += 1;
                }
                Ok(Some(args.to_vec()))
            }
            ("wake", 3) => {
                // Last resort of an overloaded host whose group took nothing.
                let thr = num(&args[0])?;
                let Some(need) = Need::parse(&args[1]) else {
                    return Ok(None);
                };
                if cx.st.util() <= thr {
                    return Ok(None);
                }
                match cx.view.wake(cx.me, &need, thr) {
                    Some(w) => {
                        cx.st.stats.woken += 1;
                        yes(vec![args[0].clone(), args[1].clone(), w])
                    }
                    None => Ok(None),
                }
            }
            ("neighbour", 2) => match cx.view.neighbour(cx.me) {
                Some(n) => yes(vec![cx.me.clone(), n]),
                None => Ok(None),
            },
            ("forward", 3) => {
                let Some(hops) = args[0].as_int() else {
                    return Ok(None);
                };
                if hops <= 0 {
                    return Ok(None);
                }
                match cx.view.neighbour(cx.me) {
                    Some(n) => yes(vec![args[0].clone(), Value::Int(hops - 1), n]),
                    None => Ok(None),
                }
            }
            // The seed model (design note): thresholds from the agent's settings.
            ("overloaded", 1) => {
                if !cx.cfg.gives_vms || cx.st.util() <= cx.cfg.high || cx.overload_passes() {
                    return Ok(None);
                }
                let excess = cx.st.cpu - cx.cfg.high * cx.st.load.capacity;
                // The smallest VM that removes the excess, else the largest; one still settling
                // (minimum stay) only when no other can go.
                let st = &cx.st;
                let movable = |i: usize| {
                    st.here[i]
                        && !st.load.vms[i].migrating
                        && st.load.vms[i].cpu > 0.0
                        && !st.is_gone(i)
                };
                let mut idx: Vec<usize> = (0..st.load.vms.len())
                    .filter(|&i| movable(i) && !cx.settling(i))
                    .collect();
                if idx.is_empty() {
                    idx = (0..st.load.vms.len()).filter(|&i| movable(i)).collect();
                }
                idx.sort_by(|&a, &b| {
                    st.load.vms[a]
                        .cpu
                        .total_cmp(&st.load.vms[b].cpu)
                        .then(st.keys[a].cmp(&st.keys[b]))
                });
                let Some(i) = idx
                    .iter()
                    .copied()
                    .find(|&i| st.load.vms[i].cpu >= excess)
                    .or(idx.last().copied())
                else {
                    return Ok(None);
                };
                let need = cx.need_of(i, false);
                cx.st.stats.started += 1;
                let v = need.to_value();
                cx.st.last_pick = Some(need);
                yes(vec![v])
            }
            ("underloaded", 1) => {
                if !cx.cfg.takes_vms || cx.st.util() >= cx.cfg.low {
                    return Ok(None);
                }
                yes(vec![Value::Float(cx.cfg.accept_below)])
            }
            ("migration", 2) => {
                let Some(need) = cx.st.last_pick.take() else {
                    return Ok(None);
                };
                let vm = id_str(&need.vm);
                if cx.agree(&vm, &args[1]) {
                    Ok(Some(args.to_vec()))
                } else {
                    Ok(None)
                }
            }
            ("waitForMigration", 0) => Ok(Some(Vec::new())),
            ("utilisation", 1) => yes(vec![Value::Float(cx.st.util())]),
            _ => Err(KnowledgeError::Unknown),
        }
    }
}

/// Measurements a VM's history needs before [`calm_score`] reads it.
const CALM_MIN_SAMPLES: usize = 3;

/// How likely a VM with CPU history `h` (absolute units, oldest first, the newest now) is to
/// need moving again, lower first: the coefficient of variation of its demand (a calm VM brings
/// little variation to its target) minus, with `host` (this host's utilisation history, oldest
/// first, and its capacity), the correlation of the VM's demand with the rest of the host's load
/// over their common last measurements (moving a VM that rises with the host's peaks relieves
/// the host for longer). 0 with fewer than 3 measurements. No allocation: it runs for the VMs of
/// every shedding host at every measurement.
pub fn calm_score(h: &[f64], host: Option<(&VecDeque<f64>, f64)>) -> f64 {
    let n = match host {
        Some((hh, _)) => h.len().min(hh.len()),
        None => h.len(),
    };
    if n < CALM_MIN_SAMPLES {
        return 0.0;
    }
    let h = &h[h.len() - n..];
    #[allow(clippy::cast_precision_loss)]
    let nf = n as f64;
    let mean = h.iter().sum::<f64>() / nf;
    let var = h.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / nf;
    let cv = if mean > 0.0 { var.sqrt() / mean } else { 0.0 };
    let Some((hh, cap)) = host else {
        return cv;
    };
    // The rest of the host: its load minus this VM's, at the same measurements.
    let rest = || {
        hh.iter()
            .skip(hh.len() - n)
            .zip(h)
            .map(|(u, x)| u * cap - x)
    };
    let rmean = rest().sum::<f64>() / nf;
    let (mut cov, mut rvar) = (0.0, 0.0);
    for (r, x) in rest().zip(h) {
        cov += (x - mean) * (r - rmean);
        rvar += (r - rmean) * (r - rmean);
    }
    let corr = if var > 0.0 && rvar > 0.0 {
        cov / nf / (var.sqrt() * (rvar / nf).sqrt())
    } else {
        0.0
    };
    cv - corr
}

/// Orders ids: integers numerically, otherwise by their text.
fn id_lt(a: &Value, b: &Value) -> bool {
    match (a.as_int(), b.as_int()) {
        (Some(x), Some(y)) => x < y,
        _ => id_str(a) < id_str(b),
    }
}

impl Directory for Discovery<'_, '_> {
    fn resolve(&mut self, role: &Value, body: &Value) -> Option<Value> {
        let role = role.name()?;
        // The models address an unbound peer with the VM's need in the message.
        let need = body.args().iter().find_map(Need::parse)?;
        let mut guard = self.0.borrow_mut();
        let cx = &mut *guard;
        let key = id_str(&need.vm);
        let tried = cx.st.tried.get(&key).map_or_else(Vec::new, |t| t.1.clone());
        match cx.view.resolve(cx.me, role, &need, &tried) {
            Resolved::Peer(p) => Some(p),
            Resolved::Wait => None,
            Resolved::Nobody => {
                // Nobody can take it: give the VM up for this interval.
                cx.st.set_exhausted(&key);
                cx.st.stats.refused += 1;
                None
            }
        }
    }
}
