#!/usr/bin/env bash
# Real agents against the replay on one small scenario: `keel-agent replay` runs 30 hosts of
# CloudSim's PlanetLab data centre, 39 VMs of 2011-03-03 (evenly spaced) and the first 36 interval
# updates (3 hours), and writes that scenario with its initial placement (`--export-placement`);
# `keel-agent cluster --placement` runs it with 30 real agents over TCP on 127.0.0.1 (directory
# membership, one evaluation per trace step, 1 s per step). For power-saving and peer-group the
# cluster's migrations and energy must land within the tolerance below of the replay's; and the
# check must fail when the two sides run different models.
#
# Tolerance, from the cluster's measured run-to-run spread on this 2-core machine under load (9
# runs of each model, and the CI runs since; the figures are in the notes on issue 12): within
# 0.4x..2.5x of the replay's migrations (measured 0.55..0.83x for power-saving, 0.83..1.63x for peer-group:
# a CI run saw 1.63x, past the first bound of 1.6x, so the band now leaves room on both sides),
# and energy saved against the same placement without migration (1 - E / E_static, both sides by
# the replay engine's power rule) within 0.5 of the replay's saving (measured 0.05..0.28 below it
# for power-saving, 0.12..0.39 for peer-group). Real agents tick on their own timers and see their
# peers through a directory refreshed every 150 ms, so they consolidate one to four steps later
# than the replay, whose agents all tick together over an exact view; that lag, not the policy, is
# most of the gap. The check must fail when the two sides run different models: the cluster's
# power-saving run against the replay's auction (10 migrations, saves 0.20, where the replay's
# power-saving moves 71 and saves 0.84; the cluster's power-saving moved 39..59, 3.9..5.9x).
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
"$bin" replay "${small[@]}" --policies keel-power-saving,keel-peer-group,keel-auction \
  --export-placement "$tmp/placement.json" --json >"$tmp/replay.json"
cluster() { # MODEL
  "$bin" cluster --dataset "$data" --placement "$tmp/placement.json" --directory --speedup 300 \
    --interaction-model "agent/protocols/$1.lcc" --json 2>"$tmp/cluster-$1.log" ||
    { cat "$tmp/cluster-$1.log" >&2; return 1; }
}
passed=0
failed=0
# compare NAME REPLAY_POLICY CLUSTER_JSON EXPECT: EXPECT is "within" or "outside" the tolerance;
# a missing or malformed report fails either way.
compare() {
  local name="$1" policy="$2" json="$3" expect="$4" rc=0
  python3 - "$tmp/replay.json" "$json" "$policy" <<'PY' || rc=$?
import json, sys
r = json.load(open(sys.argv[1]))["policies"][sys.argv[3]]
c = json.loads(sys.argv[2])
static = c["static_energy_kwh"]
save_r = 1 - r["energy_kwh"] / static
save_c = 1 - c["energy_kwh"] / static
ratio = c["migrations"] / max(r["migrations"], 1)
within = c["vm_conflicts"] == 0 and 0.4 <= ratio <= 2.5 and abs(save_c - save_r) <= 0.5
print(f"  replay {sys.argv[3]}: {r['migrations']} migrations, {r['energy_kwh']:.3f} kWh (saves {save_r:.2f}); "
      f"cluster {c['interaction_model']}: {c['migrations']} migrations ({ratio:.2f}x), "
      f"{c['energy_kwh']:.3f} kWh (saves {save_c:.2f}); without migration {static:.3f} kWh; "
      f"vm_conflicts {c['vm_conflicts']}")
sys.exit(0 if within else 3)
PY
  if { [ "$rc" = 0 ] && [ "$expect" = within ]; } || { [ "$rc" = 3 ] && [ "$expect" = outside ]; }; then
    echo "ok: $name"
    passed=$((passed + 1))
  else
    echo "FAIL: $name" >&2
    failed=$((failed + 1))
  fi
}
ps="$(cluster power-saving)" || ps=""
compare "power-saving: cluster within tolerance of the replay" keel-power-saving "$ps" within
compare "peer-group: cluster within tolerance of the replay" keel-peer-group \
  "$(cluster peer-group)" within
compare "a different model on one side (cluster power-saving, replay auction) is out of tolerance" \
  keel-auction "$ps" outside
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
