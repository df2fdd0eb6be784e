#!/bin/sh
# Replay benchmark: wall time and peak RSS of full-day replays (release build), printed by
# /usr/bin/time. Run from the repository root:  sh agent/benches/replay.sh
#   1. PlanetLab 20110303 on cloudsim-planetlab (800 hosts, 1052 VMs), keel-power-saving (the
#      agents negotiating in LCC over the simulated transport): target <= 1 s and <= 100 MB.
#   2. The same with the stability model (keel-power-saving+model).
#   3. The README's main job: every baseline and every Keel variant with and without the model.
#   4. Scaling: the day replicated x10 (--scale 10: 8,000 hosts, 10,520 VMs; copy j of VM v
#      has v's type and trace), keel-power-saving.
set -eu
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/keel/target}"
cargo build --release -p keel-agent --quiet
BIN="$CARGO_TARGET_DIR/release/keel-agent"
DS=datasets/planetlab-20110303.parquet
MODEL=models/stability.json
run() {
    echo "== $*"
    /usr/bin/time -f "wall %e s  user %U s  max RSS %M KB" "$BIN" replay --quiet --dataset "$DS" "$@" | tail -n +3
}
run --policies keel-power-saving
run --policies keel-power-saving+model --model "$MODEL"
run --model "$MODEL"
run --policies keel-power-saving --scale 10
