//! The baselines, as CloudSim 3.0.3 implements them.
//!
//! - `no-migration` (CloudSim's DVFS run, `PowerVmAllocationPolicySimple`): each VM on the first
//!   host in index order that can take it; never migrates.
//! - `thr-mmt-0.8`, `iqr-mmt-1.5`, `mad-mmt-2.5`, `lr-mmt-1.2`
//!   (`PowerVmAllocationPolicyMigrationAbstract` with an overload detector and
//!   `PowerVmSelectionPolicyMinimumMigrationTime`): at each interval, VMs with the least RAM are
//!   taken off overloaded hosts until they are not overloaded and placed by power-aware best-fit
//!   decreasing (PABFD) on other hosts; then, host by host from the least utilised, every VM of an
//!   underloaded host is placed elsewhere (all or none). The detectors use the host's utilisation
//!   history (the sum of its VMs' last 30 interval samples) and fall back to a 0.7 static
//!   threshold while the history is short.
//! - `lr-mc-1.2` and the like (`PowerVmSelectionPolicyMaximumCorrelation`): as above, but the VM
//!   taken off an overloaded host is the one whose utilisation history is best explained by the
//!   others' (the highest R² of an ordinary least-squares regression with intercept on the other
//!   VMs' histories); when there are fewer history samples than VMs, or the regression is
//!   singular, CloudSim falls back to minimum migration time for that choice.
//!
//! CloudSim's quirks that move the figures are kept on purpose and marked `CloudSim:` below.

use std::collections::HashSet;

use super::engine::{Engine, Policy};

/// Overload detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Detector {
    /// Static threshold on requested / capacity.
    Thr(f64),
    /// 1 − s · IQR of the history.
    Iqr(f64),
    /// 1 − s · MAD of the history.
    Mad(f64),
    /// Local regression of the last 10 samples, predicted · s ≥ 1.
    Lr(f64),
}

const FALLBACK_THR: f64 = 0.7;

impl Detector {
    /// Parses `thr-0.8`-style names as used in policy names (`thr`, `iqr`, `mad`, `lr`).
    pub fn parse(kind: &str, param: f64) -> Option<Self> {
        Some(match kind {
            "thr" => Self::Thr(param),
            "iqr" => Self::Iqr(param),
            "mad" => Self::Mad(param),
            "lr" => Self::Lr(param),
            _ => return None,
        })
    }

    /// The threshold on requested MIPS / capacity the detector applies while the host's history
    /// is too short (all of it while the VMs are created): its own for `Thr`, else CloudSim's
    /// fallback.
    pub fn static_threshold(&self) -> f64 {
        match *self {
            Self::Thr(t) => t,
            Self::Iqr(_) | Self::Mad(_) | Self::Lr(_) => FALLBACK_THR,
        }
    }

    /// Whether host `h` is overloaded with the VMs now in its list.
    pub fn overloaded(&self, e: &Engine<'_>, h: usize) -> bool {
        let thr = |t: f64| e.requested_mips(h) / e.hosts[h].total_mips > t;
        match *self {
            Self::Thr(t) => thr(t),
            Self::Iqr(s) | Self::Mad(s) => {
                let hist = host_history(e, h);
                if hist.len() < 12 {
                    return thr(FALLBACK_THR);
                }
                let spread = if matches!(self, Self::Iqr(_)) {
                    iqr(&hist)
                } else {
                    mad(&hist)
                };
                thr(1.0 - s * spread)
            }
            Self::Lr(s) => {
                let hist = host_history(e, h);
                const LEN: usize = 10;
                if hist.len() < LEN {
                    return thr(FALLBACK_THR);
                }
                // Oldest first, x = 1..=10.
                let y: Vec<f64> = (0..LEN).map(|i| hist[LEN - i - 1]).collect();
                let (a, b) = ols(&y);
                let host = &e.hosts[h];
                let bw = host.bw_mbit * e.sc.migration_bw_fraction / 8.0;
                let max_mig = host
                    .vm_list
                    .iter()
                    .map(|&v| e.vms[v as usize].ram / bw)
                    .fold(0.0, f64::max);
                let intervals = (max_mig / e.sc.interval_s).ceil();
                let predicted = (a + b * (LEN as f64 + intervals)) * s;
                predicted >= 1.0
            }
        }
    }
}

/// CloudSim's `PowerHostUtilizationHistory.getUtilizationHistory`: Σ over the host's VMs of their
/// history × VM MIPS / host MIPS, newest first, trailing zeros trimmed.
fn host_history(e: &Engine<'_>, h: usize) -> Vec<f64> {
    let host = &e.hosts[h];
    let mut out = [0.0f64; super::engine::VM_HISTORY_LEN];
    for &v in &host.vm_list {
        let vm = &e.vms[v as usize];
        let per_pe = vm.mips / f64::from(vm.pes);
        for (i, x) in vm.history.iter().enumerate() {
            out[i] += x * per_pe / host.total_mips;
        }
    }
    let n = out.iter().rposition(|&x| x != 0.0).map_or(0, |i| i + 1);
    out[..n].to_vec()
}

fn median(xs: &[f64]) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn mad(xs: &[f64]) -> f64 {
    let m = median(xs);
    let dev: Vec<f64> = xs.iter().map(|x| (m - x).abs()).collect();
    median(&dev)
}

/// CloudSim's `MathUtil.iqr`: quartiles by rounded rank.
fn iqr(xs: &[f64]) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    let q1 = ((0.25 * (n + 1.0)).round() as usize).saturating_sub(1);
    let q3 = ((0.75 * (n + 1.0)).round() as usize).saturating_sub(1);
    s[q3.min(s.len() - 1)] - s[q1.min(s.len() - 1)]
}

/// Ordinary least squares of `y` on x = 1..=n: (intercept, slope). CloudSim's "loess" weights
/// are all positive, so its weighted regression reduces to this.
fn ols(y: &[f64]) -> (f64, f64) {
    let n = y.len() as f64;
    let xm = (n + 1.0) / 2.0;
    let ym = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, yi) in y.iter().enumerate() {
        let dx = (i + 1) as f64 - xm;
        sxy += dx * (yi - ym);
        sxx += dx * dx;
    }
    let b = sxy / sxx;
    (ym - b * xm, b)
}

/// CloudSim's `areAllVmsMigratingOutOrAnyVmMigratingIn`, including its early return.
fn all_out_or_any_in(e: &Engine<'_>, h: usize) -> bool {
    let host = &e.hosts[h];
    for &v in &host.vm_list {
        if !e.vms[v as usize].in_migration {
            return false;
        }
        if host.migrating_in.contains(&v) {
            return true;
        }
    }
    true
}

/// No migration: first fit in host order (CloudSim's DVFS run).
#[derive(Debug, Default)]
pub struct NoMigration;

impl Policy for NoMigration {
    fn name(&self) -> String {
        "no-migration".into()
    }

    fn place(&mut self, e: &mut Engine<'_>, vm: usize) -> Option<usize> {
        match e.placement_candidates() {
            // The first host of the first class that can take the VM (see
            // `Engine::placement_candidates`).
            Some(hosts) => hosts
                .into_iter()
                .find(|&h| e.suitable_with(h, vm, e.host_figures(h).available)),
            None => (0..e.hosts.len()).find(|&h| e.is_suitable(h, vm)),
        }
    }

    fn placement_key(&self) -> Option<String> {
        Some("first fit".into())
    }

    fn optimize(&mut self, _e: &mut Engine<'_>) -> anyhow::Result<Vec<(usize, usize)>> {
        Ok(Vec::new())
    }
}

/// CloudSim's PABFD: the suitable, non-excluded host whose power rises least; a non-empty host
/// that the VM would overload is skipped. CloudSim: the rise is measured from the power at the
/// last update, not from what planning has already put on the host.
///
/// While the VMs are created, it weighs only the first host of each class of hosts that it
/// cannot tell apart ([`Engine::placement_candidates`]): the others of a class would weigh the
/// same and lose the tie to the first, as in CloudSim's scan of every host in order.
pub fn pabfd(
    e: &mut Engine<'_>,
    det: &Detector,
    v: usize,
    excluded: &HashSet<usize>,
) -> Option<usize> {
    let mut best = None;
    let mut min = f64::MAX;
    let mut consider = |e: &mut Engine<'_>, h: usize| {
        if let Some(diff) = power_rise(e, det, v, h) {
            if diff < min {
                min = diff;
                best = Some(h);
            }
        }
    };
    match e.placement_candidates() {
        Some(hosts) if excluded.is_empty() => {
            for h in hosts {
                consider(e, h);
            }
        }
        _ => {
            for h in 0..e.hosts.len() {
                if !excluded.contains(&h) {
                    consider(e, h);
                }
            }
        }
    }
    best
}

/// PABFD's weight of host `h` for VM `v`: the rise in power, or `None` if `h` cannot take `v`.
fn power_rise(e: &mut Engine<'_>, det: &Detector, v: usize, h: usize) -> Option<f64> {
    let (planned, power_now, requested) = if e.is_placing() {
        // Creating the VMs: the host's figures are kept between VMs.
        let f = e.host_figures(h);
        if !e.suitable_with(h, v, f.available) {
            return None;
        }
        (f.planned, f.power_now, Some(f.requested))
    } else {
        if !e.is_suitable(h, v) {
            return None;
        }
        let now = e.util_at_update(h).min(1.0);
        (e.planned_util_mips(h), e.power_at(h, now), None)
    };
    if planned != 0.0 {
        let over = match requested {
            // Creating the VMs: no VM has a history yet, so every detector is a static
            // threshold on the requested MIPS (its own, or the fallback while the history is
            // short), here with the VM added (the VM, being created, is on no host: trying it
            // on `h` changes nothing else).
            Some(r) => (r + e.vms[v].req) / e.hosts[h].total_mips > det.static_threshold(),
            None => {
                e.plan_create(h, v);
                let over = det.overloaded(e, h);
                e.plan_destroy(h, v);
                over
            }
        };
        if over {
            return None;
        }
    }
    let after = ((planned + e.vms[v].req) / e.hosts[h].total_mips).min(1.0);
    Some(e.power_at(h, after) - power_now)
}

/// Which VM an overloaded host gives up first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Minimum migration time: the least RAM.
    Mmt,
    /// Maximum correlation with the host's other VMs.
    Mc,
}

/// The migratable VM with the least RAM, first in list order.
fn pick_mmt(e: &Engine<'_>, h: usize) -> Option<usize> {
    e.hosts[h]
        .vm_list
        .iter()
        .map(|&v| v as usize)
        .filter(|&v| !e.vms[v].in_migration)
        .fold(None::<(usize, f64)>, |best, v| match best {
            Some((_, r)) if e.vms[v].ram >= r => best,
            _ => Some((v, e.vms[v].ram)),
        })
        .map(|(v, _)| v)
}

/// CloudSim's maximum-correlation choice, falling back to [`pick_mmt`] where CloudSim does.
fn pick_mc(e: &Engine<'_>, h: usize) -> Option<usize> {
    let vms: Vec<usize> = e.hosts[h]
        .vm_list
        .iter()
        .map(|&v| v as usize)
        .filter(|&v| !e.vms[v].in_migration)
        .collect();
    let n = vms.len();
    let m = vms.iter().map(|&v| e.vms[v].history.len()).min()?;
    // CloudSim: one VM gives an empty predictor matrix, and n - 1 predictors need n samples;
    // both raise, and the fallback policy chooses.
    if n < 2 || n > m {
        return pick_mmt(e, h);
    }
    let data: Vec<Vec<f64>> = vms
        .iter()
        .map(|&v| e.vms[v].history.iter().take(m).copied().collect())
        .collect();
    let mut best = (0, f64::MIN_POSITIVE);
    for i in 0..n {
        let others: Vec<&[f64]> = (0..n)
            .filter(|&j| j != i)
            .map(|j| data[j].as_slice())
            .collect();
        let Some(r2) = r_squared(&data[i], &others) else {
            return pick_mmt(e, h);
        };
        // CloudSim starts from Double.MIN_VALUE: R² ≤ 0 or NaN never wins, and VM 0 is the default.
        if r2 > best.1 {
            best = (i, r2);
        }
    }
    Some(vms[best.0])
}

/// R² of the least-squares regression of `y` on an intercept and the columns `xs` (all of `y`'s
/// length), by Householder QR as Commons Math's `OLSMultipleLinearRegression`; `None` when the
/// design is singular (a zero pivot, Commons Math's default threshold). Not a positive number
/// when `y` is constant.
fn r_squared(y: &[f64], xs: &[&[f64]]) -> Option<f64> {
    let m = y.len();
    let p = xs.len() + 1;
    // Column-major design matrix [1 | xs] and the right-hand side, reduced in place.
    let mut a: Vec<Vec<f64>> = std::iter::once(vec![1.0; m])
        .chain(xs.iter().map(|c| c.to_vec()))
        .collect();
    let mut b = y.to_vec();
    for k in 0..p {
        let norm = a[k][k..].iter().map(|x| x * x).sum::<f64>().sqrt();
        let alpha = if a[k][k] > 0.0 { -norm } else { norm };
        if alpha == 0.0 {
            return None;
        }
        // v = a_k[k..] - alpha e_1; H = I - 2 v vᵀ / vᵀv.
        let mut v: Vec<f64> = a[k][k..].to_vec();
        v[0] -= alpha;
        let vv: f64 = v.iter().map(|x| x * x).sum();
        if vv == 0.0 {
            continue;
        }
        let reflect = |col: &mut [f64]| {
            let d: f64 = v.iter().zip(col.iter()).map(|(a, b)| a * b).sum();
            let f = 2.0 * d / vv;
            for (c, vi) in col.iter_mut().zip(&v) {
                *c -= f * vi;
            }
        };
        for col in a.iter_mut().skip(k) {
            reflect(&mut col[k..]);
        }
        reflect(&mut b[k..]);
    }
    // The residual sum of squares is what QR leaves below the first p rows.
    let ssr: f64 = b[p.min(m)..].iter().map(|x| x * x).sum();
    let mean = y.iter().sum::<f64>() / m as f64;
    let sst: f64 = y.iter().map(|x| (x - mean) * (x - mean)).sum();
    Some(1.0 - ssr / sst)
}

/// A centralised migration heuristic: an overload detector and a VM selection policy.
#[derive(Debug)]
pub struct Heuristic {
    det: Detector,
    sel: Selection,
    name: String,
}

impl Heuristic {
    /// `thr-mmt-0.8` and the like.
    pub fn new(det: Detector, sel: Selection, name: String) -> Self {
        Self { det, sel, name }
    }

    /// Parses a baseline name: `thr-mmt-0.8`, `iqr-mmt-1.5`, `mad-mmt-2.5`, `lr-mmt-1.2`,
    /// `lr-mc-1.2` (any detector with `mmt` or `mc`).
    pub fn parse(name: &str) -> Option<Self> {
        let mut it = name.splitn(3, '-');
        let kind = it.next()?;
        let sel = match it.next()? {
            "mmt" => Selection::Mmt,
            "mc" => Selection::Mc,
            _ => return None,
        };
        let p: f64 = it.next()?.parse().ok()?;
        Some(Self::new(Detector::parse(kind, p)?, sel, name.to_string()))
    }

    fn place_all(
        &self,
        e: &mut Engine<'_>,
        mut vms: Vec<usize>,
        excluded: &HashSet<usize>,
        all_or_none: bool,
    ) -> Vec<(usize, usize)> {
        let now = e.now;
        // CloudSim: sorted by current utilisation × MIPS, decreasing (stable).
        let key = |e: &Engine<'_>, v: usize| e.wl.cpu_at(v, now) * e.vms[v].mips;
        let keys: Vec<f64> = vms.iter().map(|&v| key(e, v)).collect();
        let mut idx: Vec<usize> = (0..vms.len()).collect();
        idx.sort_by(|&a, &b| keys[b].total_cmp(&keys[a]));
        vms = idx.into_iter().map(|i| vms[i]).collect();
        let mut out = Vec::new();
        for v in vms {
            match pabfd(e, &self.det, v, excluded) {
                Some(h) => {
                    e.plan_create(h, v);
                    out.push((v, h));
                }
                None if all_or_none => {
                    for &(pv, ph) in &out {
                        e.plan_destroy(ph, pv);
                    }
                    out.clear();
                    break;
                }
                None => {}
            }
        }
        out
    }
}

impl Policy for Heuristic {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn place(&mut self, e: &mut Engine<'_>, vm: usize) -> Option<usize> {
        pabfd(e, &self.det, vm, &HashSet::new())
    }

    fn placement_key(&self) -> Option<String> {
        Some(format!("pabfd {:?}", self.det))
    }

    fn optimize(&mut self, e: &mut Engine<'_>) -> anyhow::Result<Vec<(usize, usize)>> {
        let n = e.hosts.len();
        let over: Vec<usize> = (0..n).filter(|&h| self.det.overloaded(e, h)).collect();
        e.save();
        let mut to_migrate = Vec::new();
        for &h in &over {
            loop {
                let pick = match self.sel {
                    Selection::Mmt => pick_mmt(e, h),
                    Selection::Mc => pick_mc(e, h),
                };
                let Some(v) = pick else { break };
                to_migrate.push(v);
                e.plan_destroy(h, v);
                if !self.det.overloaded(e, h) {
                    break;
                }
            }
        }
        let over_set: HashSet<usize> = over.iter().copied().collect();
        let mut plan = self.place_all(e, to_migrate, &over_set, false);

        // Underloaded hosts. CloudSim: "switched off" and "least utilised" read the utilisation
        // at the last update, and hosts that just received VMs are not excluded.
        let switched_off: Vec<usize> = (0..n).filter(|&h| e.util_at_update(h) == 0.0).collect();
        let mut excl_under: HashSet<usize> = over_set.clone();
        excl_under.extend(&switched_off);
        let mut excl_place = excl_under.clone();
        loop {
            if excl_under.len() == n {
                break;
            }
            let mut min = 1.0;
            let mut under = None;
            for h in 0..n {
                if excl_under.contains(&h) {
                    continue;
                }
                let u = e.util_at_update(h);
                let busy = all_out_or_any_in(e, h);
                if u > 0.0 && u < min && !busy {
                    min = u;
                    under = Some(h);
                }
            }
            let Some(u) = under else { break };
            excl_under.insert(u);
            excl_place.insert(u);
            let vms: Vec<usize> = e.hosts[u]
                .vm_list
                .iter()
                .map(|&v| v as usize)
                .filter(|&v| !e.vms[v].in_migration)
                .collect();
            if vms.is_empty() {
                continue;
            }
            let placed = self.place_all(e, vms, &excl_place, true);
            excl_under.extend(placed.iter().map(|&(_, h)| h));
            plan.extend(placed);
        }
        e.restore();
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Scenario, Workload};

    /// PABFD at creation as CloudSim runs it: every host weighed, in index order, a non-empty
    /// one tried with the VM on it for the detector.
    fn pabfd_every_host(e: &mut Engine<'_>, det: &Detector, v: usize) -> Option<usize> {
        let mut best = None;
        let mut min = f64::MAX;
        for h in 0..e.hosts.len() {
            let f = e.host_figures(h);
            if !e.suitable_with(h, v, f.available) {
                continue;
            }
            if f.planned != 0.0 {
                e.plan_create(h, v);
                let over = det.overloaded(e, h);
                e.plan_destroy(h, v);
                if over {
                    continue;
                }
            }
            let after = ((f.planned + e.vms[v].req) / e.hosts[h].total_mips).min(1.0);
            let diff = e.power_at(h, after) - f.power_now;
            if diff < min {
                min = diff;
                best = Some(h);
            }
        }
        best
    }

    /// Places as `det`'s PABFD (or first fit) does, checking every choice against a scan of
    /// every host.
    struct Checked(Option<Detector>, usize);

    impl Policy for Checked {
        fn name(&self) -> String {
            format!("checked {:?}", self.0)
        }

        fn place(&mut self, e: &mut Engine<'_>, vm: usize) -> Option<usize> {
            let (got, want) = match self.0 {
                Some(det) => {
                    let got = pabfd(e, &det, vm, &HashSet::new());
                    (got, pabfd_every_host(e, &det, vm))
                }
                None => {
                    let got = NoMigration.place(e, vm);
                    (got, (0..e.hosts.len()).find(|&h| e.is_suitable(h, vm)))
                }
            };
            assert_eq!(got, want, "{:?}, VM {vm}", self.0);
            if got.is_some_and(|h| !e.hosts[h].vm_list.is_empty()) {
                self.1 += 1;
            }
            got
        }

        fn optimize(&mut self, _e: &mut Engine<'_>) -> anyhow::Result<Vec<(usize, usize)>> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn placement_by_class_chooses_the_host_a_scan_of_every_host_chooses() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../datasets/planetlab-20110303.parquet");
        let wl = Workload::from_parquet(&path).expect("the shipped dataset reads");
        // More VMs than hosts: empty hosts of both kinds first, then hosts with VMs.
        let wl = wl.take(500);
        let sc = Scenario::cloudsim_planetlab(180);
        let detectors = [
            Some(Detector::Thr(0.8)),
            Some(Detector::Thr(0.5)),
            Some(Detector::Lr(1.2)),
            Some(Detector::Iqr(1.5)),
            None,
        ];
        for det in detectors {
            let mut p = Checked(det, 0);
            let mut e = Engine::new(&sc, &wl);
            e.place_all(&mut p).unwrap();
            assert!(p.1 > 100, "{det:?}: {} VMs joined another", p.1);
        }
    }

    #[test]
    fn statistics_match_cloudsim() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(mad(&[1.0, 1.0, 2.0, 2.0, 4.0, 6.0, 9.0]), 1.0);
        // n = 12: q1 = round(3.25) - 1 = 2, q3 = round(9.75) - 1 = 9.
        let xs: Vec<f64> = (0..12).map(f64::from).collect();
        assert_eq!(iqr(&xs), 7.0);
        let (a, b) = ols(&[1.0, 3.0, 5.0, 7.0]);
        assert!((a + 1.0).abs() < 1e-12 && (b - 2.0).abs() < 1e-12);
    }

    #[test]
    fn r_squared_matches_known_regressions() {
        // y = 2 x1 - x2 + 3 exactly: R² = 1.
        let x1 = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let x2 = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2];
        let y: Vec<f64> = x1.iter().zip(&x2).map(|(a, b)| 2.0 * a - b + 3.0).collect();
        let r2 = r_squared(&y, &[&x1, &x2]).unwrap();
        assert!((r2 - 1.0).abs() < 1e-12, "{r2}");
        // Simple regression: R² is the squared Pearson correlation.
        let y = [1.0, 3.0, 2.0, 5.0, 4.0, 6.0];
        let (mx, my) = (3.5, 3.5);
        let sxy: f64 = x1.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
        let sxx: f64 = x1.iter().map(|a| (a - mx) * (a - mx)).sum();
        let syy: f64 = y.iter().map(|b| (b - my) * (b - my)).sum();
        let r2 = r_squared(&y, &[&x1]).unwrap();
        assert!((r2 - sxy * sxy / (sxx * syy)).abs() < 1e-12, "{r2}");
        // A zero column is singular (CloudSim then falls back to MMT); a constant y has no
        // variance to explain and never wins (NaN or -inf, as 1 - SSR/0 in Commons Math).
        assert!(r_squared(&y, &[&[0.0; 6]]).is_none());
        let r2 = r_squared(&[2.0; 6], &[&x1]).unwrap();
        assert!(r2.is_nan() || r2 == f64::NEG_INFINITY, "{r2}");
    }

    #[test]
    fn names_parse() {
        assert!(Heuristic::parse("thr-mmt-0.8").is_some());
        assert!(Heuristic::parse("lr-mmt-1.2").is_some());
        assert_eq!(
            Heuristic::parse("lr-mc-1.2").map(|h| h.sel),
            Some(Selection::Mc)
        );
        assert!(Heuristic::parse("lr-xx-1.2").is_none());
        assert!(Heuristic::parse("bogus").is_none());
    }
}
