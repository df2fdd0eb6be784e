#!/usr/bin/env python3
"""Open every canonical Parquet file with polars, pandas (pyarrow) and DuckDB and check they agree.

For each file (default: every datasets/*.parquet; or the paths given as arguments) the three
readers must report the same rows, the same columns in the same order, the same null count per
column, the same sum of every numeric column (relative tolerance 1e-9: summation order differs),
the same first and last timestamp and the same number of distinct VMs and hosts. The key-value
metadata must hold `keel.schema_version` = 1 and a `keel.inventory` JSON that parses, with a known
CPU unit, unique positive VMs and hosts, and every `vm_id` in the data listed in it.

    python scripts/check_readers.py [FILE.parquet ...]

Exit status 1 with one line per disagreement when anything differs; 2 when there is nothing to check.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow.parquet as pq

SCHEMA_VERSION = "1"
CPU_UNITS = {"mips", "mhz"}
FIRST_COLUMNS = ["ts", "host_id", "vm_id"]
METRIC_COLUMNS = [
    "cpu_util", "cpu_demand", "mem_used_mib", "net_rx_kib_s", "net_tx_kib_s",
    "disk_read_kib_s", "disk_write_kib_s", "cpu_steal", "cpu_iowait", "cpu_delay",
    "psi_cpu_some", "psi_mem_some", "psi_mem_full", "psi_io_some", "psi_io_full",
]  # fmt: skip


def summary_polars(path: Path) -> dict:
    df = pl.read_parquet(path)
    num = [c for c, t in df.schema.items() if t.is_numeric()]
    return {
        "rows": df.height,
        "columns": df.columns,
        "nulls": {c: int(df[c].null_count()) for c in df.columns},
        "sums": {c: float(df[c].sum() or 0.0) for c in num},
        "ts": (df["ts"].min().timestamp() * 1000, df["ts"].max().timestamp() * 1000),
        "vms": df["vm_id"].drop_nulls().n_unique(),
        "hosts": df["host_id"].drop_nulls().n_unique(),
    }


def summary_pandas(path: Path) -> dict:
    df = pd.read_parquet(path, engine="pyarrow")
    num = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c].dtype)]
    ts = df["ts"]
    return {
        "rows": len(df),
        "columns": list(df.columns),
        "nulls": {c: int(df[c].isna().sum()) for c in df.columns},
        "sums": {c: float(df[c].sum(skipna=True)) for c in num},
        "ts": (ts.min().timestamp() * 1000, ts.max().timestamp() * 1000),
        "vms": int(df["vm_id"].dropna().nunique()),
        "hosts": int(df["host_id"].dropna().nunique()),
    }


def summary_duckdb(path: Path) -> dict:
    con = duckdb.connect()
    src = f"read_parquet('{path.as_posix()}')"
    cols = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
    names = [c[0] for c in cols]
    numeric = [c[0] for c in cols if c[1] in ("DOUBLE", "FLOAT", "BIGINT", "INTEGER")]
    q = ", ".join(
        [f'count(*) - count("{c}")' for c in names]
        + [f'coalesce(sum("{c}"), 0)::DOUBLE' for c in numeric]
        + ["epoch_ms(min(ts)), epoch_ms(max(ts))", "count(DISTINCT vm_id)", "count(DISTINCT host_id)"]
    )
    row = con.execute(f"SELECT count(*), {q} FROM {src}").fetchone()
    n = len(names)
    nulls = dict(zip(names, row[1 : 1 + n]))
    sums = dict(zip(numeric, row[1 + n : 1 + n + len(numeric)]))
    rest = row[1 + n + len(numeric) :]
    return {
        "rows": row[0],
        "columns": names,
        "nulls": {k: int(v) for k, v in nulls.items()},
        "sums": {k: float(v) for k, v in sums.items()},
        "ts": (float(rest[0]), float(rest[1])),
        "vms": int(rest[2]),
        "hosts": int(rest[3]),
    }


def check_metadata(path: Path, vm_ids: set[str]) -> list[str]:
    """Problems with the schema version and inventory, read through pyarrow and DuckDB."""
    problems = []
    kv = pq.read_metadata(path).metadata or {}
    version = kv.get(b"keel.schema_version", b"").decode()
    if version != SCHEMA_VERSION:
        problems.append(f"keel.schema_version is {version!r}, expected {SCHEMA_VERSION!r}")
    raw = kv.get(b"keel.inventory")
    if raw is None:
        return problems + ["no keel.inventory metadata"]
    via_duckdb = duckdb.execute(
        "SELECT value FROM parquet_kv_metadata(?) WHERE key = 'keel.inventory'", [path.as_posix()]
    ).fetchone()
    if via_duckdb is None or bytes(via_duckdb[0]) != raw:
        problems.append("DuckDB reads a different keel.inventory than pyarrow")
    try:
        inv = json.loads(raw)
    except json.JSONDecodeError as e:
        return problems + [f"keel.inventory is not JSON: {e}"]
    if inv.get("cpu_unit") not in CPU_UNITS:
        problems.append(f"inventory cpu_unit {inv.get('cpu_unit')!r} not one of {sorted(CPU_UNITS)}")
    seen = set()
    for i, vm in enumerate(inv.get("vms", [])):
        vid = vm.get("id")
        if vid in seen:
            problems.append(f"inventory vms[{i}]: duplicate id {vid!r}")
        seen.add(vid)
        if not (vm.get("vcpus", 0) > 0 and vm.get("cpu_per_vcpu", 0) > 0 and vm.get("mem_mib", 0) > 0):
            problems.append(f"inventory vms[{i}] ({vid!r}): non-positive capacity")
    for i, h in enumerate(inv.get("hosts", [])):
        if not (h.get("cores", 0) > 0 and h.get("cpu_per_core", 0) > 0 and h.get("mem_mib", 0) > 0):
            problems.append(f"inventory hosts[{i}] ({h.get('id')!r}): non-positive capacity")
    missing = vm_ids - seen
    if missing:
        problems.append(f"{len(missing)} vm_id(s) in the data are not in the inventory, e.g. {sorted(missing)[0]!r}")
    return problems


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def compare(path: Path) -> list[str]:
    summaries = {
        "polars": summary_polars(path),
        "pandas": summary_pandas(path),
        "duckdb": summary_duckdb(path),
    }
    ref_name, ref = "polars", summaries["polars"]
    problems = []
    expected_cols = FIRST_COLUMNS + METRIC_COLUMNS
    if ref["columns"] != expected_cols:
        problems.append(f"columns {ref['columns']} are not the canonical {expected_cols}")
    for name, s in summaries.items():
        if name == ref_name:
            continue
        for key in ("rows", "columns", "nulls", "vms", "hosts"):
            if s[key] != ref[key]:
                problems.append(f"{key}: {name} {s[key]} != {ref_name} {ref[key]}")
        if not all(close(a, b) for a, b in zip(s["ts"], ref["ts"])):
            problems.append(f"ts range: {name} {s['ts']} != {ref_name} {ref['ts']}")
        if s["sums"].keys() != ref["sums"].keys():
            problems.append(f"numeric columns: {name} {sorted(s['sums'])} != {ref_name} {sorted(ref['sums'])}")
        for c, v in ref["sums"].items():
            if c in s["sums"] and not close(s["sums"][c], v):
                problems.append(f"sum({c}): {name} {s['sums'][c]!r} != {ref_name} {v!r}")
    vm_ids = set(pl.read_parquet(path, columns=["vm_id"])["vm_id"].drop_nulls().unique().to_list())
    problems += check_metadata(path, vm_ids)
    return problems


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    files = [Path(a) for a in argv] or sorted((root / "datasets").glob("*.parquet"))
    if not files:
        print("check_readers: no Parquet files to check", file=sys.stderr)
        return 2
    failed = 0
    for f in files:
        try:
            problems = compare(f)
        except Exception as e:  # a reader that cannot open the file is a disagreement too
            problems = [f"{type(e).__name__}: {e}"]
        if problems:
            failed += 1
            for p in problems:
                print(f"{f}: {p}", file=sys.stderr)
        else:
            s = summary_polars(f)
            print(f"{f}: polars, pandas and DuckDB agree ({s['rows']} rows, {s['vms']} VMs, "
                  f"{sum(s['nulls'].values())} nulls, {len(s['sums'])} numeric sums); inventory ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
