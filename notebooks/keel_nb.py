"""Helpers shared by Keel's notebooks: input paths, the inventory, CloudSim's hosts, the trainer's
placement of VMs on hosts, and a NumPy port of keel-core's feature extraction and model scoring.

The ports follow the Rust code they name, so that a notebook can rebuild what the trainer and the
agent compute when their outputs lack a number the notebook needs:

- `place` follows `trainer/src/hosts.rs` (first-fit decreasing by first-hour mean demand on
  CloudSim's G4/G5 hosts for MIPS inventories, 2 x 8 x 2600 MHz hosts for MHz inventories),
- `extract` follows `core/src/features.rs` (`FEATURE_VERSION` 1; `check_features` tests it on the
  values of that file's unit tests),
- `future` and `labels` follow `trainer/src/label.rs`,
- `predict` follows `core/src/model.rs` (`Algorithm::predict`),
- `roc_auc`, `average_precision`, `roc_curve`, `pr_curve`, `calibration` follow
  `trainer/src/evaluate.rs`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

FEATURE_VERSION = 1
PER_DIMENSION = [
    "mean", "last", "std", "cv", "min", "max", "p90", "p95", "slope", "acf1",
    "above_0_8", "above_0_9", "thr_margin", "iqr_margin", "mad_margin", "lr_margin",
]  # fmt: skip
THR_THRESHOLD, IQR_SAFETY, MAD_SAFETY, LR_SAFETY, LR_POINTS, MAX_UTIL = 0.8, 1.5, 2.5, 1.2, 10, 10.0

G4_WATTS = [86.0, 89.4, 92.6, 96.0, 99.5, 102.0, 106.0, 108.0, 112.0, 114.0, 117.0]
G5_WATTS = [93.7, 97.0, 101.0, 105.0, 110.0, 116.0, 121.0, 125.0, 129.0, 133.0, 135.0]


# --- Paths -----------------------------------------------------------------------------------------


def repo_root(start: Path | None = None) -> Path:
    """The Keel checkout containing `start` (default: the working directory)."""
    here = (start or Path.cwd()).resolve()
    for d in [here, *here.parents]:
        if (d / "Cargo.toml").is_file() and (d / "datasets").is_dir():
            return d
    raise FileNotFoundError(f"no Keel checkout (Cargo.toml and datasets/) at or above {here}")


def input_path(env: str, default: str | Path, *, must_exist: bool = True) -> Path:
    """`$env` if set, else `default`; a relative path is relative to the checkout's root.

    Fails loudly, naming the variable, when the file is missing."""
    raw = os.environ.get(env)
    p = Path(raw) if raw else Path(default)
    if not p.is_absolute():
        p = repo_root() / p
    if must_exist and not p.exists():
        how = f"${env}={raw}" if raw else f"the default {default} (set ${env} to override)"
        raise FileNotFoundError(f"{p} does not exist: {how}")
    return p


# --- Inventory and hosts ---------------------------------------------------------------------------


def read_metadata(path: Path) -> tuple[str | None, dict]:
    """(`keel.schema_version`, parsed `keel.inventory`) of a canonical Parquet file."""
    kv = pq.read_metadata(path).metadata or {}
    version = kv.get(b"keel.schema_version")
    raw = kv.get(b"keel.inventory")
    if raw is None:
        raise ValueError(f"{path}: no keel.inventory metadata")
    return (version.decode() if version else None), json.loads(raw)


def host_spec(cpu_unit: str, i: int) -> dict:
    """Host `i` of a placement, as `trainer/src/hosts.rs::host_spec` builds it."""
    if cpu_unit == "mips":
        g5 = i % 2 == 1
        return {
            "id": f"host-{i:04d}",
            "cores": 2,
            "cpu_per_core": 2660.0 if g5 else 1860.0,
            "mem_mib": 4096.0,
            "watts": G5_WATTS if g5 else G4_WATTS,
            "host_type": "hp-proliant-ml110-g5" if g5 else "hp-proliant-ml110-g4",
        }
    return {
        "id": f"host-{i:04d}",
        "cores": 16,
        "cpu_per_core": 2600.0,
        "mem_mib": 256.0 * 1024.0,
        "watts": None,
        "host_type": "keel-2x8-2600mhz-256g",
    }


@dataclass
class VmTable:
    """VM series on one time grid (NaN where not measured), in inventory order."""

    ids: list[str]
    t0_ms: int
    step_s: float
    util: np.ndarray  # VMs x steps, cpu_util
    demand: np.ndarray  # VMs x steps, cpu_demand or cpu_util x capacity
    start: np.ndarray  # grid index of each VM's first row
    cap: np.ndarray  # CPU capacity per VM (NaN if not in the inventory)
    mem_mib: np.ndarray  # provisioned memory per VM (0 if unknown)

    @property
    def steps(self) -> int:
        return self.util.shape[1]

    def times(self) -> np.ndarray:
        return self.t0_ms + (np.arange(self.steps) * self.step_s * 1000).round().astype("int64")


def vm_table(df: pl.DataFrame, inv: dict) -> VmTable:
    """Puts a file's VM rows on a grid of the median step (last value wins in a bucket)."""
    vms = df.filter(pl.col("vm_id").is_not_null()).select(
        "vm_id", pl.col("ts").dt.epoch("ms").alias("t"), "cpu_util", "cpu_demand"
    )
    if vms.is_empty():
        raise ValueError("no VM rows")
    diffs = (
        vms.sort("vm_id", "t")
        .with_columns(pl.col("t").diff().over("vm_id").alias("d"))
        .filter(pl.col("d") > 0)["d"]
    )
    step_ms = int(diffs.median())
    t0 = int(vms["t"].min()) // step_ms * step_ms
    n_steps = (int(vms["t"].max()) - t0) // step_ms + 1
    order = {v["id"]: i for i, v in enumerate(inv.get("vms", []))}
    ids = sorted(vms["vm_id"].unique().to_list(), key=lambda v: (order.get(v, math.inf), v))
    row = {v: i for i, v in enumerate(ids)}
    spec = {v["id"]: v for v in inv.get("vms", [])}
    cap = np.array([spec[v]["vcpus"] * spec[v]["cpu_per_vcpu"] if v in spec else np.nan for v in ids])
    mem = np.array([spec[v]["mem_mib"] if v in spec else 0.0 for v in ids])
    r = vms["vm_id"].replace_strict(row, return_dtype=pl.Int64).to_numpy()
    g = ((vms["t"].to_numpy() - t0) // step_ms).astype(int)
    util = np.full((len(ids), n_steps), np.nan)
    demand = np.full((len(ids), n_steps), np.nan)
    u = vms["cpu_util"].to_numpy(allow_copy=True).astype(float)
    d = vms["cpu_demand"].to_numpy(allow_copy=True).astype(float)
    d = np.where(np.isfinite(d), d, u * cap[r])
    ok_u, ok_d = np.isfinite(u), np.isfinite(d)
    util[r[ok_u], g[ok_u]] = u[ok_u]
    demand[r[ok_d], g[ok_d]] = d[ok_d]
    start = np.full(len(ids), n_steps, dtype=int)
    np.minimum.at(start, r, g)
    return VmTable(ids, t0, step_ms / 1000.0, util, demand, start, cap, mem)


@dataclass
class Placement:
    """VMs placed on hosts, and the hosts' CPU utilisation over time."""

    hosts: list[dict]
    members: list[list[int]]  # VM rows per host
    cpu: np.ndarray  # hosts x steps: sum of VM demand / host capacity
    pack: str
    target: float
    assignment: dict[str, str] = field(default_factory=dict)


def place(t: VmTable, cpu_unit: str, target: float = 0.7, pack: str = "cpu", window_s: float = 3600.0) -> Placement:
    """First-fit decreasing by mean demand over the first `window_s` (an hour), as `keel-trainer
    hosts` does.

    A VM fits a host while the summed first-hour demand stays <= `target` x CPU capacity (and, for
    `pack="cpu-mem"`, the summed provisioned memory <= `target` x host memory); a VM that fits
    nowhere opens the next host. A VM without a measurement at a step demands nothing then.
    """
    if pack not in ("cpu", "cpu-mem"):
        raise ValueError(f"unknown packing {pack!r} (cpu or cpu-mem)")
    demand = np.nan_to_num(t.demand, nan=0.0)
    first_hour = max(1, round(window_s / t.step_s))
    sized = np.isfinite(t.demand).any(axis=1)
    key = np.array([demand[i, s : s + first_hour].mean() if s < t.steps else 0.0 for i, s in enumerate(t.start)])
    vms = sorted(np.flatnonzero(sized), key=lambda i: (-key[i], i, t.ids[i]))
    hosts: list[dict] = []
    load_cpu: list[float] = []
    load_mem: list[float] = []
    members: list[list[int]] = []
    for i in vms:
        for h, spec in enumerate(hosts):
            cap = spec["cores"] * spec["cpu_per_core"]
            if load_cpu[h] + key[i] <= target * cap and (
                pack == "cpu" or load_mem[h] + t.mem_mib[i] <= target * spec["mem_mib"]
            ):
                break
        else:
            hosts.append(host_spec(cpu_unit, len(hosts)))
            load_cpu.append(0.0)
            load_mem.append(0.0)
            members.append([])
            h = len(hosts) - 1
        load_cpu[h] += key[i]
        load_mem[h] += t.mem_mib[i]
        members[h].append(int(i))
    cpu = np.vstack([demand[m].sum(axis=0) / (s["cores"] * s["cpu_per_core"]) for s, m in zip(hosts, members)])
    assignment = {t.ids[i]: s["id"] for s, m in zip(hosts, members) for i in m}
    return Placement(hosts, members, cpu, pack, target, assignment)


# --- Features (core/src/features.rs) ---------------------------------------------------------------


# Plain Python floats and left-to-right sums, in the Rust code's order, so that scores match the
# agent's bit for bit (NumPy's pairwise sums differ in the last bits, enough to flip a tree split).


def _quantile_sorted(s: list[float], p: float) -> float:
    pos = p * (len(s) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _ls_slope(x: list[float]) -> float:
    n = len(x)
    if n < 2:
        return 0.0
    tm = (n - 1.0) / 2.0
    ym = sum(x) / n
    sxy = sxx = 0.0
    for i, y in enumerate(x):
        t = i - tm
        sxy += t * (y - ym)
        sxx += t * t
    return sxy / sxx if sxx > 0 else 0.0


def _lr_predict(x: list[float]) -> float:
    n = min(len(x), LR_POINTS)
    tail = x[len(x) - n :]
    last = tail[n - 1]
    if n < 3:
        return last

    def w(i: int) -> float:
        d = (n - 1 - i) / n
        k = 1.0 - d * d * d
        return k * k * k

    sw = swt = swy = 0.0
    for i, y in enumerate(tail):
        wi = w(i)
        sw += wi
        swt += wi * i
        swy += wi * y
    tm, ym = swt / sw, swy / sw
    sxy = sxx = 0.0
    for i, y in enumerate(tail):
        wi = w(i)
        t = i - tm
        sxy += wi * t * (y - ym)
        sxx += wi * t * t
    b = sxy / sxx if sxx > 0 else 0.0
    return ym + b * (n - tm)


def dimension_features(x: list[float], step_s: float) -> list[float]:
    """The 16 features of one cleaned window (finite, clamped), in `PER_DIMENSION` order."""
    n = len(x)
    if n == 0:
        return [0.0] * 12 + [THR_THRESHOLD, 1.0, 1.0, 1.0]
    mean = sum(x) / n
    last = x[-1]
    var = sum((v - mean) * (v - mean) for v in x) / n
    std = math.sqrt(var)
    cv = std / mean if mean > 1e-9 else 0.0
    s = sorted(x)
    q = lambda p: _quantile_sorted(s, p)  # noqa: E731
    median = q(0.5)
    iqr = q(0.75) - q(0.25)
    mad = _quantile_sorted(sorted(abs(v - median) for v in x), 0.5)
    per_hour = 3600.0 / step_s if step_s > 0 and math.isfinite(step_s) else 1.0
    slope = _ls_slope(x) * per_hour
    if n >= 3 and var > 1e-12:
        acf1 = sum((a - mean) * (b - mean) for a, b in zip(x, x[1:])) / (var * n)
    else:
        acf1 = 0.0
    above = lambda t: sum(1 for v in x if v > t) / n  # noqa: E731
    f = [
        mean, last, std, cv, s[0], s[-1], q(0.90), q(0.95), slope, acf1, above(0.8), above(0.9),
        THR_THRESHOLD - last, (1.0 - IQR_SAFETY * iqr) - last, (1.0 - MAD_SAFETY * mad) - last,
        1.0 - LR_SAFETY * _lr_predict(x),
    ]  # fmt: skip
    return [v if math.isfinite(v) else 0.0 for v in f]


def extract(series: dict[str, np.ndarray], step_s: float, schema: dict) -> list[float]:
    """`extract(&HostWindow, &FeatureSchema)`: `series` maps dimension name to its history up to now."""
    out: list[float] = []
    for dim in schema["dimensions"]:
        x = series.get(dim)
        if x is None:
            out += [0.0] * len(PER_DIMENSION)
            continue
        if step_s > 0 and math.isfinite(step_s) and math.isfinite(schema["window_s"]):
            n = int(min(max(round(schema["window_s"] / step_s), 1), len(x)))
        else:
            n = len(x)
        w = [min(max(float(v), 0.0), MAX_UTIL) for v in x[len(x) - n :] if math.isfinite(v)]
        out += dimension_features(w, step_s)
    return out


def check_features() -> None:
    """The known values of `core/src/features.rs`'s unit tests; raises if the port drifted."""
    schema = {"dimensions": ["cpu"], "window_s": 3600.0}
    f = extract({"cpu": np.array([0.1, 0.2, 0.3, 0.4, 0.5])}, 300.0, schema)
    expect = {0: 0.3, 1: 0.5, 2: math.sqrt(0.02), 4: 0.1, 5: 0.5, 6: 0.46, 8: 1.2, 12: 0.3,
              13: 1 - 1.5 * 0.2 - 0.5, 14: 1 - 2.5 * 0.1 - 0.5, 15: 1 - 1.2 * 0.6}  # fmt: skip
    for i, v in expect.items():
        assert abs(f[i] - v) < 1e-9, f"feature {PER_DIMENSION[i]}: {f[i]} != {v}"
    g = extract({"cpu": np.array([0.85, 0.95, 0.5, 0.1])}, 300.0, schema)
    assert (g[10], g[11]) == (0.5, 0.25), g[10:12]


# --- Labels (trainer/src/label.rs) -----------------------------------------------------------------


def label_steps(label: dict, step_s: float) -> tuple[int, int]:
    horizon = max(1, round(label["horizon_s"] / step_s))
    mean = min(max(1, round(label["mean_window_s"] / step_s)), horizon)
    return horizon, mean


def future(cpu: np.ndarray, t: int, horizon: int, mean: int) -> tuple[float, float] | None:
    """(highest rolling mean, CV) over the horizon after `t`; None past the end or with no values."""
    end = t + horizon
    if end >= len(cpu):
        return None
    h = cpu[t + 1 : end + 1]
    best = -math.inf
    for k in range(len(h) - mean + 1):
        w = h[k : k + mean]
        w = w[np.isfinite(w)]
        if len(w):
            best = max(best, w.mean())
    if not math.isfinite(best):
        return None
    v = h[np.isfinite(h)]
    m = v.mean()
    cv = v.std() / m if m > 1e-9 else 0.0
    return float(best), float(cv)


def host_rows(cpu: np.ndarray, step_s: float, t0_ms: int, schema: dict, label: dict, host_ids: list[str]) -> pl.DataFrame:
    """Feature rows of CPU host series as `trainer/src/dataset.rs::add_file` builds them (CPU only).

    One row per host step with a full window before it and a full horizon after it; columns:
    host_id, t_ms, max_mean, cv, then the schema's features.
    """
    horizon, mean = label_steps(label, step_s)
    need = max(1, round(schema["window_s"] / step_s))
    rows = []
    for h, series in enumerate(cpu):
        for t in range(need - 1, len(series)):
            if not math.isfinite(series[t]):
                continue
            fu = future(series, t, horizon, mean)
            if fu is None:
                continue
            x = extract({"cpu": series[: t + 1]}, step_s, schema)
            rows.append([host_ids[h], t0_ms + round(t * step_s * 1000), fu[0], fu[1], *x])
    names = ["host_id", "t_ms", "max_mean", "cv", *schema["names"]]
    return pl.DataFrame(rows, schema=names, orient="row")


def unstable(max_mean: np.ndarray, cv: np.ndarray, label: dict) -> np.ndarray:
    y = max_mean >= label["util_threshold"]
    if label.get("cv_threshold") is not None:
        y |= cv > label["cv_threshold"]
    return y


# --- Model scoring (core/src/model.rs) -------------------------------------------------------------


def _tree_leaf(tree: dict, x: np.ndarray) -> tuple[bool, float]:
    nodes, fmap, i = tree["nodes"], tree.get("features"), 0
    for _ in range(len(nodes)):
        node = nodes[i]
        if "leaf" in node:
            return node["leaf"]["class"], node["leaf"]["p"]
        s = node["split"]
        f = fmap[s["feature"]] if fmap is not None else s["feature"]
        i = s["left"] if x[f] < s["threshold"] else s["right"]
    return False, 0.0


def predict(model: dict, X: np.ndarray) -> np.ndarray:
    """`Algorithm::predict` on each row of `X` (rows x features, in the schema's order)."""
    a = model["algorithm"]
    kind = a["kind"]
    if kind == "logistic":
        z = a["intercept"] + ((X - np.array(a["mean"])) / np.array(a["scale"])) @ np.array(a["weights"])
        return 1.0 / (1.0 + np.exp(-z))
    if kind == "decision-tree":
        return np.array([_tree_leaf(a["tree"], x)[1] for x in X])
    if kind == "random-forest":
        return np.array([np.mean([_tree_leaf(t, x)[1] for t in a["trees"]]) for x in X])
    if kind == "naive-bayes":

        def jll(c: dict) -> np.ndarray:
            m, v = np.array(c["mean"]), np.array(c["var"])
            return math.log(c["prior"]) - 0.5 * (np.log(2 * math.pi * v) + (X - m) ** 2 / v).sum(axis=1)

        p = 1.0 / (1.0 + np.exp(jll(a["stable"]) - jll(a["unstable"])))
        return np.where(np.isnan(p), 0.5, p)
    raise ValueError(f"unknown algorithm kind {kind!r}")


def importance(model: dict) -> pl.DataFrame:
    """Per-feature importance: |standardised weight| (logistic), split counts (trees), or the
    standardised gap between the class means (naive Bayes); with the sign where it has one."""
    a, names = model["algorithm"], model["feature_schema"]["names"]
    kind = a["kind"]
    if kind == "logistic":
        w = np.array(a["weights"])
        return pl.DataFrame({"feature": names, "value": w, "importance": np.abs(w)})
    if kind in ("decision-tree", "random-forest"):
        counts = np.zeros(len(names))
        for t in [a["tree"]] if kind == "decision-tree" else a["trees"]:
            fmap = t.get("features")
            for node in t["nodes"]:
                if "split" in node:
                    f = node["split"]["feature"]
                    counts[fmap[f] if fmap is not None else f] += 1
        return pl.DataFrame({"feature": names, "value": counts, "importance": counts})
    if kind == "naive-bayes":
        s, u = a["stable"], a["unstable"]
        gap = (np.array(u["mean"]) - np.array(s["mean"])) / np.sqrt((np.array(u["var"]) + np.array(s["var"])) / 2)
        return pl.DataFrame({"feature": names, "value": gap, "importance": np.abs(gap)})
    raise ValueError(f"unknown algorithm kind {kind!r}")


# --- Evaluation (trainer/src/evaluate.rs) ----------------------------------------------------------


def _sweep(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (tp, fp) at each distinct threshold, descending, starting at (0, 0)."""
    o = np.argsort(-s, kind="stable")
    s, y = s[o], y[o].astype(float)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp, fp = np.cumsum(y)[last], np.cumsum(1 - y)[last]
    return np.r_[0.0, tp], np.r_[0.0, fp]


def roc_curve(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tp, fp = _sweep(s, y)
    return fp / max(1, (~y).sum()), tp / max(1, y.sum())


def pr_curve(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tp, fp = _sweep(s, y)
    k = tp + fp > 0
    return tp[k] / max(1, y.sum()), tp[k] / (tp[k] + fp[k])


def roc_auc(s: np.ndarray, y: np.ndarray) -> float:
    fpr, tpr = roc_curve(s, y)
    return float(np.trapezoid(tpr, fpr)) if 0 < y.sum() < len(y) else math.nan


def average_precision(s: np.ndarray, y: np.ndarray) -> float:
    r, p = pr_curve(s, y)
    return float((np.diff(np.r_[0.0, r]) * p).sum()) if y.sum() else math.nan


def calibration(s: np.ndarray, y: np.ndarray, bins: int = 10) -> pl.DataFrame:
    b = np.minimum((np.clip(s, 0, 1) * bins).astype(int), bins - 1)
    return (
        pl.DataFrame({"bin": b, "score": s, "y": y.astype(float)})
        .group_by("bin")
        .agg(pl.col("score").mean(), pl.col("y").mean().alias("observed"), pl.len().alias("n"))
        .sort("bin")
    )
