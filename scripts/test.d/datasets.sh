#!/usr/bin/env bash
# Importers on real traces beyond the shipped ones: every PlanetLab day and both Bitbrains Rnd
# months in ../shared/datasets go through `keel-trainer import`, with row counts checked against
# counts taken from the raw files by awk; then the shipped datasets are re-made and compared
# byte for byte. Skipped (exit 0) when ../shared is absent: the project's own tests never need it.
#
#   bash scripts/test.d/datasets.sh        # run by scripts/test.sh
#   KEEL_TRAINER=path/to/keel-trainer bash scripts/test.d/datasets.sh   # with a prebuilt binary
set -euo pipefail
cd "$(dirname "$0")/../.."
shared=../shared/datasets
if [ ! -d "$shared" ]; then
  echo "skipped: $shared not found"
  exit 0
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keel/target}"
bin="${KEEL_TRAINER:-}" # a prebuilt keel-trainer, or build the debug one
if [ -z "$bin" ]; then
  cargo build -q --locked -p keel-trainer
  bin="$CARGO_TARGET_DIR/debug/keel-trainer"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar -xJf "$shared/planetlab/planetlab-2011-03.tar.xz" -C "$work"
for m in 7 8; do tar --zstd -xf "$shared/bitbrains-rnd/rnd-2013-$m.tar.zst" -C "$work"; done

fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_rows OUTPUT_LINE ROWS VMS: the importer's "wrote …: R rows, V VMs" line.
expect_rows() {
  [[ "$1" == *": $2 rows, $3 VMs" ]] || fail "expected $2 rows, $3 VMs; got: $1"
  echo "ok: $1"
}

# PlanetLab: any day gives 288 × files rows.
for day in "$work"/2011*; do
  n=$(find "$day" -maxdepth 1 -type f | wc -l)
  out=$("$bin" import planetlab "$day" -o "$work/pl.parquet" --zstd-level 3)
  expect_rows "$out" $((288 * n)) "$n"
done

# Bitbrains: every month; a VM's rows run from the first 300 s grid point at or after its first
# sample to the last one at or before its last sample (placeholder-only VMs would be left out:
# there are none in these months).
for m in 7 8; do
  month="$work/rnd/2013-$m"
  n=$(find "$month" -maxdepth 1 -name '*.csv' | wc -l)
  rows=$(for f in "$month"/*.csv; do
    awk -F';' 'NR == 2 { first = $1 + 0 } NR > 1 { last = $1 + 0 }
      END { s = int((first + 299) / 300) * 300; e = int(last / 300) * 300; print (e - s) / 300 + 1 }' "$f"
  done | awk '{ t += $1 } END { print t }')
  out=$("$bin" import bitbrains "$month" -o "$work/bb.parquet" --zstd-level 3)
  expect_rows "$out" "$rows" "$n"
done

# The shipped files are reproducible byte for byte (commands from datasets/README.md).
"$bin" import planetlab "$work/20110303" -o "$work/planetlab-20110303.parquet" >/dev/null
"$bin" import planetlab "$work/20110306" -o "$work/planetlab-20110306.parquet" >/dev/null
"$bin" import bitbrains "$work/rnd/2013-7" -o "$work/bitbrains-rnd-2013-07.parquet" \
  --max-vms 100 --from 2013-07-01 --until 2013-07-15 >/dev/null
for f in planetlab-20110303 planetlab-20110306 bitbrains-rnd-2013-07; do
  cmp -s "$work/$f.parquet" "datasets/$f.parquet" || fail "datasets/$f.parquet differs from a fresh import"
  echo "ok: datasets/$f.parquet re-made identically"
done
