#!/usr/bin/env bash
# The closed loop end to end on a small slice of the shipped PlanetLab days (debug builds):
# replay with the shipped model exporting host series → train on the exports → eval on an unseen
# day's exports → replay with the new model → the before/after table. Checks that the new model
# loads (eval reads it), learnt from host rows (no placement), and that the table has every row.
#
#   bash scripts/test.d/closed-loop.sh        # run by scripts/test.sh
#   KEEL_AGENT=... KEEL_TRAINER=... bash scripts/test.d/closed-loop.sh   # with prebuilt binaries
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keel/target}"
# Prebuilt binaries (KEEL_AGENT, KEEL_TRAINER), else the debug ones scripts/test.sh's test run has
# just built (a separate `cargo build -p ...` unifies features differently and would rebuild
# polars), else build them here.
agent="${KEEL_AGENT:-$CARGO_TARGET_DIR/debug/keel-agent}"
trainer="${KEEL_TRAINER:-$CARGO_TARGET_DIR/debug/keel-trainer}"
if [ ! -x "$agent" ] || [ ! -x "$trainer" ]; then
  cargo build -q --locked -p keel-agent -p keel-trainer
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

out="$(KEEL_AGENT="$agent" KEEL_TRAINER="$trainer" \
  REPLAY_ARGS="--max-vms 150" SOURCE_DATE_EPOCH=1700000000 \
  scripts/closed-loop.sh --work "$work" --out "$work/m.json" datasets/planetlab-20110303.parquet \
  --check datasets/planetlab-20110306.parquet -- --threshold-by inner 2>"$work/stderr")" \
  || { cat "$work/stderr" >&2; fail "closed-loop.sh failed"; }
echo "$out"
rows="$(grep -c '→' <<<"$out" || true)"
[ "$rows" = 4 ] || fail "expected 4 before/after rows (2 days × 2 policies), got $rows"
grep -q 'planetlab-20110306 (unseen)' <<<"$out" || fail "the check day is not marked unseen"
grep -q '^model ' <<<"$out" || fail "no held-out evaluation of the new model"
# Trained on the two host-level exports of the training day only: no placement was made.
python3 - "$work/m.json" <<'PY' || fail "model provenance"
import json, sys
m = json.load(open(sys.argv[1]))
files = [f["path"] for f in m["provenance"]["files"]]
assert len(files) == 2 and all("before-planetlab-20110303-" in f for f in files), files
assert m["label"]["util_threshold"] == 0.99 and m["label"]["horizon_s"] == 3600, m["label"]
assert m["feature_schema"]["window_s"] == 7200, m["feature_schema"]
PY
echo "closed loop: ok"
