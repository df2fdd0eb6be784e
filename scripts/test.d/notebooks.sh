#!/usr/bin/env bash
# Notebooks: checks that polars, pandas and DuckDB read every shipped dataset alike, then executes
# the notebooks headless (nbclient, a time limit per cell) so that a broken notebook fails the
# tests. Inputs a notebook needs that are not shipped are produced here into a temporary directory
# by the debug-built binaries and passed to it through KEEL_* variables.
#
#   bash scripts/test.d/notebooks.sh        # run by scripts/test.sh with KEEL_PYTHON set
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${KEEL_PYTHON:-python3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keel/target}"
CELL_TIMEOUT="${KEEL_NOTEBOOK_TIMEOUT:-300}"

echo "-- cross-reader check (polars, pandas/pyarrow, DuckDB)"
"$PY" scripts/check_readers.py

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
ran=()
run_nb() { # run_nb LABEL NOTEBOOK [VAR=VALUE ...]: execute one notebook with extra environment
  local label="$1" nb="$2"
  shift 2
  echo "-- $nb ($label)"
  env "$@" "$PY" notebooks/execute.py --timeout "$CELL_TIMEOUT" "$nb"
  ran+=("$nb ($label)")
}

# 01: a shipped dataset each of PlanetLab (MIPS, CPU only) and Bitbrains (MHz, gaps, four dimensions).
run_nb planetlab-20110303 notebooks/01-datasets.ipynb KEEL_DATASET=datasets/planetlab-20110303.parquet
run_nb bitbrains-rnd-2013-07 notebooks/01-datasets.ipynb KEEL_DATASET=datasets/bitbrains-rnd-2013-07.parquet

# 02: the shipped model (or, without one, a model trained here on 20110303), evaluated by
# `keel-trainer eval --json` on every row of a PlanetLab day and of Bitbrains, so that the
# notebook's rebuilt figures must match the trainer's exactly.
trainer=(cargo run -q --locked -p keel-trainer --)
model=models/stability.json
if [ ! -f "$model" ]; then
  echo "-- no $model yet: training one on datasets/planetlab-20110303.parquet"
  model="$work/stability.json"
  "${trainer[@]}" train --data datasets/planetlab-20110303.parquet -o "$model"
fi
# Which rows each file gives: all of them when the model never saw the file, else --all-rows
# (without it eval scores only the held-out side, which the notebook does not rebuild).
eval_flags() {
  "$PY" - "$model" "$1" <<'PY'
import hashlib, json, sys
trained = {f["sha256"] for f in json.load(open(sys.argv[1]))["provenance"]["files"]}
print("--all-rows" if hashlib.sha256(open(sys.argv[2], "rb").read()).hexdigest() in trained else "")
PY
}
for eval_data in datasets/planetlab-20110306.parquet datasets/bitbrains-rnd-2013-07.parquet; do
  flags="$(eval_flags "$eval_data")"
  out="$work/eval-$(basename "$eval_data" .parquet).json"
  echo "-- keel-trainer eval --model $model --data $eval_data $flags --json"
  # shellcheck disable=SC2086 # flags is empty or one flag
  "${trainer[@]}" eval --model "$model" --data "$eval_data" $flags --json > "$out"
  run_nb "$(basename "$model") on $(basename "$eval_data" .parquet)" notebooks/02-stability-model.ipynb \
    KEEL_MODEL="$model" KEEL_EVAL_JSON="$out" KEEL_DATASET="$eval_data"
done

# 03: the main job's replay, kept small for a debug build: CloudSim's scenario on 20110303 with the
# no-migration baseline, THR-MMT-0.8 and the cheapest Keel variant with and without the model
# (about 30 s; the whole default set takes about 3 min in debug), writing JSON (with each policy's
# per-interval series), CSV, the per-interval series as CSV, the migration log and one policy's host
# series into one folder.
replay_dir="$work/replay"
mkdir -p "$replay_dir"
echo "-- keel-agent replay (no-migration, thr-mmt-0.8, keel-peer-group, keel-peer-group+model)"
cargo run -q --locked -p keel-agent -- replay --dataset datasets/planetlab-20110303.parquet \
  --scenario cloudsim-planetlab --model "$model" \
  --policies no-migration,thr-mmt-0.8,keel-peer-group,keel-peer-group+model \
  --json --csv "$replay_dir/replay.csv" \
  --steps-csv "$replay_dir/steps.csv" --migrations-csv "$replay_dir/migrations.csv" \
  --export-hosts "$replay_dir/hosts.parquet" --export-policy keel-peer-group+model \
  --quiet > "$replay_dir/replay.json"
echo "-- cross-reader check of the replay's host-series export"
"$PY" scripts/check_readers.py "$replay_dir/hosts.parquet"
run_nb "planetlab-20110303, 4 policies" notebooks/03-replay.ipynb \
  KEEL_REPLAY_JSON="$replay_dir/replay.json" KEEL_REPLAY_DIR="$replay_dir"

echo
echo "notebooks executed:"
printf '  %s\n' "${ran[@]}"
