#!/usr/bin/env bash
# Keel on real guests (scripts/lab): two libvirt hosts on this machine, tiny QEMU guests.
#
# 1. collector: keel-collector's libvirt source on host A with a guest whose busy loop starts and
#    stops: per-VM rows (CPU from cpu.time, memory from the balloon, vCPU delay) in Parquet and,
#    through the InfluxDB 2 write path, in VictoriaMetrics; the rows follow the busy loop.
# 2. end to end: `keel-agent run` per host (authenticated TCP, libvirt load, libvirt executor),
#    two busy guests on A: A is overloaded, the agents negotiate, libvirt live-migrates one guest
#    to B, its tick goes on from B, the collectors' rows show it on B, no guest lost or on both.
# 3. failures: B's libvirtd killed mid-migration; B's libvirt refusing the incoming migration
#    after both agents committed. The guest keeps running on A, the negotiation ends without a
#    migration, nothing is left on B.
#
#   bash scripts/test.d/lab.sh        # run by scripts/test.sh (root: installs what is missing)
#
# Everything is torn down on exit, also when a check fails half-way (trap). KEEL_LAB_LOG=FILE keeps
# a copy of the run's log.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keel/target}"
ROOT="$PWD"
LAB="$ROOT/scripts/lab/lab.sh"
# A lab of its own (directory and ports), beside one a person may have up by hand.
export KEEL_LAB_DIR="/tmp/keel-lab-test"
export KEEL_LAB_PORT=16709
WORK="$(mktemp -d /tmp/keel-lab-work.XXXXXX)"
PY="${KEEL_PYTHON:-python3}"
pids=()
cleanup() {
  local rc=$? p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if "$LAB" down; then [ "$rc" != 0 ] || rm -rf "$KEEL_LAB_DIR"; else rc=1; fi
  [ -n "${KEEL_LAB_LOG:-}" ] && cp "$WORK/test.log" "$KEEL_LAB_LOG" 2>/dev/null
  if [ "$rc" = 0 ]; then rm -rf "$WORK"; else echo "lab: logs kept in $WORK" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
exec > >(tee "$WORK/test.log") 2>&1
say() { printf '[%s] %s\n' "$(date +%T)" "$*"; }
fail() { say "FAIL: $*"; exit 1; }
t_start=$SECONDS

[ "$(id -u)" = 0 ] || fail "the lab needs root (namespaces, libvirtd)"
"$PY" -c 'import pyarrow' 2>/dev/null || fail "$PY has no pyarrow (scripts/test.sh sets KEEL_PYTHON to a venv that has it)"
command -v victoria-metrics >/dev/null || fail "victoria-metrics missing: apt-get install victoria-metrics (scripts/test.sh installs it)"
# Copies, taken right after each build: the target directory may be shared with other checkouts.
mkdir -p "$WORK/bin"
cargo build -q --locked -p keel-collector --bins
cp "$CARGO_TARGET_DIR/debug/keel-collector" "$CARGO_TARGET_DIR/debug/keel-collector-libvirt" "$WORK/bin/"
cargo build -q --locked -p keel-agent --bin keel-agent
cp "$CARGO_TARGET_DIR/debug/keel-agent" "$WORK/bin/"
COLLECTOR="$WORK/bin/keel-collector"
AGENT="$WORK/bin/keel-agent"

t0=$SECONDS
"$LAB" up 2
say "lab up in $((SECONDS - t0)) s"
URI_A="$("$LAB" uri 0)"
URI_B="$("$LAB" uri 1)"
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
where() { # VM -> "A", "B", "A+B" or "none" (running domains)
  local on=()
  virsh -q -c "$URI_A" domstate "$1" 2>/dev/null | grep -q '^running' && on+=(A)
  virsh -q -c "$URI_B" domstate "$1" 2>/dev/null | grep -q '^running' && on+=(B)
  local IFS=+
  echo "${on[*]:-none}"
}
last_tick() { grep "^keel-tick $1 " "$KEEL_LAB_DIR/serial/$1.log" | tail -1 | awk '{print $3}'; }
ticks_go_on() { # VM: true when the guest prints 2 more ticks within 30 s (a loaded machine slows TCG guests)
  local t0 deadline=$((SECONDS + 30))
  t0="$(last_tick "$1")"
  until [ "$(last_tick "$1")" -ge $((t0 + 2)) ]; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# VictoriaMetrics, for the collectors' InfluxDB 2 sink.
VM_PORT="$(free_port)"
victoria-metrics -httpListenAddr="127.0.0.1:$VM_PORT" -storageDataPath="$WORK/vm-data" \
  -retentionPeriod=100y -search.latencyOffset=0s -search.disableCache >"$WORK/vm.log" 2>&1 &
pids+=($!)
deadline=$((SECONDS + 30))
until curl -fs "127.0.0.1:$VM_PORT/health" >/dev/null 2>&1; do
  ((SECONDS < deadline)) || fail "VictoriaMetrics not healthy after 30 s: $(tail -3 "$WORK/vm.log")"
  sleep 0.2
done

start_collector() { # NAME HOST_URI DIR
  mkdir -p "$3"
  cat >"$3/collector.toml" <<EOF
host_id = "$1"
interval = "1s"
stats_interval = "1h"
[parquet]
dir = "$3/parquet"
rotate = "1h"
[influx]
url = "http://127.0.0.1:$VM_PORT"
org = "keel"
bucket = "lab"
token = "lab"
flush_interval = "1s"
spool_dir = "$3/spool"
[libvirt]
enabled = true
uri = "$2"
EOF
  LOG_FILTER=info "$COLLECTOR" --config "$3/collector.toml" >"$3/collector.log" 2>&1 &
  pids+=($!)
  echo $! >"$3/pid"
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# --- 1. collector on real guests ---------------------------------------------------------------
say "== collector: a guest busy from 8 s to 18 s after boot, an idle guest, on lab-a =="
"$LAB" boot vm-wave 0 busy=1 busy_start=8 busy_stop=18
"$LAB" boot vm-idle 0
start_collector lab-a "$URI_A" "$WORK/col-a"
"$LAB" wait-tick vm-wave 60
"$LAB" wait-tick vm-idle 60
sleep 8
cpid="$(cat "$WORK/col-a/pid")"
helper="$(pgrep -P "$cpid" -f keel-collector-libvirt | head -1 || true)"
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
say "collector footprint with two guests: keel-collector $(rss "$cpid") KiB, keel-collector-libvirt $(rss "${helper:-0}") KiB RSS (debug build)"
# Until the guest says its busy loop stopped, and 6 rows more.
deadline=$((SECONDS + 120))
until grep -q "^keel-busy vm-wave off" "$KEEL_LAB_DIR/serial/vm-wave.log"; do
  ((SECONDS < deadline)) || fail "vm-wave's busy loop did not stop in 120 s"
  sleep 0.5
done
grep "^keel-busy vm-wave" "$KEEL_LAB_DIR/serial/vm-wave.log" | sed 's/^/  console: /'
sleep 6
stop_pid "$cpid"
UUID_WAVE="$(virsh -q -c "$URI_A" domuuid vm-wave)"
UUID_IDLE="$(virsh -q -c "$URI_A" domuuid vm-idle)"
"$PY" - "$WORK/col-a/parquet" "$VM_PORT" "$UUID_WAVE" "$UUID_IDLE" <<'EOF'
import glob, json, sys, urllib.parse, urllib.request
import pyarrow as pa
import pyarrow.parquet as pq
pdir, port, wave, idle = sys.argv[1:]
rows = []
for f in sorted(glob.glob(pdir + "/*.parquet")):
    t = pq.read_table(f)
    t = t.set_column(t.schema.get_field_index("ts"), "ts", t.column("ts").cast(pa.int64()))
    rows += t.to_pylist()
assert rows, f"no Parquet rows in {pdir}"
vm_rows = [r for r in rows if r.get("vm_id") in (wave, idle)]
def series(uuid):
    return sorted(((r["ts"], r) for r in vm_rows if r["vm_id"] == uuid), key=lambda x: x[0])
w = series(wave)
assert len(w) >= 15, f"only {len(w)} Parquet rows for vm-wave"
keys = [k for k in w[0][1] if any(r.get(k) is not None for _, r in w)]
print("vm-wave columns with values:", ", ".join(keys))
def fmt(r):
    return " ".join(f"{k}={r[k]:.3g}" for k in ("cpu_util", "mem_used_mib", "cpu_delay") if r.get(k) is not None)
print("vm-wave rows (Parquet):")
for t, r in w:
    print(f"  ts={t} host={r.get('host_id')} {fmt(r)}")
cpu = [r["cpu_util"] for _, r in w if r.get("cpu_util") is not None]
# The busy loop starts and stops: a low stretch, then >= 3 high rows, then a low stretch. "High"
# is relative to the burst's peak (other work on this machine may leave the guest less than a
# core), which must itself be clearly busy.
peak = max(cpu)
assert peak > 0.4, f"vm-wave never busy: {[round(c, 2) for c in cpu]}"
lo, hi_t = min(0.2, 0.3 * peak), 0.6 * peak
state, hi = "start", 0
for c in cpu:
    if state == "start" and c < lo: state = "low1"
    elif state == "low1" and c > hi_t: state, hi = "high", 1
    elif state == "high" and c > hi_t: hi += 1
    elif state == "high" and c < lo and hi >= 3: state = "low2"
assert state == "low2", f"vm-wave cpu_util does not go low -> high -> low: {[round(c, 2) for c in cpu]}"
for k in ("cpu_delay",):
    assert any(r.get(k) is not None for _, r in w), f"no {k} in vm-wave rows"
assert any(r.get("mem_used_mib") for _, r in w), "no balloon memory figure (mem_used_mib)"
i = series(idle)
late = [r["cpu_util"] for _, r in i[-8:] if r.get("cpu_util") is not None]
assert late and max(late) < 0.3, f"vm-idle not idle: {late}"
# The same rows in VictoriaMetrics (InfluxDB 2 write path): every Parquet cpu_util value of
# vm-wave at its timestamp.
import time
want = {t: r["cpu_util"] for t, r in w if r.get("cpu_util") is not None}
q = urllib.parse.quote('{__name__=~".*_cpu_util"}')
deadline = time.time() + 20
while True:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/export?match[]={q}").read().decode()
    got, name, labels = {}, None, None
    for line in body.splitlines():
        s = json.loads(line)
        if wave in s["metric"].values():
            got.update(zip(s["timestamps"], s["values"]))
            name = s["metric"]["__name__"]
            labels = {k: v for k, v in s["metric"].items() if k != "__name__"}
    if all(t in got for t in want) or time.time() > deadline:
        break
    time.sleep(0.5)
want = {t: r["cpu_util"] for t, r in w if r.get("cpu_util") is not None}
assert got, "no vm-wave series in VictoriaMetrics"
print(f"VictoriaMetrics series {name} {labels}: {len(got)} points")
missing = [t for t in want if t not in got or abs(got[t] - want[t]) > 1e-9]
assert not missing, f"{len(missing)} Parquet rows not in VictoriaMetrics (first ts {missing[:3]})"
print(f"ok: vm-wave {len(w)} rows low->high->low, vm-idle idle, balloon memory and vCPU delay present, all {len(want)} cpu_util rows equal in VictoriaMetrics")
EOF
virsh -q -c "$URI_A" destroy vm-wave >/dev/null
virsh -q -c "$URI_A" undefine vm-wave >/dev/null
virsh -q -c "$URI_A" destroy vm-idle >/dev/null
virsh -q -c "$URI_A" undefine vm-idle >/dev/null

# --- 2. agents: one per host -------------------------------------------------------------------
KEY="$WORK/cluster.key"
"$PY" -c 'import os; print(os.urandom(32).hex())' >"$KEY"
chmod 600 "$KEY"
start_agent() { # NAME LISTEN_PORT PEER_PORT STATUS_PORT URI
  local d="$WORK/agent-$1"
  mkdir -p "$d"
  # Each busy guest keeps about one core busy (demand ~1000); capacity 1400 makes two of them
  # an overload (> 0.8 x 1400) and one of them fit.
  cat >"$d/agent.toml" <<EOF
id = "$1"
listen = "127.0.0.1:$2"
seeds = ["127.0.0.1:$3"]
cluster_key_file = "$KEY"
capacity = 1400.0
high = 0.8
low = 0.3
accept_below = 0.8
status_addr = "127.0.0.1:$4"
libvirt_uri = "$5"
load_libvirt_uri = "$5"
eval_interval_ms = 1000
gossip_interval_ms = 500

[executor]
kind = "libvirt"
local_uri = "$5"
migrate_uri = "tcp://{target_host}"
listen_address = "{target_host}"

[timeouts]
execute_ms = 60000
EOF
  LOG_FILTER=info,keel_agent::node::membership=warn "$AGENT" run --config "$d/agent.toml" >"$d/agent.log" 2>&1 &
  pids+=($!)
  echo $! >"$d/pid"
}
status() { curl -fs "127.0.0.1:$1/status" 2>/dev/null || echo '{}'; }
outcomes() { # STATUS_PORT -> one line per finished negotiation: side vm outcome
  status "$1" | "$PY" -c '
import json, sys
s = json.load(sys.stdin)
for r in s.get("recent", []):
    print(r["side"], r["vm"], json.dumps(r["outcome"]), r["elapsed_ms"])'
}
scenario() { # NAME [slow]: two busy guests on A, agents started; waits until A's agent has an outcome
  say "== $1: vm-1 and vm-2 busy on lab-a, lab-b empty; agents start =="
  for v in vm-1 vm-2; do
    virsh -q -c "$URI_A" destroy "$v" >/dev/null 2>&1 || true
    virsh -q -c "$URI_A" undefine "$v" >/dev/null 2>&1 || true
    virsh -q -c "$URI_B" destroy "$v" >/dev/null 2>&1 || true
    virsh -q -c "$URI_B" undefine "$v" >/dev/null 2>&1 || true
    "$LAB" boot "$v" 0 busy=1
  done
  "$LAB" wait-tick vm-1 60
  "$LAB" wait-tick vm-2 60
  if [ "${2:-}" = slow ]; then
    for v in vm-1 vm-2; do virsh -q -c "$URI_A" migrate-setspeed "$v" 4; done
  fi
  # Fresh ports for each scenario's agents.
  P_A="$(free_port)"
  P_B="$(free_port)"
  S_A="$(free_port)"
  S_B="$(free_port)"
  start_agent lab-a "$P_A" "$P_B" "$S_A" "$URI_A"
  start_agent lab-b "$P_B" "$P_A" "$S_B" "$URI_B"
}
wait_outcome() { # seconds; sets OUT to A's first source-side outcome line
  local deadline=$((SECONDS + $1))
  OUT=""
  while ((SECONDS < deadline)); do
    OUT="$(outcomes "$S_A" | awk '$1 == "source"' | head -1)"
    [ -n "$OUT" ] && return 0
    sleep 0.3
  done
  return 1
}
stop_agents() {
  stop_pid "$(cat "$WORK/agent-lab-a/pid")"
  stop_pid "$(cat "$WORK/agent-lab-b/pid")"
}
show_agent_log() { # NAME: the negotiation lines
  grep -E "role|Offer|ffer|ommit|xecut|igrat|VM received|without a migration|Negotiation" "$WORK/agent-$1/agent.log" |
    sed -e 's/\x1b\[[0-9;]*m//g' -e "s/^/  $1: /" | tail -12 || true
}
check_single() { # VM: on exactly one host, one QEMU process
  local w n
  w="$(where "$1")"
  n="$("$LAB" qemu-count "$1")"
  [ "$w" = A ] || [ "$w" = B ] || fail "$1 is on '$w'"
  [ "$n" = 1 ] || fail "$1 has $n QEMU processes"
  echo "$w"
}

scenario "end to end"
start_collector lab-a "$URI_A" "$WORK/col-ea"
start_collector lab-b "$URI_B" "$WORK/col-eb"
wait_outcome 90 || { show_agent_log lab-a; show_agent_log lab-b; fail "no negotiation finished on lab-a in 90 s"; }
say "lab-a source outcome: $OUT"
show_agent_log lab-a
show_agent_log lab-b
echo "$OUT" | grep -q '"migrated"' || fail "the negotiation did not migrate: $OUT"
moved="$(echo "$OUT" | awk '{print $2}')"
stayed=vm-1
[ "$moved" = vm-1 ] && stayed=vm-2
[ "$(check_single "$moved")" = B ] || fail "$moved is not on lab-b"
[ "$(check_single "$stayed")" = A ] || fail "$stayed left lab-a"
virsh -q -c "$URI_B" domstate "$moved" --reason | sed 's/^/  lab-b domstate: /'
virsh -q -c "$URI_B" domjobinfo "$moved" --completed | grep -E "Time elapsed:|Total downtime:|Data processed:" | sed 's/^/  libvirt (lab-b): /'
t_mig="$(last_tick "$moved")"
ticks_go_on "$moved" || fail "$moved's tick stopped on lab-b (at $t_mig)"
t_now="$(last_tick "$moved")"
say "$moved's tick went on from lab-b: $t_mig -> $t_now"
grep "keel-tick $moved " "$KEEL_LAB_DIR/serial/$moved.log" | tail -6 | sed 's/^/  console: /'
sleep 2
stop_agents
UUID_M="$(virsh -q -c "$URI_B" domuuid "$moved")"
stop_pid "$(cat "$WORK/col-ea/pid")"
stop_pid "$(cat "$WORK/col-eb/pid")"
"$PY" - "$VM_PORT" "$UUID_M" "$moved" <<'EOF'
import json, sys, time, urllib.parse, urllib.request
port, uuid, name = sys.argv[1:]
q = urllib.parse.quote('{__name__=~".*_cpu_util"}')
deadline = time.time() + 20
while True:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/export?match[]={q}").read().decode()
    by_host = {}
    for line in body.splitlines():
        s = json.loads(line)
        if uuid in s["metric"].values():
            h = s["metric"].get("host") or s["metric"].get("host_id")
            by_host.setdefault(h, []).extend(zip(s["timestamps"], s["values"]))
    if len(by_host) >= 2 or time.time() > deadline:
        break
    time.sleep(0.5)
for h in by_host:
    by_host[h].sort()
print(f"collector rows of {name} ({uuid}) in VictoriaMetrics, by host:")
for h, pts in sorted(by_host.items()):
    print(f"  {h}: {len(pts)} rows, first ts {pts[0][0]}, last ts {pts[-1][0]}; last 3 cpu_util {[round(v, 2) for _, v in pts[-3:]]}")
a, b = by_host.get("lab-a", []), by_host.get("lab-b", [])
assert a and b, f"rows on lab-a: {len(a)}, on lab-b: {len(b)}"
for h, pts in (("lab-a", a[-3:]), ("lab-b", b[:3])):
    for t, v in pts:
        print(f"  row: vm_cpu_util{{host={h}, vm={name}}} ts={t} value={v:.3f}")
# Never reported by both hosts at once: lab-b's rows begin after lab-a's end.
assert b[0][0] > a[-1][0], f"rows on both hosts: lab-a until {a[-1][0]}, lab-b from {b[0][0]}"
print(f"ok: {name} reported by lab-a until {a[-1][0]}, by lab-b from {b[0][0]} to {b[-1][0]}")
EOF

# --- 3. failures ---------------------------------------------------------------------------------
scenario "lab-b's libvirtd killed mid-migration" slow
killed=""
deadline=$((SECONDS + 90))
while [ -z "$killed" ] && ((SECONDS < deadline)); do
  for v in vm-1 vm-2; do
    # Mid-transfer: part of the guest's memory is on lab-b (the migration is slowed to 4 MiB/s,
    # so ~15 s for the guest's ~60 MiB: the kill lands well before switchover).
    if virsh -q -c "$URI_A" domjobinfo "$v" 2>/dev/null | grep -qE "Memory processed: *[1-9]"; then
      "$LAB" kill-host 1
      killed="$v"
      say "migration of $v under way ($(virsh -q -c "$URI_A" domjobinfo "$v" 2>/dev/null | grep -E 'Memory processed' | tr -s ' ')): lab-b's libvirtd killed"
      break
    fi
  done
  sleep 0.05
done
[ -n "$killed" ] || fail "no migration started in 90 s"
wait_outcome 60 || fail "lab-a's negotiation did not end"
say "lab-a source outcome: $OUT"
show_agent_log lab-a
stop_agents
echo "$OUT" | grep -q '"migrated"' && fail "the migration is reported done"
say "lab-a: $killed is $(virsh -q -c "$URI_A" domstate "$killed" --reason); QEMU processes for it: $("$LAB" qemu-count "$killed") (lab-b's incoming one outlives its killed daemon)"
"$LAB" restart 1
sleep 1
[ "$(check_single "$killed")" = A ] || fail "$killed is not (only) on lab-a after lab-b's restart"
[ -z "$(virsh -q -c "$URI_B" list --all --name)" ] || fail "lab-b holds a domain: $(virsh -q -c "$URI_B" list --all --name)"
t1="$(last_tick "$killed")"
ticks_go_on "$killed" || fail "$killed's tick stopped"
say "ok: lab-b restarted and cleaned up its half-received guest: $killed runs on lab-a only (one QEMU), ticks $t1 -> $(last_tick "$killed"), lab-b has no domain"

scenario "lab-b's libvirt refuses the incoming migration after both agents committed"
touch "$KEEL_LAB_DIR/hosts/1/refuse"
wait_outcome 90 || fail "lab-a's negotiation did not end"
say "lab-a source outcome: $OUT"
show_agent_log lab-a
show_agent_log lab-b
stop_agents
rm -f "$KEEL_LAB_DIR/hosts/1/refuse"
echo "$OUT" | grep -q '"migrated"' && fail "the migration is reported done"
grep -q "refuses incoming migrations" "$WORK/agent-lab-a/agent.log" || fail "lab-a's agent did not see lab-b's refusal"
refused="$(echo "$OUT" | awk '{print $2}')"
[ "$(check_single "$refused")" = A ] || fail "$refused is not (only) on lab-a"
[ -z "$(virsh -q -c "$URI_B" list --all --name)" ] || fail "lab-b holds a domain"
t1="$(last_tick "$refused")"
ticks_go_on "$refused" || fail "$refused's tick stopped"
say "ok: $refused runs on lab-a only, lab-b has no domain, its tick goes on"

say "lab: all checks passed in $((SECONDS - t_start)) s"
