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

echo
echo "notebooks executed:"
printf '  %s\n' "${ran[@]}"
echo "not executed yet: notebooks/02-stability-model.ipynb (needs keel-trainer eval output)," \
  "notebooks/03-replay.ipynb (needs keel-agent replay output)"
