#!/usr/bin/env bash
# A longer run of keel-lcc's differential test against the OpenKnowledge LCC parser
# (lcc/tests/ok_diff): COUNT generated texts for each SEED, in one JVM per seed. The test command
# runs one seed and 3,000 texts; this runs more. Needs java (default-jre-headless) and
# ../shared/oracles/openknowledge-lcc (or KEEL_OK_ORACLE); fails, rather than skips, without them.
#
#   scripts/lcc-diff-long.sh                  # 20,000 texts for each of 5 seeds
#   scripts/lcc-diff-long.sh 50000 1 2 3      # 50,000 texts for seeds 1, 2 and 3
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keel/target}"
count="${1:-20000}"
shift || true
seeds=("$@")
((${#seeds[@]})) || seeds=(1 2 3 4 5)
cargo build -q --locked -p keel-lcc --tests
export KEEL_LCC_DIFF_REQUIRE=1 KEEL_LCC_DIFF_COUNT="$count"
total=0
for seed in "${seeds[@]}"; do
  out="$(KEEL_LCC_DIFF_SEED="$seed" cargo test -q --locked -p keel-lcc --test ok_diff \
    generated_texts_against_ok -- --exact --nocapture 2>&1)" || {
    echo "$out" >&2
    echo "FAIL: seed $seed" >&2
    exit 1
  }
  grep -E '^seed ' <<<"$out"
  total=$((total + count))
done
echo "lcc-diff-long: $total texts compared over ${#seeds[@]} seeds, no difference outside the documented extensions"
