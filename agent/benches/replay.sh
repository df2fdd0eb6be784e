#!/bin/sh
# Replay benchmark: wall time and peak RSS of full-day replays (release build), printed by
# /usr/bin/time. Run from the repository root:  sh agent/benches/replay.sh
#   1. PlanetLab 20110303 on cloudsim-planetlab (800 hosts, 1052 VMs), keel-power-saving (the
#      agents negotiating in LCC over the simulated transport): target <= 1 s and <= 100 MB.
#   2. The same with the stability model (keel-power-saving+model).
#   3. The README's main job: every baseline and every Keel variant with and without the model.
#   4. Scaling: the day replicated x10 (--scale 10: 8,000 hosts, 10,520 VMs; copy j of VM v
#      has v's type and trace), keel-power-saving.
#   5. Each policy's own time (`wall_s`: the replay of the day, loading excluded) over RUNS
#      runs of the main job (default 5): min, median and max per policy. Target: every Keel
#      policy's median <= 1 s. A shared or throttled machine widens the spread; quote medians.
set -eu
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/keel/target}"
cargo build --release -p keel-agent --quiet
BIN="$CARGO_TARGET_DIR/release/keel-agent"
DS=datasets/planetlab-20110303.parquet
MODEL=models/stability.json
RUNS="${RUNS:-5}"
run() {
    echo "== $*"
    /usr/bin/time -f "wall %e s  user %U s  max RSS %M KB" "$BIN" replay --quiet --dataset "$DS" "$@" | tail -n +3
}
run --policies keel-power-saving
run --policies keel-power-saving+model --model "$MODEL"
run --model "$MODEL"
run --policies keel-power-saving --scale 10
echo "== wall_s per policy over $RUNS runs of the main job"
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
i=0
while [ "$i" -lt "$RUNS" ]; do
    "$BIN" replay --quiet --json --dataset "$DS" --model "$MODEL" >>"$OUT"
    i=$((i + 1))
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
text = open(sys.argv[1]).read()
dec, i, runs = json.JSONDecoder(), 0, []
while text[i:].strip():
    i = len(text) - len(text[i:].lstrip())
    run, n = dec.raw_decode(text, i)
    runs.append(run)
    i = n
print(f"{'policy':28s} {'min':>7s} {'median':>7s} {'max':>7s}  (s, {len(runs)} runs)")
for name in runs[0]["policies"]:
    w = sorted(r["policies"][name]["wall_s"] for r in runs)
    print(f"{name:28s} {w[0]:7.3f} {statistics.median(w):7.3f} {w[-1]:7.3f}")
PY
