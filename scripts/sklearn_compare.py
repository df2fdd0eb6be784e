#!/usr/bin/env python3
"""Random-forest fit time: scikit-learn on the feature matrix keel-trainer fitted (comparison only).

Usage:
  keel-trainer train --algo random-forest --data A.parquet ... -o /tmp/rf.json --export-matrix /tmp/x.csv
  python3 scripts/sklearn_compare.py /tmp/x.csv [--trees 31] [--max-depth 8] [--min-leaf 20] [--repeat 3]

The hyperparameters mirror keel-trainer's defaults (31 trees, depth 8, leaves of >= 20 rows, half
the features per tree, bootstrap of the full size). The matrix is the balanced training matrix,
so no class weights are needed. Prints one JSON line with the fit times (single thread and all
cores) and the training ROC-AUC.
"""
import argparse
import json
import time

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--trees", type=int, default=31)
    ap.add_argument("--max-depth", type=int, default=8)
    ap.add_argument("--min-leaf", type=int, default=20)
    ap.add_argument("--feature-share", type=float, default=0.5)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    data = np.loadtxt(a.csv, delimiter=",", skiprows=1)
    x, y = data[:, :-1], data[:, -1].astype(int)
    out = {"rows": int(x.shape[0]), "features": int(x.shape[1])}
    for jobs in (1, -1):
        times = []
        for r in range(a.repeat):
            m = RandomForestClassifier(
                n_estimators=a.trees,
                max_depth=a.max_depth,
                min_samples_leaf=a.min_leaf,
                max_features=a.feature_share,
                bootstrap=True,
                n_jobs=jobs,
                random_state=42 + r,
            )
            t = time.perf_counter()
            m.fit(x, y)
            times.append(time.perf_counter() - t)
        out[f"fit_s_jobs{jobs}"] = min(times)
    out["train_roc_auc"] = float(roc_auc_score(y, m.predict_proba(x)[:, 1]))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
