#!/usr/bin/env bash
# Footprint benchmark: keel-collector at a 1 s interval for 60 s beside Debian's
# prometheus-node-exporter scraped every 1 s, both measured from /proc/PID/status (RSS, peak),
# /proc/PID/smaps_rollup (PSS) and /proc/PID/stat (utime+stime). Targets for the collector in
# its default configuration (Parquet sink, host procfs source, no VM source): <= 10 MB RSS,
# <= 0.5 % of a core, and below node_exporter on both.
#
# Scenarios, run one after the other (each BENCH_SECONDS long, node_exporter alongside):
#   parquet  the default configuration (dist/collector.toml): Parquet only
#   influx   Parquet + InfluxDB 2 writes to a local VictoriaMetrics (if installed)
#   libvirt  Parquet + the libvirt source (BENCH_LIBVIRT_URI, default test:///default); the
#            keel-collector-libvirt helper process is measured separately
#
#   scripts/bench-collector.sh                       # all three, 60 s each
#   BENCH_SCENARIOS=parquet BENCH_SECONDS=20 scripts/bench-collector.sh
#   BENCH_LIBVIRT_URI=qemu:///system scripts/bench-collector.sh
#   BENCH_FOOTPRINT=1 scripts/bench-collector.sh     # size-optimised build
#   KEEL_COLLECTOR_BIN=/usr/local/bin/keel-collector scripts/bench-collector.sh
#
# Everything listens on 127.0.0.1 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keel/target}"
SECS="${BENCH_SECONDS:-60}"
SCENARIOS="${BENCH_SCENARIOS:-parquet influx libvirt}"
LIBVIRT_URI="${BENCH_LIBVIRT_URI:-test:///default}"
WARMUP=3

if ! command -v prometheus-node-exporter >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-node-exporter >/dev/null
  else
    echo "run: sudo apt-get install -y prometheus-node-exporter" >&2; exit 1
  fi
fi
# Build: the workspace's release profile by default. BENCH_FOOTPRINT=1 builds a size-optimised
# binary (opt-level s, LTO, one codegen unit, stripped; a separate target dir); BENCH_CARGO_ARGS
# adds cargo flags. KEEL_COLLECTOR_BIN=path skips the build (the helper is looked up beside it).
BIN="${KEEL_COLLECTOR_BIN:-}"
if [ -z "$BIN" ]; then
  read -r -a EXTRA <<< "${BENCH_CARGO_ARGS:-}"
  if [ "${BENCH_FOOTPRINT:-0}" = 1 ]; then
    export CARGO_TARGET_DIR="$CARGO_TARGET_DIR-footprint" CARGO_PROFILE_RELEASE_OPT_LEVEL=s \
      CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
      CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=true
  fi
  cargo build --release -q -p keel-collector --bins "${EXTRA[@]}"
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
# PSS splits shared pages (libc, the binary's text) among the processes mapping them; RSS counts
# them whole in every process.
pss_kb() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup"; }
child_of() { cat "/proc/$1/task/$1/children" 2>/dev/null | awk '{print $1}'; }

NEPORT="$(free_port)"
prometheus-node-exporter --web.listen-address="127.0.0.1:$NEPORT" >/dev/null 2>&1 &
NE=$!; PIDS+=($NE)
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$NEPORT/metrics" >/dev/null && break; sleep 0.1; done
# Scrape node_exporter every second for the whole run, as Prometheus would.
( while kill -0 $NE 2>/dev/null; do curl -fs -o /dev/null "http://127.0.0.1:$NEPORT/metrics" || true; sleep 1; done ) &
PIDS+=($!)

VMPORT=""
start_vm() {
  [ -n "$VMPORT" ] && return 0
  command -v victoria-metrics >/dev/null || return 1
  VMPORT="$(free_port)"
  victoria-metrics -httpListenAddr="127.0.0.1:$VMPORT" -storageDataPath="$TMP/vm" \
    -retentionPeriod=1d >/dev/null 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$VMPORT/health" >/dev/null && break; sleep 0.1; done
}

printf 'window: %s s per scenario (interval 1 s; node_exporter scraped every 1 s); binary: %s\n' "$SECS" "$BIN"
printf '%-34s %8s %8s %8s %10s %12s\n' "process" "RSS MB" "peak MB" "PSS MB" "CPU s" "% of a core"
row() { awk -v n="$1" -v r="$2" -v h="$3" -v p="$4" -v c="$5" -v el="$6" -v tck="$TCK" 'BEGIN {
  printf "%-34s %8.2f %8.2f %8.2f %10.3f %12.3f\n", n, r/1024, h/1024, p/1024, c/tck, 100*c/tck/el }'; }
VERDICT=""

for sc in $SCENARIOS; do
  ARGS=(--no-config --interval 1s --parquet-dir "$TMP/pq-$sc" --spool-dir "$TMP/spool-$sc")
  case "$sc" in
    parquet) ;;
    influx)
      if ! start_vm; then echo "influx: victoria-metrics not installed; skipped"; continue; fi
      ARGS+=(--influx-url "http://127.0.0.1:$VMPORT" --influx-org bench --influx-bucket bench) ;;
    libvirt) ARGS+=(--libvirt-uri "$LIBVIRT_URI") ;;
    *) echo "unknown scenario $sc" >&2; exit 2 ;;
  esac
  NO_COLOR=1 LOG_FILTER=info "$BIN" "${ARGS[@]}" 2>"$TMP/collector-$sc.log" &
  KC=$!; PIDS+=($KC)
  sleep "$WARMUP"
  HP="$(child_of $KC)"
  kc0=$(ticks $KC); ne0=$(ticks $NE); hp0=0; [ -n "$HP" ] && hp0=$(ticks "$HP")
  t0=$(date +%s.%N)
  sleep "$SECS"
  t1=$(date +%s.%N); el=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
  kc1=$(ticks $KC); ne1=$(ticks $NE)
  row "keel-collector [$sc]" "$(rss_kb $KC)" "$(hwm_kb $KC)" "$(pss_kb $KC)" $((kc1 - kc0)) "$el"
  kh=$(hwm_kb $KC); kcpu=$((kc1 - kc0))
  if [ -n "$HP" ] && [ -d "/proc/$HP" ]; then
    hp1=$(ticks "$HP")
    row "  + keel-collector-libvirt (helper)" "$(rss_kb "$HP")" "$(hwm_kb "$HP")" "$(pss_kb "$HP")" $((hp1 - hp0)) "$el"
  elif [ "$sc" = libvirt ]; then
    echo "  (no helper process found: see the collector log below)"
  fi
  row "prometheus-node-exporter" "$(rss_kb $NE)" "$(hwm_kb $NE)" "$(pss_kb $NE)" $((ne1 - ne0)) "$el"
  nh=$(hwm_kb $NE); ncpu=$((ne1 - ne0))
  kill -TERM $KC; wait $KC || true
  counters=$(sed 's/\x1b\[[0-9;]*m//g' "$TMP/collector-$sc.log" | grep 'counters (shutdown)' | grep -o '[a-z_]*=[0-9]*' | tr '\n' ' ' || true)
  echo "  counters: ${counters:-?}"
  grep -E 'WARN|ERROR' "$TMP/collector-$sc.log" | sed 's/\x1b\[[0-9;]*m//g' | head -3 | sed 's/^/  log: /' || true
  if [ "$sc" = parquet ]; then
    VERDICT=$(awk -v kh="$kh" -v nh="$nh" -v kc="$kcpu" -v nc="$ncpu" -v el="$el" -v tck="$TCK" 'BEGIN {
      ok = (kh/1024 <= 10 && 100*kc/tck/el <= 0.5 && kh < nh && kc <= nc)
      print (ok ? "met" : "NOT met") }')
  fi
done
[ -n "$VERDICT" ] && echo "targets, default configuration (peak <= 10 MB, <= 0.5 % of a core, below node_exporter): $VERDICT"
echo "CPU time resolution: 1/$TCK s"
