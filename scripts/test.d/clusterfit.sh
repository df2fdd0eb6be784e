#!/usr/bin/env bash
# Real agents against the replay on one small scenario: `keel-agent replay` runs 30 hosts of
# CloudSim's PlanetLab data centre, 39 VMs of 2011-03-03 (evenly spaced) and the first 36 interval
# updates (3 hours), and writes that scenario with its initial placement (`--export-placement`);
# `keel-agent cluster --placement` runs it with 30 real agents over TCP on 127.0.0.1 (directory
# membership, one evaluation per trace step, 1 s per step). For power-saving and peer-group the
# cluster's migrations and energy must land within the tolerance below of the replay's; and the
# check must fail when the cluster runs another model (agility) than the replay (power-saving).
#
# Tolerance, from measured run-to-run spread of the cluster (see the project's notes on issue 12):
# migrations within 0.4x..1.8x of the replay's, and energy saved against the same placement
# without migration (1 - E / E_static) within 0.35 of the replay's saving. Real agents tick on
# their own timers, see peers through a directory refreshed every 150 ms and migrate at once; the
# replay ticks all hosts together over an exact view and migrations take seconds. So they agree
# on the scale of consolidation, not figure for figure.
#
#   bash scripts/test.d/clusterfit.sh        # run by scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keel/target}"
cargo build -q --locked -p keel-agent --bin keel-agent
bin="$CARGO_TARGET_DIR/debug/keel-agent"
data=datasets/planetlab-20110303.parquet
[ -f "$data" ] || { echo "FAIL: $data missing" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
small=(--dataset "$data" --hosts 30 --steps 36 --max-vms 40 --seed 1 --quiet)
"$bin" replay "${small[@]}" --policies no-migration,keel-power-saving,keel-peer-group \
  --export-placement "$tmp/placement.json" --json >"$tmp/replay.json"
cluster() { # MODEL
  "$bin" cluster --dataset "$data" --placement "$tmp/placement.json" --directory --speedup 300 \
    --interaction-model "agent/protocols/$1.lcc" --json
}
passed=0
failed=0
# compare NAME REPLAY_POLICY CLUSTER_JSON EXPECT(pass|fail)
compare() {
  local name="$1" policy="$2" json="$3" expect="$4"
  if python3 - "$tmp/replay.json" "$tmp/placement.json" "$json" "$policy" "$expect" <<'PY'
import json, sys
replay = json.load(open(sys.argv[1]))["policies"]
placement = json.load(open(sys.argv[2]))
c = json.loads(sys.argv[3])
policy, expect = sys.argv[4], sys.argv[5]
r = replay[policy]
static = c["static_energy_kwh"]
save_r = 1 - r["energy_kwh"] / static
save_c = 1 - c["energy_kwh"] / static
ratio = c["migrations"] / max(r["migrations"], 1)
ok = c["vm_conflicts"] == 0 and 0.4 <= ratio <= 1.8 and abs(save_c - save_r) <= 0.35
print(f"  replay {policy}: {r['migrations']} migrations, {r['energy_kwh']:.3f} kWh (saves {save_r:.2f}); "
      f"cluster {c['interaction_model']}: {c['migrations']} migrations ({ratio:.2f}x), "
      f"{c['energy_kwh']:.3f} kWh (saves {save_c:.2f}); without migration {static:.3f} kWh; "
      f"vm_conflicts {c['vm_conflicts']}")
sys.exit(0 if ok == (expect == "pass") else 1)
PY
  then
    echo "ok: $name"
    passed=$((passed + 1))
  else
    echo "FAIL: $name" >&2
    failed=$((failed + 1))
  fi
}
compare "power-saving: cluster within tolerance of the replay" keel-power-saving \
  "$(cluster power-saving)" pass
compare "peer-group: cluster within tolerance of the replay" keel-peer-group \
  "$(cluster peer-group)" pass
compare "a different model on one side (cluster agility, replay power-saving) is out of tolerance" \
  keel-power-saving "$(cluster agility)" fail
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
