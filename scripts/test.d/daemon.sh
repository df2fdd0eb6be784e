#!/usr/bin/env bash
# The networked agent on a shipped dataset: `keel-agent cluster` starts real agents on 127.0.0.1
# (TCP, cluster key, dry-run executor, the seed LCC model) replaying PlanetLab 2011-03-03, once
# clean and once with agents killed and restarted and frames dropped and duplicated. Every run
# must migrate VMs and have no VM promised to or placed on two hosts.
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
check() { # NAME JSON
  local field
  field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1" <<<"$2"; }
  local conflicts migrations
  conflicts="$(field vm_conflicts "$2")"
  migrations="$(field migrations "$2")"
  if [ "$conflicts" = 0 ] && [ "$migrations" -gt 0 ]; then
    echo "ok: $1 (migrations $migrations, vm_conflicts 0)"
    passed=$((passed + 1))
  else
    echo "FAIL: $1: migrations $migrations, vm_conflicts $conflicts" >&2
    failed=$((failed + 1))
  fi
}
# vm_conflicts > 0 also makes the command exit non-zero; keep the JSON either way.
clean="$("$bin" cluster --agents 8 --dataset "$data" --seconds 10 --json || true)"
check "cluster, clean" "$clean"
faulty="$("$bin" cluster --agents 8 --dataset "$data" --seconds 10 --kill 0.5 --drop 0.05 --duplicate 0.05 --json || true)"
check "cluster, kills, drops and duplicates" "$faulty"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
