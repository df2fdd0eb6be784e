#!/usr/bin/env python3
"""Execute Keel's notebooks headless, as the test command does; or strip their outputs.

    python notebooks/execute.py [--timeout S] [--out DIR] [--png DIR] NOTEBOOK.ipynb ...
    python notebooks/execute.py --strip NOTEBOOK.ipynb ...

Each notebook runs in its own kernel with the notebooks directory as working directory (so
`keel_nb` imports) and the current environment (so KEEL_DATASET, KEEL_MODEL, ... reach the
inputs cell; relative KEEL_* paths that exist from the caller's directory are made absolute). A cell that raises, or runs longer than `--timeout` seconds, fails the notebook;
the exit status is 1 when any notebook failed. `--out` keeps the executed copies, `--png` writes
every figure as DIR/<notebook>-<cell>-<n>.png. The notebooks themselves are never modified,
except by `--strip`, which clears outputs, execution counts and per-cell execution metadata.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

HERE = Path(__file__).resolve().parent


def strip(path: Path) -> bool:
    """Clears outputs; returns whether the file changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after + ("" if after.endswith("\n") else "\n"))
    return after != before


def absolutise_inputs() -> None:
    """Makes relative KEEL_* paths that exist from here absolute, since kernels run elsewhere."""
    for key, value in os.environ.items():
        if key.startswith("KEEL_") and value and not os.path.isabs(value) and os.path.exists(value):
            os.environ[key] = os.path.abspath(value)


def execute(path: Path, timeout: int, out: Path | None, png: Path | None) -> bool:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
    )
    # A local kernel over IPC sockets: no TCP ports, and no warning about unencrypted TCP.
    client.km = client.create_kernel_manager()
    client.km.transport = "ipc"
    start = time.monotonic()
    ok = True
    with tempfile.TemporaryDirectory(prefix="keel-nb-") as sockets:
        client.km.ip = str(Path(sockets) / "kernel")
        try:
            client.execute()
        except (CellExecutionError, CellTimeoutError) as e:
            ok = False
            print(f"FAILED {path.name}:\n{e}", file=sys.stderr)
    took = time.monotonic() - start
    if out:
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out / path.name)
    if png:
        png.mkdir(parents=True, exist_ok=True)
        for i, cell in enumerate(nb.cells):
            for j, o in enumerate(cell.get("outputs", [])):
                data = o.get("data", {}).get("image/png")
                if data:
                    (png / f"{path.stem}-{i:02d}-{j}.png").write_bytes(base64.b64decode(data))
    if ok:
        print(f"ok {path.name} ({took:.1f} s)")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--timeout", type=int, default=300, help="seconds per cell (default 300)")
    ap.add_argument("--out", type=Path, help="write executed copies here")
    ap.add_argument("--png", type=Path, help="write every figure here as PNG")
    ap.add_argument("--strip", action="store_true", help="clear outputs in place instead of executing")
    args = ap.parse_args()
    if args.strip:
        for p in args.notebooks:
            print(f"{'stripped' if strip(p) else 'clean'} {p}")
        return 0
    absolutise_inputs()
    results = [execute(p, args.timeout, args.out, args.png) for p in args.notebooks]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
