#!/usr/bin/env bash
# Closed loop: replay → export what the policies' hosts carried → train → replay with the new
# model → before/after table.
#
#   scripts/closed-loop.sh [options] TRAIN_DAY.parquet... [--check CHECK_DAY.parquet...]
#
# For every day (training and check days alike) and each policy in $POLICIES, one
# `keel-agent replay --policies P --model MODEL_IN --export-hosts` run writes the host-level
# series of that policy (canonical schema, `vm_id` null) and its `--json` results ("before").
# `keel-trainer train` then learns from the exports of the TRAINING days only (plus, with
# --with-traces, the VM traces themselves, placed by the trainer), with the closed-loop label:
# a host is unstable at t if a 10-minute mean of its CPU utilisation reaches $UTIL (default 0.99:
# the export records the CPU the host allocated, which stops at its capacity, so ≥ 0.99 for
# 10 minutes means demand at or beyond capacity) within the next $HORIZON_S seconds (default
# 1 h), over a $WINDOW_S history window (default 2 h, which the replay's VM histories cover).
# `keel-trainer eval` scores the new model on the check days' exports (held out), then every day
# is replayed with the new model ("after") and the before/after table printed.
#
# Options:
#   --model FILE     model the "before" replays use (default models/stability.json)
#   --out FILE       the new model (default $WORK/stability.json)
#   --work DIR       exports, JSON results, logs (default a new temporary directory); runs whose
#                    results are already there are not repeated (use a new folder for a new model)
#   --with-traces    also train on the training days' VM traces
#   --check DAY...   days replayed before/after but never trained on
#   -- ARGS...       extra arguments for `keel-trainer train` (after everything else)
#
# Environment: POLICIES (default keel-power-saving+model,keel-peer-group+model), REPLAY_ARGS (extra
# replay arguments, e.g. "--max-vms 200" for a quick run), UTIL, HORIZON_S,
# WINDOW_S, ALGO (default logistic), KEEL_AGENT / KEEL_TRAINER (binaries; default the release,
# else debug, builds under $CARGO_TARGET_DIR or ./target, else `cargo run --release`).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODEL_IN=$ROOT/models/stability.json
OUT=
WORK=
WITH_TRACES=0
TRAIN=()
CHECK=()
EXTRA=()
mode=train
while (($#)); do
    case "$1" in
        --model) MODEL_IN=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --with-traces) WITH_TRACES=1; shift ;;
        --check) mode=check; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "closed-loop.sh: unknown option $1" >&2; exit 2 ;;
        *) if [[ $mode == train ]]; then TRAIN+=("$1"); else CHECK+=("$1"); fi; shift ;;
    esac
done
if ((${#TRAIN[@]} == 0)); then
    echo "closed-loop.sh: give at least one training day (a canonical Parquet file)" >&2
    exit 2
fi
for f in "${TRAIN[@]}" "${CHECK[@]}" "$MODEL_IN"; do
    [[ -r $f ]] || { echo "closed-loop.sh: cannot read $f" >&2; exit 2; }
done
WORK=${WORK:-$(mktemp -d -t keel-closed-loop.XXXXXX)}
mkdir -p "$WORK"
OUT=${OUT:-$WORK/stability.json}
POLICIES=${POLICIES:-keel-power-saving+model,keel-peer-group+model}
UTIL=${UTIL:-0.99}
HORIZON_S=${HORIZON_S:-3600}
WINDOW_S=${WINDOW_S:-7200}
ALGO=${ALGO:-logistic}

# A binary: $VAR if set, else the release or debug build under the target dir, else cargo run.
binary() {
    local name=$1 var=$2 t=${CARGO_TARGET_DIR:-$ROOT/target}
    if [[ -n ${!var:-} ]]; then
        echo "${!var}"
    elif [[ -x $t/release/$name ]]; then
        echo "$t/release/$name"
    elif [[ -x $t/debug/$name ]]; then
        echo "$t/debug/$name"
    else
        echo "cargo run --quiet --release --manifest-path $ROOT/Cargo.toml -p $name --"
    fi
}
AGENT=$(binary keel-agent KEEL_AGENT)
TRAINER=$(binary keel-trainer KEEL_TRAINER)
echo "agent: $AGENT; trainer: $TRAINER; work: $WORK" >&2

day_name() { basename "$1" .parquet; }

# replay DAY MODEL TAG [export]: one run per policy, results in $WORK/TAG-<day>-<policy>.json.
replay() {
    local day=$1 model=$2 tag=$3 export=${4:-} p
    IFS=, read -ra ps <<<"$POLICIES"
    for p in "${ps[@]}"; do
        local base=$WORK/$tag-$(day_name "$day")-${p//+/_}
        # Resuming in the same --work folder: a finished run is not repeated.
        if [[ -s $base.json && ( -z $export || -s $base.parquet ) ]]; then continue; fi
        local args=(replay --dataset "$day" --model "$model" --policies "$p" --json --quiet)
        # shellcheck disable=SC2206 # REPLAY_ARGS is split on purpose
        args+=(${REPLAY_ARGS:-})
        [[ -n $export ]] && args+=(--export-hosts "$base.parquet" --export-policy "$p")
        # shellcheck disable=SC2086
        $AGENT "${args[@]}" >"$base.json" 2>"$base.log" || {
            echo "closed-loop.sh: replay of $day ($p) failed, see $base.log" >&2
            exit 1
        }
    done
}

echo "before: replaying with $MODEL_IN" >&2
for d in "${TRAIN[@]}"; do replay "$d" "$MODEL_IN" before export; done
for d in "${CHECK[@]}"; do replay "$d" "$MODEL_IN" before export; done

DATA=()
for d in "${TRAIN[@]}"; do DATA+=("$WORK/before-$(day_name "$d")"-*.parquet); done
if ((WITH_TRACES)); then DATA+=("${TRAIN[@]}"); fi
echo "training on ${#DATA[@]} files" >&2
# shellcheck disable=SC2086
$TRAINER train --algo "$ALGO" --data "${DATA[@]}" --window-s "$WINDOW_S" \
    --horizon-s "$HORIZON_S" --mean-window-s 600 --util-threshold "$UTIL" --cv-quantile 1 \
    --placement-window-s 1e9 -o "$OUT" "${EXTRA[@]}" | tee "$WORK/train.txt"

if ((${#CHECK[@]})); then
    CHECK_DATA=()
    for d in "${CHECK[@]}"; do CHECK_DATA+=("$WORK/before-$(day_name "$d")"-*.parquet); done
    echo "held-out check: the new model on the check days' exports (never trained on)" >&2
    $TRAINER eval --model "$OUT" --data "${CHECK_DATA[@]}" | tee "$WORK/eval-check.txt"
fi

echo "after: replaying with $OUT" >&2
for d in "${TRAIN[@]}" "${CHECK[@]}"; do replay "$d" "$OUT" after; done

python3 - "$WORK" "$POLICIES" "${TRAIN[@]}" --check "${CHECK[@]}" <<'EOF'
import json, os, sys
work, policies, rest = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
i = rest.index("--check")
train, check = rest[:i], rest[i + 1:]
def load(tag, day, p):
    name = os.path.basename(day).removesuffix(".parquet")
    with open(os.path.join(work, f"{tag}-{name}-{p.replace('+', '_')}.json")) as f:
        return json.load(f)["policies"][p]
print(f"{'day':<22} {'policy':<24} {'energy kWh':>19} {'migrations':>15} {'SLAV':>21} {'thrash':>15}")
for day in train + check:
    name = os.path.basename(day).removesuffix(".parquet") + ("" if day in train else " (unseen)")
    for p in policies:
        b, a = load("before", day, p), load("after", day, p)
        print(f"{name:<22} {p:<24} {b['energy_kwh']:>8.2f} → {a['energy_kwh']:>8.2f} "
              f"{b['migrations']:>6} → {a['migrations']:>6} "
              f"{b['slav']:>9.3e} → {a['slav']:>9.3e} "
              f"{b['thrash_migrations']:>6} → {a['thrash_migrations']:>6}")
EOF
echo "model: $OUT" >&2
