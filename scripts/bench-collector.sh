#!/usr/bin/env bash
# Footprint benchmark: keel-collector at a 1 s interval for 60 s beside Debian's
# prometheus-node-exporter scraped every 1 s, both measured from /proc/PID/status (RSS) and
# /proc/PID/stat (utime+stime). Targets for the collector: <= 10 MB RSS, <= 0.5 % of a core,
# and below node_exporter on both.
#
#   scripts/bench-collector.sh            # 60 s
#   BENCH_SECONDS=20 scripts/bench-collector.sh
#   BENCH_FOOTPRINT=1 BENCH_CARGO_ARGS=--no-default-features scripts/bench-collector.sh
#   KEEL_COLLECTOR_BIN=/usr/local/bin/keel-collector scripts/bench-collector.sh
#
# The collector writes Parquet to a temp dir and, when victoria-metrics is installed (and
# BENCH_INFLUX is not 0), also to a local VictoriaMetrics through the InfluxDB 2 write API (so
# both sinks are in the figures; the HTTP/TLS client alone is ~5 MB of RSS).
# Everything listens on 127.0.0.1 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keel/target}"
SECS="${BENCH_SECONDS:-60}"
WARMUP=3

if ! command -v prometheus-node-exporter >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-node-exporter >/dev/null
  else
    echo "run: sudo apt-get install -y prometheus-node-exporter" >&2; exit 1
  fi
fi
# Build: the workspace's release profile by default. BENCH_FOOTPRINT=1 builds a size-optimised
# binary (opt-level s, LTO, one codegen unit, stripped; a separate target dir, ~12 min cold here);
# BENCH_CARGO_ARGS adds cargo flags, e.g. "--no-default-features" to leave libvirt out (its
# shared libraries alone are ~8 MB of RSS). KEEL_COLLECTOR_BIN=path skips the build.
BIN="${KEEL_COLLECTOR_BIN:-}"
if [ -z "$BIN" ]; then
  read -r -a EXTRA <<< "${BENCH_CARGO_ARGS:-}"
  if [ "${BENCH_FOOTPRINT:-0}" = 1 ]; then
    export CARGO_TARGET_DIR="$CARGO_TARGET_DIR-footprint" CARGO_PROFILE_RELEASE_OPT_LEVEL=s \
      CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
      CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=true
  fi
  cargo build --release -q -p keel-collector --bin keel-collector "${EXTRA[@]}"
  BIN="$CARGO_TARGET_DIR/release/keel-collector"
fi

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TCK="$(getconf CLK_TCK)"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
# PSS splits shared library pages among the processes mapping them (RSS counts them whole).
pss_kb() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup"; }

INFLUX_ARGS=()
if [ "${BENCH_INFLUX:-1}" = 1 ] && command -v victoria-metrics >/dev/null; then
  VMPORT="$(free_port)"
  victoria-metrics -httpListenAddr="127.0.0.1:$VMPORT" -storageDataPath="$TMP/vm" \
    -retentionPeriod=1d >/dev/null 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$VMPORT/health" >/dev/null && break; sleep 0.1; done
  INFLUX_ARGS=(--influx-url "http://127.0.0.1:$VMPORT" --influx-org bench --influx-bucket bench)
fi

NEPORT="$(free_port)"
prometheus-node-exporter --web.listen-address="127.0.0.1:$NEPORT" >/dev/null 2>&1 &
NE=$!; PIDS+=($NE)
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$NEPORT/metrics" >/dev/null && break; sleep 0.1; done

NO_COLOR=1 LOG_FILTER=info "$BIN" --no-config --interval 1s --parquet-dir "$TMP/pq" --spool-dir "$TMP/spool" \
  "${INFLUX_ARGS[@]}" 2>"$TMP/collector.log" &
KC=$!; PIDS+=($KC)

# Scrape node_exporter every second for the whole run, as Prometheus would.
( end=$((SECONDS + SECS + WARMUP)); while [ $SECONDS -lt $end ]; do
    curl -fs -o /dev/null "http://127.0.0.1:$NEPORT/metrics" || true; sleep 1; done ) &
PIDS+=($!)

sleep "$WARMUP"
kc0=$(ticks $KC); ne0=$(ticks $NE); t0=$(date +%s.%N)
sleep "$SECS"
kc1=$(ticks $KC); ne1=$(ticks $NE); t1=$(date +%s.%N)
kc_rss=$(rss_kb $KC); kc_hwm=$(hwm_kb $KC); ne_rss=$(rss_kb $NE); ne_hwm=$(hwm_kb $NE)
kc_pss=$(pss_kb $KC); ne_pss=$(pss_kb $NE)
kill -TERM $KC; wait $KC || true
counters=$(sed 's/\x1b\[[0-9;]*m//g' "$TMP/collector.log" | grep 'counters (shutdown)' | grep -o '[a-z_]*=[0-9]*' | tr '\n' ' ' || true)

awk -v kc0="$kc0" -v kc1="$kc1" -v ne0="$ne0" -v ne1="$ne1" -v t0="$t0" -v t1="$t1" -v tck="$TCK" \
    -v kr="$kc_rss" -v kh="$kc_hwm" -v nr="$ne_rss" -v nh="$ne_hwm" -v kp="$kc_pss" -v np="$ne_pss" 'BEGIN {
  el = t1 - t0
  kcpu = (kc1 - kc0) / tck; ncpu = (ne1 - ne0) / tck
  printf "window: %.1f s (interval 1 s; node_exporter scraped every 1 s)\n", el
  printf "%-26s %8s %8s %8s %10s %12s\n", "process", "RSS MB", "peak MB", "PSS MB", "CPU s", "% of a core"
  printf "%-26s %8.2f %8.2f %8.2f %10.3f %12.3f\n", "keel-collector", kr/1024, kh/1024, kp/1024, kcpu, 100*kcpu/el
  printf "%-26s %8.2f %8.2f %8.2f %10.3f %12.3f\n", "prometheus-node-exporter", nr/1024, nh/1024, np/1024, ncpu, 100*ncpu/el
  ok = (kh/1024 <= 10 && 100*kcpu/el <= 0.5 && kh < nh && kcpu <= ncpu)
  printf "targets (<= 10 MB, <= 0.5 %% of a core, below node_exporter): %s\n", ok ? "met" : "NOT met"
}'
echo "collector counters: ${counters:-?}"
echo "CPU time resolution: 1/$TCK s; binary: $BIN"
