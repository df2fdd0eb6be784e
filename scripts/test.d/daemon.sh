#!/usr/bin/env bash
# The networked agent on a shipped dataset: `keel-agent cluster` starts real agents on 127.0.0.1
# (TCP, cluster key, dry-run executor) replaying PlanetLab 2011-03-03, with every interaction model
# a fleet can run (the seed model, then agent/protocols/*.lcc), with agents killed and restarted
# and frames dropped and duplicated. Every run must migrate VMs, have no VM promised to or placed
# on two hosts, and show the model's own messages crossing TCP (`lcc_messages`).
#
#   bash scripts/test.d/daemon.sh        # run by scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keel/target}"
cargo build -q --locked -p keel-agent --bin keel-agent
bin="$CARGO_TARGET_DIR/debug/keel-agent"
data=datasets/planetlab-20110303.parquet
[ -f "$data" ] || { echo "FAIL: $data missing" >&2; exit 1; }
passed=0
failed=0
# check NAME JSON MESSAGE...: migrations > 0, vm_conflicts 0, each MESSAGE sent at least once.
check() {
  local name="$1" json="$2"
  shift 2
  if python3 - "$json" "$@" <<'PY'
import json, sys
d = json.loads(sys.argv[1])
want = sys.argv[2:]
lcc = d.get("lcc_messages", {})
missing = [m for m in want if lcc.get(m, 0) == 0]
ok = d["vm_conflicts"] == 0 and d["migrations"] > 0 and not missing
print(f"  migrations {d['migrations']}, vm_conflicts {d['vm_conflicts']}, kills {d['kills']}, "
      f"model messages {lcc}" + (f", missing {missing}" if missing else ""))
sys.exit(0 if ok else 1)
PY
  then
    echo "ok: $name"
    passed=$((passed + 1))
  else
    echo "FAIL: $name" >&2
    failed=$((failed + 1))
  fi
}
run() { # MODEL_ARGS... ; vm_conflicts > 0 also makes the command exit non-zero: keep the JSON.
  "$bin" cluster --agents 20 --dataset "$data" --seconds 12 --kill 0.05 --drop 0.02 \
    --duplicate 0.02 --json "$@" || true
}
check "cluster, seed model, kills, drops and duplicates" "$(run)" readyToMigrate migration
check "cluster, power-saving" "$(run --interaction-model agent/protocols/power-saving.lcc)" \
  readyToMigrate migration
check "cluster, agility" "$(run --interaction-model agent/protocols/agility.lcc)" \
  readyToMigrate migration
check "cluster, auction" "$(run --interaction-model agent/protocols/auction.lcc)" \
  callForBids bid award accept
check "cluster, peer-group" "$(run --interaction-model agent/protocols/peer-group.lcc)" \
  request offer
clean="$("$bin" cluster --agents 20 --dataset "$data" --seconds 12 --directory \
  --interaction-model agent/protocols/power-saving.lcc --json || true)"
check "cluster, directory membership, power-saving, clean" "$clean" readyToMigrate migration
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
