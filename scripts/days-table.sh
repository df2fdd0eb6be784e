#!/usr/bin/env bash
# Replays each PlanetLab day file given (CloudSim's scenario) with CloudSim's LR-MMT-1.2 and
# IQR-MMT-1.5 and Keel's policies with and without the stability model, and prints one
# Markdown table: energy, migrations, SLAV, thrash, migrations as a share of LR-MMT-1.2's, and
# whether the goals hold (energy <= LR-MMT-1.2, SLAV <= IQR-MMT-1.5, migrations <= 1/10 of
# LR-MMT-1.2; model on vs off: migrations and thrash -30 % or better at <= +2 % energy).
#
#   scripts/days-table.sh [--model FILE] [--model-consult optional|every|consolidation] [--out DIR] DAY.parquet...
#
# Uses $KEEL_AGENT if set, else the release binary under $CARGO_TARGET_DIR (or target/),
# building it when missing. The days other than the shipped two come from the shared tarball:
#   keel-trainer import planetlab 20110309 -o planetlab-20110309.parquet   (see datasets/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
model=models/stability.json
consult=optional
out=$(mktemp -d)
while [[ $# -gt 0 ]]; do
    case $1 in
        --model) model=$2; shift 2 ;;
        --model-consult) consult=$2; shift 2 ;;
        --out) out=$2; mkdir -p "$out"; shift 2 ;;
        *) break ;;
    esac
done
[[ $# -gt 0 ]] || { echo "usage: $0 [--model FILE] [--model-consult optional|every|consolidation] [--out DIR] DAY.parquet..." >&2; exit 2; }
bin=${KEEL_AGENT:-${CARGO_TARGET_DIR:-target}/release/keel-agent}
if [[ ! -x $bin ]]; then
    cargo build --release --locked -p keel-agent >&2
fi
policies=lr-mmt-1.2,iqr-mmt-1.5
for v in power-saving peer-group auction; do
    policies+=",keel-$v,keel-$v+model"
done
for day in "$@"; do
    name=$(basename "$day" .parquet)
    "$bin" replay --dataset "$day" --scenario cloudsim-planetlab --model "$model" \
        --model-consult "$consult" --policies "$policies" --json --quiet > "$out/$name.json"
done
python3 - "$out" "$@" <<'PY'
import json, os, sys
out, days = sys.argv[1], sys.argv[2:]
print("| day | policy | energy kWh | migrations | SLAV ×1e-5 | thrash | migr. / LR-MMT | goals (E, SLAV, 1/10) | model vs off: migr., thrash, energy |")
print("|---|---|---|---|---|---|---|---|---|")
for d in days:
    name = os.path.basename(d)[:-len(".parquet")]
    j = json.load(open(os.path.join(out, name + ".json")))
    p = j["policies"]
    lr, iqr = p["lr-mmt-1.2"], p["iqr-mmt-1.5"]
    for n in j["order"]:
        x = p[n]
        e, m, s, t = x["energy_kwh"], x["migrations"], x["slav"] * 1e5, x["thrash_migrations"]
        goals = vs = ""
        if n.startswith("keel-"):
            ok = [e <= lr["energy_kwh"], x["slav"] <= iqr["slav"], m * 10 <= lr["migrations"]]
            goals = " ".join("yes" if g else "no" for g in ok)
            if n.endswith("+model"):
                off = p[n[: -len("+model")]]
                dm = m / off["migrations"] - 1 if off["migrations"] else 0.0
                dt = t / off["thrash_migrations"] - 1 if off["thrash_migrations"] else 0.0
                de = e / off["energy_kwh"] - 1
                vs = f"{dm:+.0%}, {dt:+.0%}, {de:+.1%}"
        day = name.replace("planetlab-", "")
        print(f"| {day} | {n} | {e:.2f} | {m:,} | {s:.2f} | {t:,} | {m / lr['migrations']:.3f} | {goals} | {vs} |")
PY
