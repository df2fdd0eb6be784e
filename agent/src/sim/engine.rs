//! The datacenter under a virtual clock, modelled on CloudSim 3.0.3's `PowerDatacenter`,
//! `HostDynamicWorkload`, `VmSchedulerTimeSharedOverSubscription` and `PowerVm`.
//!
//! What is reproduced, because each changes the figures:
//! - Datacenter events at `offset + k·interval` (CloudSim: `k·300 + 0.1`) up to, not including,
//!   the end of the day; at each, every host is updated, energy is added for the time since the
//!   last update (trapezoid of the power at the previous and current utilisation; nothing for a
//!   host whose previous utilisation was 0), VMs that request 0 MIPS are removed as finished, and
//!   the policy plans migrations.
//! - A migration adds the VM to the target at once (the target reserves 10 % of its demand, the
//!   source gives it 90 %), and completes `RAM / (bandwidth · fraction / 8)` seconds later, when the
//!   datacenter is updated again (so energy is integrated over the sub-intervals).
//! - A host's scheduler caps each vCPU at the host's core speed and, when oversubscribed, scales
//!   every VM's share down (rounded down to whole MIPS).
//! - SLATAH from each host's history of (allocated, requested, active) entries, PDM from each VM's
//!   history of (allocated, requested, in migration); entries at the same instant replace each other.
//!
//! Planning (what a policy does between updates) works on the same state: `plan_create` and
//! `plan_destroy` move VMs between hosts' lists as CloudSim's `vmCreate`/`vmDestroy` do, and
//! `restore` puts the allocation back before migrations start.

use std::collections::{HashMap, VecDeque};

use anyhow::bail;

use super::scenario::Scenario;
use super::workload::Workload;

/// Utilisation history kept per VM (CloudSim's `PowerVm.HISTORY_LENGTH`).
pub const VM_HISTORY_LEN: usize = 30;
/// Interval samples of host utilisation kept for the agents and the stability model.
pub const HOST_HISTORY_LEN: usize = 48;

/// A consolidation policy: where VMs start, and which migrations to make at each interval.
pub trait Policy {
    /// Name in reports (`thr-mmt-0.8`, `keel-power-saving+model`, …).
    fn name(&self) -> String;
    /// Host for VM `vm` at creation (`None`: no host can take it, which aborts the run).
    fn place(&mut self, e: &mut Engine<'_>, vm: usize) -> Option<usize>;
    /// Names the initial placement [`Policy::place`] makes: two policies with the same key place
    /// every VM on the same host from the same start, so a replay computes it once
    /// ([`PlacementCache`]). `None`: not shared.
    fn placement_key(&self) -> Option<String> {
        None
    }
    /// Migrations (VM, target host) to start now. `e` may be changed while planning, but must be
    /// restored ([`Engine::save`]/[`Engine::restore`]) before returning.
    fn optimize(&mut self, e: &mut Engine<'_>) -> anyhow::Result<Vec<(usize, usize)>>;
    /// Negotiation counters, for policies that negotiate.
    fn negotiation(&self) -> Option<super::metrics::Negotiation> {
        None
    }
}

/// Initial placements already made in one replay, by [`Policy::placement_key`]: the host of
/// every VM. Placing is deterministic and the same for every policy that shares a key, so the
/// policies of one replay that place alike compute it once.
#[derive(Debug, Default)]
pub struct PlacementCache(HashMap<String, Vec<u32>>);

/// A host's state.
#[derive(Debug, Clone)]
pub struct Host {
    /// Total CPU capacity.
    pub total_mips: f64,
    /// Capacity of one core (a vCPU never gets more).
    pub pe_mips: f64,
    /// Memory, MiB.
    pub mem_mib: f64,
    /// Bandwidth, Mbit/s.
    pub bw_mbit: f64,
    /// Watts at 0, 10, …, 100 %.
    pub power: [f64; 11],
    /// VMs on the host, in arrival order (including VMs migrating in).
    pub vm_list: Vec<u32>,
    /// VMs migrating in (they are also in `vm_list`).
    pub migrating_in: Vec<u32>,
    /// Utilisation in MIPS at the last update.
    pub util_mips: f64,
    prev_util_mips: f64,
    ram_used: f64,
    bw_used: f64,
    last_entry: Option<Entry>,
    sla_time: f64,
    active_time: f64,
    ever_active: bool,
    active: bool,
    power_cycles: u32,
    /// Utilisation fractions at the last interval updates, newest last.
    pub history: VecDeque<f64>,
}

/// A VM's state.
#[derive(Debug, Clone)]
pub struct Vm {
    /// Total CPU capacity (vCPUs × per-vCPU).
    pub mips: f64,
    /// vCPUs.
    pub pes: u32,
    /// Provisioned memory, MiB.
    pub ram: f64,
    /// Current requested MIPS (CloudSim's `getCurrentRequestedTotalMips`).
    pub req: f64,
    sched_req: f64,
    instantiating: bool,
    /// In migration.
    pub in_migration: bool,
    /// The host whose list holds the VM as its own (CloudSim's `vm.getHost()`), during planning too.
    pub host: Option<u32>,
    /// The host the allocation policy records (CloudSim's VM table).
    pub table: Option<u32>,
    /// Still running (CloudSim removes a VM whose demand drops to 0).
    pub alive: bool,
    /// Utilisation fractions at interval updates, newest first.
    pub history: VecDeque<f64>,
    hist_time: f64,
    /// Memory and bandwidth reserved at creation on the current host (CloudSim reserves them
    /// only while a VM is being instantiated; afterwards VMs request none).
    held: (f64, f64),
    last_entry: Option<Entry>,
    tot_req: f64,
    tot_alloc: f64,
    under_mig: f64,
    last_move: f64,
    left: Vec<u32>,
}

impl Vm {
    /// Seconds from its last migration to `now` (infinite for a VM never moved).
    pub fn since_move(&self, now: f64) -> f64 {
        now - self.last_move
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    t: f64,
    alloc: f64,
    req: f64,
    flag: bool,
}

/// One interval's snapshot for the time series (`steps` in the replay's JSON, `--steps-csv`),
/// taken at the interval update and completed once the policy has planned.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Step {
    /// Interval update number, from 0.
    pub step: usize,
    /// Seconds from the start.
    pub t: f64,
    /// Hosts with utilisation > 0.
    pub active_hosts: u32,
    /// Migrations started at this interval.
    pub migrations_step: u64,
    /// Migrations started so far, this interval's included.
    pub migrations: u64,
    /// Energy so far, kWh.
    pub energy_kwh: f64,
    /// Active hosts given less CPU than their VMs request (the condition SLATAH counts).
    pub overloaded_hosts: u32,
    /// Standard deviation of utilisation across active hosts.
    pub util_spread: f64,
}

/// One migration, as `--migrations-csv` logs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Migration {
    /// Seconds from the start.
    pub t: f64,
    /// VM index in the workload.
    pub vm: u32,
    /// Host of record the VM left (`None` if it had none).
    pub from: Option<u32>,
    /// Target host.
    pub to: u32,
    /// Counted in `thrash_migrations`: back to a host the VM had left, or within an hour of its
    /// last move.
    pub thrash: bool,
    /// The source host's requested CPU over its capacity when the migration started (0 without
    /// a source): above the overload threshold a relief, low a consolidation.
    pub from_util: f64,
    /// VMs on the source host when the migration started, this one included.
    pub from_vms: u32,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    t: f64,
    vm: u32,
    target: u32,
}

/// The simulated datacenter.
#[derive(Debug)]
pub struct Engine<'a> {
    /// The scenario.
    pub sc: &'a Scenario,
    /// The workload.
    pub wl: &'a Workload,
    /// Hosts.
    pub hosts: Vec<Host>,
    /// VMs, in the workload's order.
    pub vms: Vec<Vm>,
    /// Virtual time, seconds.
    pub now: f64,
    /// Whether `now` is an interval update (as opposed to a migration completion).
    last_process: f64,
    energy_ws: f64,
    /// Migrations started.
    pub migrations: u64,
    thrash: u64,
    saved: Vec<(Vec<u32>, Vec<Option<u32>>)>,
    pending: Vec<Pending>,
    /// Per-interval snapshots.
    pub steps: Vec<Step>,
    /// Host utilisation and memory per interval when recording (`[step][host]`).
    pub host_series: Option<HostSeries>,
    /// Interval updates done.
    pub step_no: usize,
    /// Every migration started, when `Some` (set it before [`Engine::run`] to record them).
    pub migration_log: Option<Vec<Migration>>,
    /// While creating the VMs ([`Engine::place_all`]): the hosts grouped by what placement reads
    /// of them.
    placing: Option<Placing>,
    /// Update every host at every update, idle or untouched (as CloudSim does): the reference
    /// the shortcuts of [`Engine::full_update`] and [`Engine::complete_migrations`] are tested
    /// against.
    every_host: bool,
}

/// The hosts while the VMs are created, grouped into classes of hosts that placement cannot tell
/// apart: the same hardware, power model, [`HostFigures`] and memory and bandwidth in use, all
/// bit for bit. Only creating a VM on a host changes these then, so each host's figures are
/// kept until it takes one. A placement rule that scans the hosts in index order and keeps the
/// first best (PABFD's strict `<`, first fit) gives every host of a class the same verdict, so
/// only each class's first host can be chosen: it needs to look at one host per class
/// ([`Engine::placement_candidates`]), a few dozen instead of every host.
#[derive(Debug)]
struct Placing {
    figures: Vec<HostFigures>,
    /// Each host's class (an index into `members`).
    class_of: Vec<usize>,
    classes: HashMap<ClassKey, usize>,
    /// The hosts of each class, by index.
    members: Vec<std::collections::BTreeSet<u32>>,
}

/// The bits of everything placement reads of a host (see [`Placing`]).
type ClassKey = [u64; 21];

/// What PABFD weighs of a host before trying a VM on it.
#[derive(Debug, Clone, Copy)]
pub struct HostFigures {
    /// MIPS available (CloudSim's `getAvailableMips`).
    pub available: f64,
    /// [`Engine::planned_util_mips`].
    pub planned: f64,
    /// Power at the utilisation of the last update, watts.
    pub power_now: f64,
    /// [`Engine::requested_mips`].
    pub requested: f64,
}

/// Per interval: time and, per host, (CPU utilisation, memory in use MiB or NaN).
pub type HostSeries = Vec<(f64, Vec<(f32, f32)>)>;

/// Results of one run, before naming.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// Energy, kWh.
    pub energy_kwh: f64,
    /// Migrations.
    pub migrations: u64,
    /// SLA time per active host.
    pub slatah: f64,
    /// Performance degradation due to migration.
    pub pdm: f64,
    /// Migrations that moved a VM back to a host it had left or again within an hour.
    pub thrash_migrations: u64,
    /// Times a host was switched off and on again.
    pub power_cycles: u64,
    /// Time series.
    pub steps: Vec<Step>,
    /// Host series when recorded.
    pub host_series: Option<HostSeries>,
    /// Migrations started, when recorded.
    pub migration_log: Option<Vec<Migration>>,
    /// VMs removed because their demand dropped to 0.
    pub finished_vms: usize,
}

impl<'a> Engine<'a> {
    /// A datacenter with every host empty.
    pub fn new(sc: &'a Scenario, wl: &'a Workload) -> Self {
        let hosts = sc
            .hosts
            .iter()
            .map(|h| Host {
                total_mips: h.cpu_capacity(),
                pe_mips: h.cpu_per_core,
                mem_mib: h.mem_mib,
                bw_mbit: h.bandwidth_mbit.unwrap_or(1000.0),
                power: h.power.as_ref().map_or([0.0; 11], |p| p.watts),
                vm_list: Vec::new(),
                migrating_in: Vec::new(),
                util_mips: 0.0,
                prev_util_mips: 0.0,
                ram_used: 0.0,
                bw_used: 0.0,
                last_entry: None,
                sla_time: 0.0,
                active_time: 0.0,
                ever_active: false,
                active: false,
                power_cycles: 0,
                history: VecDeque::new(),
            })
            .collect();
        let vms = wl
            .inventory
            .vms
            .iter()
            .map(|v| Vm {
                mips: v.cpu_capacity(),
                pes: v.vcpus.max(1),
                ram: v.mem_mib,
                req: v.cpu_capacity(),
                sched_req: v.cpu_capacity(),
                instantiating: true,
                in_migration: false,
                host: None,
                table: None,
                alive: true,
                history: VecDeque::with_capacity(VM_HISTORY_LEN),
                hist_time: f64::NEG_INFINITY,
                held: (0.0, 0.0),
                last_entry: None,
                tot_req: 0.0,
                tot_alloc: 0.0,
                under_mig: 0.0,
                last_move: f64::NEG_INFINITY,
                left: Vec::new(),
            })
            .collect();
        Self {
            sc,
            wl,
            hosts,
            vms,
            now: 0.0,
            last_process: 0.0,
            energy_ws: 0.0,
            migrations: 0,
            thrash: 0,
            saved: Vec::new(),
            pending: Vec::new(),
            steps: Vec::new(),
            host_series: None,
            step_no: 0,
            migration_log: None,
            placing: None,
            every_host: false,
        }
    }

    /// Runs the whole simulation with `policy`; `progress` is called after each interval with
    /// (done, total).
    ///
    /// # Errors
    /// A VM no host can take at creation, a policy error, or a broken invariant (a VM on no host
    /// or on two), naming the step and the VM.
    pub fn run(
        self,
        policy: &mut dyn Policy,
        record_hosts: bool,
        progress: &mut dyn FnMut(usize, usize),
    ) -> anyhow::Result<RunOutput> {
        self.run_cached(
            policy,
            record_hosts,
            progress,
            &mut PlacementCache::default(),
        )
    }

    /// [`Engine::run`], taking the initial placement from `cache` where an earlier run of the
    /// same scenario made it with the same [`Policy::placement_key`] (and recording it there
    /// otherwise).
    ///
    /// # Errors
    /// As [`Engine::run`].
    pub fn run_cached(
        mut self,
        policy: &mut dyn Policy,
        record_hosts: bool,
        progress: &mut dyn FnMut(usize, usize),
        cache: &mut PlacementCache,
    ) -> anyhow::Result<RunOutput> {
        if record_hosts {
            self.host_series = Some(Vec::new());
        }
        match policy.placement_key() {
            Some(key) => match cache.0.get(&key) {
                Some(hosts) if hosts.len() == self.vms.len() => {
                    for (v, &h) in hosts.iter().enumerate() {
                        self.create(v, h as usize);
                    }
                }
                _ => {
                    self.place_all(policy)?;
                    let hosts = self
                        .vms
                        .iter()
                        .map(|vm| vm.table.unwrap_or(u32::MAX))
                        .collect();
                    cache.0.insert(key, hosts);
                }
            },
            None => self.place_all(policy)?,
        }
        let interval = self.sc.interval_s;
        let end = self.sc.duration_s.unwrap_or_else(|| self.wl.duration_s());
        let total = ((end - self.sc.offset_s) / interval).ceil().max(0.0) as usize;
        let mut k = 1usize;
        loop {
            let t = self.sc.offset_s + k as f64 * interval;
            if t >= end {
                break;
            }
            self.now = t;
            self.full_update(t, true);
            self.record_step();
            self.check_invariant()?;
            let plan = policy.optimize(&mut self)?;
            let before = self.migrations;
            for (v, h) in plan {
                self.start_migration(v, h, t);
            }
            if let Some(s) = self.steps.last_mut() {
                s.migrations_step = self.migrations - before;
                s.migrations = self.migrations;
            }
            self.complete_migrations(t + interval, end);
            self.step_no += 1;
            progress(k, total);
            k += 1;
        }
        let hosts_total: f64 = self.hosts.iter().map(|h| h.active_time).sum();
        let sla: f64 = self.hosts.iter().map(|h| h.sla_time).sum();
        let (req, under): (f64, f64) = self
            .vms
            .iter()
            .fold((0.0, 0.0), |(r, u), v| (r + v.tot_req, u + v.under_mig));
        Ok(RunOutput {
            energy_kwh: self.energy_ws / 3.6e6,
            migrations: self.migrations,
            slatah: if hosts_total > 0.0 {
                sla / hosts_total
            } else {
                0.0
            },
            pdm: if req > 0.0 { under / req } else { 0.0 },
            thrash_migrations: self.thrash,
            power_cycles: self.hosts.iter().map(|h| u64::from(h.power_cycles)).sum(),
            steps: self.steps,
            host_series: self.host_series,
            migration_log: self.migration_log,
            finished_vms: self.vms.iter().filter(|v| !v.alive).count(),
        })
    }

    /// Creates every VM where `policy` places it, in the workload's order (the start of
    /// [`Engine::run`]); afterwards `vms[v].table` is VM `v`'s host.
    ///
    /// # Errors
    /// A VM no host can take.
    pub fn place_all(&mut self, policy: &mut dyn Policy) -> anyhow::Result<()> {
        let mut placing = Placing {
            figures: Vec::with_capacity(self.hosts.len()),
            class_of: vec![0; self.hosts.len()],
            classes: HashMap::new(),
            members: Vec::new(),
        };
        for h in 0..self.hosts.len() {
            placing.figures.push(self.weigh(h));
            self.classify(&mut placing, h);
        }
        self.placing = Some(placing);
        for v in 0..self.vms.len() {
            let Some(h) = policy.place(self, v) else {
                self.placing = None;
                bail!(
                    "no host can take VM {:?} at creation ({} hosts, policy {})",
                    self.wl.inventory.vms[v].id,
                    self.hosts.len(),
                    policy.name()
                );
            };
            self.create(v, h);
            if let Some(mut placing) = self.placing.take() {
                let old = placing.class_of[h];
                placing.members[old].remove(&(h as u32));
                placing.figures[h] = self.weigh(h);
                self.classify(&mut placing, h);
                self.placing = Some(placing);
            }
        }
        self.placing = None;
        Ok(())
    }

    /// Puts host `h` into the class its figures (already in `p.figures`) name.
    fn classify(&self, p: &mut Placing, h: usize) {
        let host = &self.hosts[h];
        let f = p.figures[h];
        let mut key: ClassKey = [0; 21];
        let fields = [
            host.total_mips,
            host.pe_mips,
            host.mem_mib,
            host.bw_mbit,
            host.ram_used,
            host.bw_used,
            f.available,
            f.planned,
            f.power_now,
            f.requested,
        ]
        .into_iter()
        .chain(host.power);
        for (k, x) in key.iter_mut().zip(fields) {
            *k = x.to_bits();
        }
        let next = p.members.len();
        let c = *p.classes.entry(key).or_insert(next);
        if c == next {
            p.members.push(std::collections::BTreeSet::new());
        }
        p.members[c].insert(h as u32);
        p.class_of[h] = c;
    }

    /// Whether the VMs are being created ([`Engine::place_all`]).
    pub fn is_placing(&self) -> bool {
        self.placing.is_some()
    }

    /// While creating the VMs: the first host of each class of hosts that placement cannot tell
    /// apart (see [`Placing`]), in index order. Whatever a rule that scans every host in index
    /// order and keeps the first best would choose is among them. `None` when not creating.
    pub fn placement_candidates(&self) -> Option<Vec<usize>> {
        let p = self.placing.as_ref()?;
        let mut c: Vec<usize> = p
            .members
            .iter()
            .filter_map(|m| m.first().map(|&h| h as usize))
            .collect();
        c.sort_unstable();
        Some(c)
    }

    /// What PABFD weighs of host `h` (kept while creating the VMs, see [`Engine::place_all`]).
    pub fn host_figures(&self, h: usize) -> HostFigures {
        match self.placing.as_ref() {
            Some(p) => p.figures[h],
            None => self.weigh(h),
        }
    }

    fn weigh(&self, h: usize) -> HostFigures {
        let (fits, scale, available) = self.sched(h);
        HostFigures {
            available,
            planned: self.planned_with(h, fits, scale),
            power_now: self.power_at(h, self.util_at_update(h).min(1.0)),
            requested: self.requested_mips(h),
        }
    }

    /// Creates VM `v` on host `h` (the end of placing it).
    fn create(&mut self, v: usize, h: usize) {
        self.plan_create(h, v);
        self.vms[v].table = Some(h as u32);
        self.vms[v].instantiating = false;
        // CloudSim: once created, a VM requests what its (not yet submitted) cloudlet does: 0.
        self.vms[v].req = 0.0;
    }

    fn record_step(&mut self) {
        let mut active = 0u32;
        let mut overloaded = 0u32;
        let (mut s, mut s2) = (0.0, 0.0);
        for h in &mut self.hosts {
            let u = (h.util_mips / h.total_mips).min(1.0);
            if h.history.len() == HOST_HISTORY_LEN {
                h.history.pop_front();
            }
            h.history.push_back(u);
            if u > 0.0 {
                active += 1;
                s += u;
                s2 += u * u;
            }
            if h.last_entry
                .is_some_and(|e| e.t == self.now && e.flag && e.alloc < e.req)
            {
                overloaded += 1;
            }
        }
        let n = f64::from(active.max(1));
        let mean = s / n;
        let spread = (s2 / n - mean * mean).max(0.0).sqrt();
        self.steps.push(Step {
            step: self.step_no,
            t: self.now,
            active_hosts: active,
            migrations_step: 0,
            migrations: self.migrations,
            energy_kwh: self.energy_ws / 3.6e6,
            overloaded_hosts: overloaded,
            util_spread: spread,
        });
        if let Some(series) = self.host_series.as_mut() {
            let wl = self.wl;
            let row = self
                .hosts
                .iter()
                .map(|h| {
                    let mem = if wl.has_mem() {
                        h.vm_list
                            .iter()
                            .filter(|v| !h.migrating_in.contains(v))
                            .map(|&v| wl.mem_at(v as usize, self.now).unwrap_or(0.0))
                            .sum::<f64>()
                    } else {
                        f64::NAN
                    };
                    ((h.util_mips / h.total_mips) as f32, mem as f32)
                })
                .collect();
            series.push((self.now, row));
        }
    }

    /// Every alive VM is on exactly one host as its own (not counting hosts it is migrating to).
    fn check_invariant(&self) -> anyhow::Result<()> {
        let mut count = vec![0u8; self.vms.len()];
        for h in &self.hosts {
            for &v in &h.vm_list {
                if !h.migrating_in.contains(&v) {
                    count[v as usize] = count[v as usize].saturating_add(1);
                }
            }
        }
        for (v, (c, vm)) in count.iter().zip(&self.vms).enumerate() {
            let want = u8::from(vm.alive);
            if *c != want {
                bail!(
                    "invariant broken at step {} (t = {:.1} s): VM {:?} is on {c} hosts, expected {want}",
                    self.step_no,
                    self.now,
                    self.wl.inventory.vms[v].id
                );
            }
        }
        Ok(())
    }

    // ----- CloudSim's scheduler -------------------------------------------------------------

    fn capped(&self, h: usize, v: usize) -> f64 {
        let vm = &self.vms[v];
        let per = vm.sched_req / f64::from(vm.pes);
        per.min(self.hosts[h].pe_mips) * f64::from(vm.pes)
    }

    /// (fits, scale, available MIPS) of host `h`'s scheduler.
    fn sched(&self, h: usize) -> (bool, f64, f64) {
        let host = &self.hosts[h];
        let mut avail = host.total_mips;
        let mut fits = true;
        let mut total = 0.0;
        for &v in &host.vm_list {
            let c = self.capped(h, v as usize);
            let r = if host.migrating_in.contains(&v) {
                c * 0.1
            } else {
                c
            };
            total += r;
            if fits {
                if avail >= r {
                    avail -= r;
                } else {
                    fits = false;
                }
            }
        }
        if fits {
            (true, 1.0, avail)
        } else {
            (false, host.total_mips / total, 0.0)
        }
    }

    fn alloc_with(&self, h: usize, v: usize, fits: bool, scale: f64) -> f64 {
        let host = &self.hosts[h];
        let c = self.capped(h, v);
        let vin = host.migrating_in.contains(&(v as u32));
        let vout = !vin && self.vms[v].in_migration;
        if fits {
            if vin {
                c * 0.1
            } else if vout {
                c * 0.9
            } else {
                c
            }
        } else if vin {
            (c * 0.1 * scale).floor()
        } else if vout {
            (c * scale * 0.9).floor()
        } else {
            (c * scale).floor()
        }
    }

    /// MIPS available on host `h` (CloudSim's `getAvailableMips`).
    pub fn available_mips(&self, h: usize) -> f64 {
        self.sched(h).2
    }

    /// Σ allocated MIPS of the VMs in `h`'s list now, counting a VM migrating in at its full demand
    /// (CloudSim's `getUtilizationOfCpuMips(host)` in the allocation policy).
    pub fn planned_util_mips(&self, h: usize) -> f64 {
        let (fits, scale, _) = self.sched(h);
        self.planned_with(h, fits, scale)
    }

    fn planned_with(&self, h: usize, fits: bool, scale: f64) -> f64 {
        let host = &self.hosts[h];
        host.vm_list
            .iter()
            .map(|&v| {
                let a = self.alloc_with(h, v as usize, fits, scale);
                if host.migrating_in.contains(&v) {
                    a + a * 0.9 / 0.1
                } else {
                    a
                }
            })
            .sum()
    }

    /// Σ requested MIPS of the VMs in `h`'s list now.
    pub fn requested_mips(&self, h: usize) -> f64 {
        self.hosts[h]
            .vm_list
            .iter()
            .map(|&v| self.vms[v as usize].req)
            .sum()
    }

    /// Utilisation at the last update (CloudSim's `getUtilizationOfCpu`, 1.0..1.01 read as 1).
    pub fn util_at_update(&self, h: usize) -> f64 {
        let u = self.hosts[h].util_mips / self.hosts[h].total_mips;
        if u > 1.0 && u < 1.01 {
            1.0
        } else {
            u
        }
    }

    /// Host `h`'s power at utilisation `u` (0..=1), watts.
    pub fn power_at(&self, h: usize, u: f64) -> f64 {
        keel_core::inventory::PowerModel {
            watts: self.hosts[h].power,
        }
        .power_at(u)
    }

    /// CloudSim's `isSuitableForVm`: core speed, free MIPS, and at creation memory and bandwidth.
    pub fn is_suitable(&self, h: usize, v: usize) -> bool {
        self.suitable_with(h, v, self.available_mips(h))
    }

    /// [`Engine::is_suitable`] with host `h`'s available MIPS already known.
    pub fn suitable_with(&self, h: usize, v: usize, available: f64) -> bool {
        let host = &self.hosts[h];
        let vm = &self.vms[v];
        if host.pe_mips < vm.req / f64::from(vm.pes) {
            return false;
        }
        if available < vm.req {
            return false;
        }
        if vm.instantiating {
            if host.mem_mib - host.ram_used < vm.ram {
                return false;
            }
            if host.bw_mbit - host.bw_used < self.sc.vm_bw_mbit {
                return false;
            }
        }
        true
    }

    // ----- Planning primitives (CloudSim's vmCreate / vmDestroy) ----------------------------

    /// Adds VM `v` to host `h`'s list (CloudSim's `vmCreate`).
    pub fn plan_create(&mut self, h: usize, v: usize) {
        let vm = &mut self.vms[v];
        vm.sched_req = vm.req;
        vm.host = Some(h as u32);
        if vm.instantiating {
            vm.held = (vm.ram, self.sc.vm_bw_mbit);
            self.hosts[h].ram_used += vm.ram;
            self.hosts[h].bw_used += self.sc.vm_bw_mbit;
        }
        self.hosts[h].vm_list.push(v as u32);
    }

    /// Removes VM `v` from host `h`'s list (CloudSim's `vmDestroy`).
    pub fn plan_destroy(&mut self, h: usize, v: usize) {
        let list = &mut self.hosts[h].vm_list;
        if let Some(i) = list.iter().position(|&x| x as usize == v) {
            list.remove(i);
            let (ram, bw) = std::mem::take(&mut self.vms[v].held);
            self.hosts[h].ram_used -= ram;
            self.hosts[h].bw_used -= bw;
        }
        self.vms[v].host = None;
    }

    /// Saves every host's list (CloudSim's `saveAllocation`).
    pub fn save(&mut self) {
        let lists = self
            .hosts
            .iter()
            .map(|h| {
                h.vm_list
                    .iter()
                    .copied()
                    .filter(|v| !h.migrating_in.contains(v))
                    .collect::<Vec<u32>>()
            })
            .collect::<Vec<_>>();
        let vm_hosts = self.vms.iter().map(|v| v.host).collect();
        self.saved.clear();
        self.saved.push((Vec::new(), vm_hosts));
        for l in lists {
            self.saved.push((l, Vec::new()));
        }
    }

    /// Restores the saved lists (CloudSim's `restoreAllocation`).
    pub fn restore(&mut self) {
        if self.saved.is_empty() {
            return;
        }
        let saved = std::mem::take(&mut self.saved);
        for (h, (list, _)) in saved.iter().skip(1).enumerate() {
            let host = &mut self.hosts[h];
            let mut l = list.clone();
            l.extend(host.migrating_in.iter().copied());
            host.vm_list = l;
        }
        for (vm, host) in self.vms.iter_mut().zip(&saved[0].1) {
            vm.host = *host;
            vm.sched_req = vm.req;
        }
    }

    // ----- Updates, energy and accounting --------------------------------------------------

    fn demand(&self, v: usize, t: f64) -> f64 {
        self.wl.cpu_at(v, t) * self.vms[v].mips
    }

    fn host_update(&mut self, h: usize, t: f64, interval: bool) {
        for i in 0..self.hosts[h].vm_list.len() {
            let v = self.hosts[h].vm_list[i] as usize;
            let d = self.demand(v, t);
            let vm = &mut self.vms[v];
            vm.req = d;
            vm.sched_req = d;
            vm.instantiating = false;
            if interval && vm.hist_time < t {
                vm.hist_time = t;
                if vm.history.len() == VM_HISTORY_LEN {
                    vm.history.pop_back();
                }
                vm.history.push_front(d / vm.mips);
            }
        }
        let (fits, scale, _) = self.sched(h);
        let mut util = 0.0;
        let mut host_req = 0.0;
        for i in 0..self.hosts[h].vm_list.len() {
            let v = self.hosts[h].vm_list[i];
            let vi = v as usize;
            let mut alloc = self.alloc_with(h, vi, fits, scale);
            let req = self.vms[vi].req;
            if !self.hosts[h].migrating_in.contains(&v) {
                let in_mig = self.vms[vi].in_migration;
                vm_entry(&mut self.vms[vi], t, alloc, req, in_mig);
                if in_mig {
                    alloc /= 0.9;
                }
            }
            util += alloc;
            host_req += req;
        }
        let host = &mut self.hosts[h];
        host.prev_util_mips = host.util_mips;
        host.util_mips = util;
        host_entry(host, t, util, host_req, util > 0.0);
    }

    /// Whether updating host `h` would change nothing that is read again: no VMs, no
    /// utilisation, switched off. Its update would only stamp a new, inactive entry in its SLA
    /// history (an inactive entry adds nothing, whenever it is replaced), add no energy (the
    /// previous utilisation is 0) and leave it off; so an update leaves it alone.
    fn idle(&self, h: usize) -> bool {
        let host = &self.hosts[h];
        host.vm_list.is_empty() && host.util_mips == 0.0 && !host.active
    }

    /// CloudSim's update of the whole datacenter at `t`. Idle hosts ([`Engine::idle`]) are left
    /// alone.
    fn full_update(&mut self, t: f64, interval: bool) -> Vec<usize> {
        let hosts: Vec<usize> = (0..self.hosts.len())
            .filter(|&h| self.every_host || !self.idle(h))
            .collect();
        self.update_hosts(t, interval, &hosts)
    }

    /// The datacenter update at `t` restricted to `hosts` (in index order): what
    /// [`Engine::full_update`] does to them. Returns the hosts that lost a finished VM.
    fn update_hosts(&mut self, t: f64, interval: bool, hosts: &[usize]) -> Vec<usize> {
        let dt = t - self.last_process;
        for &h in hosts {
            self.host_update(h, t, interval);
        }
        if dt > 0.0 {
            for &h in hosts {
                let host = &self.hosts[h];
                let cap = |u: f64| if u > 1.0 && u < 1.01 { 1.0 } else { u.min(1.0) };
                let from = cap(host.prev_util_mips / host.total_mips);
                let to = cap(host.util_mips / host.total_mips);
                if from != 0.0 {
                    let pf = self.power_at(h, from);
                    let pt = self.power_at(h, to);
                    self.energy_ws += (pf + (pt - pf) / 2.0) * dt;
                }
            }
        }
        // Power cycles: a host that was active, went off, and comes back on.
        for &h in hosts {
            let host = &mut self.hosts[h];
            let on = host.util_mips > 0.0;
            if on && !host.active && host.ever_active {
                host.power_cycles += 1;
            }
            host.ever_active |= on;
            host.active = on;
        }
        // CloudSim removes VMs whose demand is 0 as finished.
        let mut changed = Vec::new();
        for &h in hosts {
            // Copy the list only where a VM finishes (plan_destroy edits it).
            let finishes = self.hosts[h].vm_list.iter().any(|&v| {
                let vm = &self.vms[v as usize];
                !vm.in_migration && vm.req == 0.0 && vm.alive
            });
            if !finishes {
                continue;
            }
            changed.push(h);
            let list = self.hosts[h].vm_list.clone();
            for v in list {
                let vi = v as usize;
                let vm = &self.vms[vi];
                if !vm.in_migration && vm.req == 0.0 && vm.alive {
                    if let Some(src) = self.vms[vi].table.take() {
                        self.plan_destroy(src as usize, vi);
                        changed.push(src as usize);
                    }
                    self.vms[vi].alive = false;
                }
            }
        }
        self.last_process = t;
        changed
    }

    fn start_migration(&mut self, v: usize, target: usize, t: f64) {
        self.migrations += 1;
        let (from_util, from_vms) = match (self.migration_log.is_some(), self.vms[v].host) {
            (true, Some(s)) => {
                let s = s as usize;
                let n = u32::try_from(self.hosts[s].vm_list.len()).unwrap_or(u32::MAX);
                (self.requested_mips(s) / self.hosts[s].total_mips, n)
            }
            _ => (0.0, 0),
        };
        let vm = &mut self.vms[v];
        let from = vm.table;
        let thrash = t - vm.last_move < 3600.0 || vm.left.contains(&(target as u32));
        if thrash {
            self.thrash += 1;
        }
        if let Some(log) = self.migration_log.as_mut() {
            log.push(Migration {
                t,
                vm: v as u32,
                from,
                to: target as u32,
                thrash,
                from_util,
                from_vms,
            });
        }
        vm.last_move = t;
        if let Some(f) = from {
            if !vm.left.contains(&f) {
                vm.left.push(f);
            }
        }
        vm.in_migration = true;
        let src = vm.host;
        if !self.hosts[target].migrating_in.contains(&(v as u32)) {
            self.vms[v].sched_req = self.vms[v].req;
            self.hosts[target].migrating_in.push(v as u32);
            self.hosts[target].vm_list.push(v as u32);
            self.host_update(target, t, false);
            if let Some(s) = src {
                self.host_update(s as usize, t, false);
            }
        }
        let bw = self.hosts[target].bw_mbit * self.sc.migration_bw_fraction / 8.0;
        let delay = self.vms[v].ram / bw;
        self.pending.push(Pending {
            t: t + delay,
            vm: v as u32,
            target: target as u32,
        });
    }

    fn complete_migrations(&mut self, before: f64, end: f64) {
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by(|a, b| a.t.total_cmp(&b.t));
        let mut later = Vec::new();
        // Hosts changed since the whole update at the current instant, if there was one.
        let mut touched: Option<Vec<usize>> = None;
        let mut i = 0;
        while i < pending.len() {
            let p = pending[i];
            if p.t >= before || p.t >= end {
                later.push(p);
                i += 1;
                continue;
            }
            self.now = p.t;
            if p.t > self.last_process {
                // The first of the migrations completing at `p.t`: a whole update. Until the
                // update after the last of them, only the hosts these migrations (and the VMs
                // that finished just now) touch change.
                let finished = self.full_update(p.t, false);
                touched = (!self.every_host).then_some(finished);
            }
            let v = p.vm as usize;
            let target = p.target as usize;
            let src_host = self.vms[v].table.take();
            if let Some(src) = src_host {
                self.plan_destroy(src as usize, v);
            }
            let host = &mut self.hosts[target];
            if let Some(j) = host.migrating_in.iter().position(|&x| x == p.vm) {
                host.migrating_in.remove(j);
            }
            if let Some(j) = host.vm_list.iter().position(|&x| x == p.vm) {
                host.vm_list.remove(j);
            }
            self.vms[v].in_migration = false;
            self.plan_create(target, v);
            self.vms[v].table = Some(p.target);
            if let Some(hosts) = touched.as_mut() {
                hosts.extend(src_host.map(|s| s as usize));
                hosts.push(target);
            }
            let next_same = pending.get(i + 1).is_some_and(|n| n.t == p.t);
            if !next_same {
                match touched.take() {
                    // The update after them at the same instant: every other host would get
                    // the same demands, allocations and entries (replacing its own at this
                    // instant) as in the update before, and no energy (no time has passed),
                    // so only the touched hosts need it.
                    Some(mut hosts) => {
                        hosts.sort_unstable();
                        hosts.dedup();
                        hosts.retain(|&h| !self.idle(h));
                        self.update_hosts(p.t, false, &hosts);
                    }
                    None => {
                        self.full_update(p.t, false);
                    }
                }
            }
            i += 1;
        }
        self.pending = later;
    }
}

fn vm_entry(vm: &mut Vm, t: f64, alloc: f64, req: f64, flag: bool) {
    if let Some(prev) = vm.last_entry {
        if prev.t == t {
            vm.last_entry = Some(Entry {
                t,
                alloc,
                req,
                flag,
            });
            return;
        }
        let dt = t - prev.t;
        vm.tot_alloc += prev.alloc * dt;
        vm.tot_req += prev.req * dt;
        if prev.alloc < prev.req && prev.flag {
            vm.under_mig += (prev.req - prev.alloc) * dt;
        }
    }
    vm.last_entry = Some(Entry {
        t,
        alloc,
        req,
        flag,
    });
}

fn host_entry(h: &mut Host, t: f64, alloc: f64, req: f64, active: bool) {
    if let Some(prev) = h.last_entry {
        if prev.t == t {
            h.last_entry = Some(Entry {
                t,
                alloc,
                req,
                flag: active,
            });
            return;
        }
        if prev.flag {
            let dt = t - prev.t;
            h.active_time += dt;
            if prev.alloc < prev.req {
                h.sla_time += dt;
            }
        }
    }
    h.last_entry = Some(Entry {
        t,
        alloc,
        req,
        flag: active,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::heuristics::NoMigration;
    use keel_core::inventory::Inventory;

    fn small() -> (Scenario, Workload) {
        let mut inv = Inventory::default();
        for i in 0..3 {
            inv.vms
                .push(keel_core::catalog::cloudsim_vm_type(3).spec(format!("vm{i}")));
        }
        let cpu = vec![vec![0.5, 0.4, 0.3, 0.2]; 3];
        let wl = Workload::from_series(inv, 300.0, &cpu, None).unwrap();
        (Scenario::cloudsim_planetlab(2), wl)
    }

    #[test]
    fn a_vm_on_two_hosts_breaks_the_invariant_naming_step_and_vm() {
        let (sc, wl) = small();
        let mut e = Engine::new(&sc, &wl);
        e.plan_create(0, 1);
        e.vms[1].table = Some(0);
        e.plan_create(0, 0);
        e.plan_create(0, 2);
        assert!(e.check_invariant().is_ok());
        e.hosts[1].vm_list.push(1);
        let err = e.check_invariant().unwrap_err().to_string();
        assert!(
            err.contains("step 0") && err.contains("\"vm1\"") && err.contains("2 hosts"),
            "{err}"
        );
    }

    #[test]
    fn energy_is_the_trapezoid_of_power_per_interval() {
        // One G4 host, three 500-MIPS VMs at 50/40/30/20 %: utilisation at the updates (300.1,
        // 600.1) is interpolated; the first update adds nothing (previous utilisation 0).
        let (mut sc, wl) = small();
        sc.duration_s = Some(1200.0);
        let out = Engine::new(&sc, &wl)
            .run(&mut NoMigration, false, &mut |_, _| {})
            .unwrap();
        let p = |u: f64| {
            keel_core::inventory::PowerModel {
                watts: keel_core::catalog::G4_WATTS,
            }
            .power_at(u)
        };
        let u = |t: f64| {
            let i = (t / 300.0).floor();
            let d = [0.5, 0.4, 0.3, 0.2, 0.2];
            let (a, b) = (d[i as usize], d[i as usize + 1]);
            3.0 * 500.0 * (a + (b - a) * (t - i * 300.0) / 300.0) / 3720.0
        };
        let e =
            (p(u(300.1)) + p(u(600.1))) / 2.0 * 300.0 + (p(u(600.1)) + p(u(900.1))) / 2.0 * 300.0;
        assert!(
            (out.energy_kwh - e / 3.6e6).abs() < 1e-9,
            "{} vs {}",
            out.energy_kwh,
            e / 3.6e6
        );
        assert_eq!(out.migrations, 0);
    }

    /// The first `n` VMs of the shipped day 2011-03-03 and `hosts` CloudSim hosts.
    fn shipped(n: usize, hosts: usize) -> (Scenario, Workload) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../datasets/planetlab-20110303.parquet");
        let wl = Workload::from_parquet(&path).expect("the shipped dataset reads");
        (Scenario::cloudsim_planetlab(hosts), wl.take(n))
    }

    #[test]
    fn updating_only_hosts_that_can_change_gives_every_figure_of_updating_all() {
        // Idle hosts left alone and, after migrations complete, only the hosts they touched
        // updated again: the same run, bit for bit, as updating every host every time.
        let (sc, wl) = shipped(160, 120);
        let policies = ["thr-mmt-0.8", "lr-mmt-1.2", "keel-power-saving"];
        for name in policies {
            let run = |every_host: bool| {
                let mut e = Engine::new(&sc, &wl);
                e.every_host = every_host;
                e.migration_log = Some(Vec::new());
                let mut p: Box<dyn Policy> = match crate::sim::heuristics::Heuristic::parse(name) {
                    Some(h) => Box::new(h),
                    None => Box::new(
                        crate::sim::keel::KeelPolicy::from_name(
                            name,
                            None,
                            None,
                            crate::sim::keel::Transport::default(),
                        )
                        .unwrap(),
                    ),
                };
                e.run(p.as_mut(), true, &mut |_, _| {}).unwrap()
            };
            let (fast, all) = (run(false), run(true));
            assert!(
                all.migrations > 100,
                "{name}: {} migrations",
                all.migrations
            );
            assert!(
                all.steps.iter().any(|s| s.active_hosts < 100),
                "{name}: no idle host"
            );
            assert_eq!(
                fast.energy_kwh.to_bits(),
                all.energy_kwh.to_bits(),
                "{name}"
            );
            assert_eq!(fast.slatah.to_bits(), all.slatah.to_bits(), "{name}");
            assert_eq!(fast.pdm.to_bits(), all.pdm.to_bits(), "{name}");
            assert_eq!(fast.migrations, all.migrations, "{name}");
            assert_eq!(fast.power_cycles, all.power_cycles, "{name}");
            assert_eq!(fast.finished_vms, all.finished_vms, "{name}");
            assert_eq!(fast.migration_log, all.migration_log, "{name}");
            let steps = |o: &RunOutput| {
                o.steps
                    .iter()
                    .map(|s| (s.active_hosts, s.overloaded_hosts, s.energy_kwh.to_bits()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(steps(&fast), steps(&all), "{name}");
            let series = |o: &RunOutput| format!("{:?}", o.host_series);
            assert_eq!(series(&fast), series(&all), "{name}");
        }
    }
}
