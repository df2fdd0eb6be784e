#!/usr/bin/env bash
# Throughput (rows/s) and peak RSS of `keel-trainer import victoriametrics` for one day and for
# DAYS days (default 10) of the real PlanetLab day (datasets/planetlab-20110303.parquet, 1,052 VMs
# at 5 min) repeated day after day, its VMs spread over 50 hosts, loaded into a real
# VictoriaMetrics in the collector's line format (`vm,host=…,vm=… cpu_util=…,cpu_demand=…`).
# Memory should not grow with the range: the import pages by --window (default 1 h).
# Pass the keel-trainer binary to measure (default: the release build).
#
# Usage: scripts/bench-fleet-import.sh [path/to/keel-trainer] [DAYS]
# Needs victoria-metrics (apt) and Python with pyarrow (~/.cache/keel/venv, see scripts/test.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KT=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release/keel-trainer}
DAYS=${2:-10}
PY=${PYTHON:-$HOME/.cache/keel/venv/bin/python}
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
victoria-metrics -httpListenAddr=127.0.0.1:$PORT -storageDataPath="$WORK/vm" -retentionPeriod=100y \
  -search.latencyOffset=0s >"$WORK/vm.log" 2>&1 &
VM=$!
trap 'kill $VM; wait $VM 2>/dev/null; rm -rf "$WORK"' EXIT
until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.2; done
T0=$("$PY" - "$ROOT/datasets/planetlab-20110303.parquet" "$DAYS" "$PORT" <<'PYEOF'
import sys, urllib.request, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1], columns=["ts", "vm_id", "cpu_util", "cpu_demand"]).to_pylist()
days, port = int(sys.argv[2]), sys.argv[3]
idx = {}
t0 = min(int(r["ts"].timestamp() * 1000) for r in t)
def post(body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v2/write?org=k&bucket=b&precision=ms", data=body.encode())
    urllib.request.urlopen(req).read()
for d in range(days):
    out = []
    for r in t:
        i = idx.setdefault(r["vm_id"], len(idx))
        ts = int(r["ts"].timestamp() * 1000) + d * 86_400_000
        out.append(f"vm,host=pl-{i % 50:02},vm={r['vm_id']} cpu_util={r['cpu_util']!r},cpu_demand={r['cpu_demand']!r} {ts}")
    for k in range(0, len(out), 50_000):
        post("\n".join(out[k:k + 50_000]) + "\n")
print(t0)
PYEOF
)
LAST=$((T0 + (DAYS - 1) * 86400000 + 287 * 300000))
# (Captured first: with pipefail, `curl | grep -q` fails when grep stops reading early.)
until out=$(curl -sf "http://127.0.0.1:$PORT/api/v1/export" --data-urlencode 'match[]={__name__="vm_cpu_util"}' \
  --data-urlencode "start=$((LAST / 1000))") && [[ $out == *"$LAST"* ]]; do sleep 0.5; done
for span in 1 "$DAYS"; do
  /usr/bin/time -f '%e %M' -o "$WORK/time" "$KT" import victoriametrics --url "http://127.0.0.1:$PORT" \
    --start "$T0" --stop $((T0 + span * 86400000)) -o "$WORK/out-$span.parquet" > "$WORK/out.txt"
  read -r secs kb < "$WORK/time"
  rows=$(grep -oE '[0-9]+ rows' "$WORK/out.txt" | grep -oE '[0-9]+')
  printf 'import victoriametrics, %2s day(s): %8s rows in %6.2f s = %7.0f rows/s, peak RSS %6.1f MB\n' \
    "$span" "$rows" "$secs" "$(echo "$rows / $secs" | bc -l)" "$(echo "$kb / 1024" | bc -l)"
done
