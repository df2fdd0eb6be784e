#!/usr/bin/env bash
# Outage soak: keel-collector at a 1 s interval writing Parquet and to a local VictoriaMetrics
# (Debian `victoria-metrics`, InfluxDB 2 write API); the database is stopped for OUTAGE_S
# seconds and started again, the collector replays its spool, and its RSS is sampled every
# second from /proc/PID/status the whole time. Prints the RSS at idle (before the outage), its
# peak during the outage and the replay, and after the replay, then the rounds in both outputs.
# Goal: after the replay the collector returns to its idle footprint.
#
#   scripts/soak-collector-outage.sh                         # 60 s idle, 120 s outage, 90 s after
#   IDLE_S=120 OUTAGE_S=600 AFTER_S=180 scripts/soak-collector-outage.sh   # the 10-minute outage
#   KEEL_COLLECTOR_BIN=path scripts/soak-collector-outage.sh                # skip the build
#
# Everything listens on 127.0.0.1 and is stopped at the end. The RSS series is left in
# $SOAK_OUT (default: a temporary directory that is removed) as rss.csv (seconds, kB, spool B).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keel/target}"
IDLE_S="${IDLE_S:-60}"
OUTAGE_S="${OUTAGE_S:-120}"
AFTER_S="${AFTER_S:-90}"

command -v victoria-metrics >/dev/null || {
  echo "victoria-metrics is not installed: apt-get install -y victoria-metrics" >&2; exit 1; }
BIN="${KEEL_COLLECTOR_BIN:-}"
if [ -z "$BIN" ]; then
  cargo build --release -q -p keel-collector --bin keel-collector
  BIN="$CARGO_TARGET_DIR/release/keel-collector"
fi

TMP="$(mktemp -d)"
OUT="${SOAK_OUT:-$TMP}"
mkdir -p "$OUT"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
spool_b() { du -sb "$TMP/spool" 2>/dev/null | awk '{print $1}'; }
spool_batches() { find "$TMP/spool" -name '*.lp' 2>/dev/null | wc -l; }

PORT="$(free_port)"
VM=""
start_vm() {
  victoria-metrics -httpListenAddr="127.0.0.1:$PORT" -storageDataPath="$TMP/vm" \
    -retentionPeriod=1d -search.latencyOffset=0s >>"$TMP/vm.log" 2>&1 &
  VM=$!; PIDS+=($VM)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && return 0; sleep 0.1; done
  echo "victoria-metrics did not start" >&2; exit 1
}
stop_vm() { kill -TERM "$VM"; wait "$VM" 2>/dev/null || true; }

start_vm
NO_COLOR=1 "$BIN" --no-config --host-id soak --interval 1s --parquet-dir "$TMP/pq" \
  --spool-dir "$TMP/spool" --influx-url "http://127.0.0.1:$PORT" --influx-org soak \
  --influx-bucket soak 2>"$OUT/collector.log" &
KC=$!; PIDS+=($KC)

T0=$(date +%s)
: >"$OUT/rss.csv"
sample() { echo "$(( $(date +%s) - T0 )),$(rss_kb $KC),$(spool_b)" >>"$OUT/rss.csv"; }
# Samples for `n` seconds; the RSS values (kB) of those samples go to stdout.
phase() { local n=$1; for _ in $(seq "$n"); do sample; sleep 1; done; }
col() { awk -F, -v a="$1" -v b="$2" 'NR > a && NR <= b {print $2}' "$OUT/rss.csv"; }
med() { sort -n | awk '{v[NR]=$1} END {print (NR ? v[int((NR+1)/2)] : 0)}'; }
max() { sort -n | tail -1; }
mb() { awk -v k="$1" 'BEGIN {printf "%.2f", k/1024}'; }

phase "$IDLE_S"
n_idle=$(wc -l <"$OUT/rss.csv")
idle=$(col $((n_idle > 20 ? n_idle - 20 : 0)) "$n_idle" | med)
stop_vm
phase "$OUTAGE_S"
n_out=$(wc -l <"$OUT/rss.csv")
spool_peak=$(spool_b)
batches_peak=$(spool_batches)
start_vm
# Replay: until no sealed batch is left (at most 10 minutes), sampling all along.
t_replay=$(date +%s)
while [ "$(spool_batches)" -gt 1 ] && [ $(( $(date +%s) - t_replay )) -lt 600 ]; do sample; sleep 1; done
replay_s=$(( $(date +%s) - t_replay ))
n_rep=$(wc -l <"$OUT/rss.csv")
phase "$AFTER_S"
n_end=$(wc -l <"$OUT/rss.csv")
after=$(col $((n_end - 20)) "$n_end" | med)
peak_outage=$(col "$n_idle" "$n_out" | max)
peak_replay=$(col "$n_out" "$((n_rep + 10))" | max)
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$KC/status")
kill -TERM $KC; wait $KC || true

printf 'interval 1 s; idle %s s, outage %s s (spool %s B in %s batches), replay %s s, after %s s; binary %s\n' \
  "$IDLE_S" "$OUTAGE_S" "$spool_peak" "$batches_peak" "$replay_s" "$AFTER_S" "$BIN"
printf '%-40s %8s\n' "collector RSS" "MB"
printf '%-40s %8s\n' "idle (median, last 20 s before outage)" "$(mb "$idle")"
printf '%-40s %8s\n' "peak during outage" "$(mb "$peak_outage")"
printf '%-40s %8s\n' "peak during replay" "$(mb "$peak_replay")"
printf '%-40s %8s\n' "after replay (median, last 20 s)" "$(mb "$after")"
printf '%-40s %8s\n' "VmHWM (peak over the run)" "$(mb "$hwm")"
printf 'returns to idle footprint (after <= idle + 0.5 MB): %s\n' \
  "$(awk -v a="$after" -v i="$idle" 'BEGIN {print (a <= i + 512 ? "yes" : "NO")}')"

# Rounds in both outputs: Parquet rows (shutdown counters), host_cpu_util points in the database
# (after a pause: VictoriaMetrics makes new points searchable within about a second).
sleep 3
# No VM source here: one Parquet row per round.
pq_rounds=$(sed 's/\x1b\[[0-9;]*m//g' "$OUT/collector.log" | grep 'counters (shutdown)' |
  grep -o 'parquet_rows_written=[0-9]*' | cut -d= -f2)
db_rounds=$(curl -fs "http://127.0.0.1:$PORT/api/v1/export" --data-urlencode 'match[]=host_cpu_util{host="soak"}' |
  python3 -c 'import json,sys; print(sum(len(json.loads(l)["timestamps"]) for l in sys.stdin if l.strip()))')
echo "rounds: Parquet $pq_rounds, database $db_rounds"
grep -E 'outage|Spool replayed|counters \(shutdown\)' "$OUT/collector.log" | sed 's/^/  log: /'
