#!/usr/bin/env bash
# End-to-end trainer benchmark on two months of Bitbrains Rnd (July and August 2013, ~8.2 M rows):
# import (not timed as part of the target), then `train` (load, place, features, labels, inner
# fit, fit, held-out evaluation) and `eval`, each timed with /usr/bin/time.
#
# Usage: scripts/bench_trainer_e2e.sh [path/to/keel-trainer] [workdir]
# Needs ../shared/datasets/bitbrains-rnd/rnd-2013-{7,8}.tar.zst. Build first, in release:
#   CARGO_TARGET_DIR=/root/.cache/keel/target-release-trainer cargo build --release -p keel-trainer
set -euo pipefail
KT=${1:-/root/.cache/keel/target-release-trainer/release/keel-trainer}
WORK=${2:-/tmp/keel-bench-bitbrains}
SRC=$(cd "$(dirname "$0")/.." && pwd)/../shared/datasets/bitbrains-rnd
mkdir -p "$WORK" && cd "$WORK"
for m in 7 8; do
  [ -d rnd/2013-$m ] || tar --zstd -xf "$SRC/rnd-2013-$m.tar.zst"
  [ -f rnd-2013-0$m.parquet ] || "$KT" import bitbrains rnd/2013-$m -o rnd-2013-0$m.parquet --zstd-level 3
done
/usr/bin/time -f 'train: %e s wall, %M KB max RSS' "$KT" train --data rnd-2013-07.parquet rnd-2013-08.parquet \
  -o bitbrains-2m.json --placement-window-s 1e9 --cv-quantile 1
/usr/bin/time -f 'eval: %e s wall, %M KB max RSS' "$KT" eval --model bitbrains-2m.json \
  --data rnd-2013-07.parquet rnd-2013-08.parquet --json > eval.json
python3 -c "import json; d=json.load(open('eval.json')); print('eval roc_auc', d['roc_auc'], 'rows', d['n'])"
