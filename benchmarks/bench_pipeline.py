"""Training throughput and pipeline wall times on this machine, side by side in one table.

    .venv/bin/python benchmarks/bench_pipeline.py            # stage 01 of smoke and default + throughput
    .venv/bin/python benchmarks/bench_pipeline.py --full     # also the whole pipeline (01-08) of both
    .venv/bin/python benchmarks/bench_pipeline.py --hapt DIR # also stage 01 on UCI HAPT raw data

Runs go to a temporary outputs folder (removed afterwards unless --keep). Wall times include kernel
start-up and rendering: they are what a user waits for. Training throughput is measured on the
default synthetic data with the default model, outside the notebooks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def training_throughput(epochs: int = 3) -> dict:
    import torch

    from workbench.config import load_params
    from workbench.data.prepare import prepare_data
    from workbench.model.fit import fit_model

    params = load_params([ROOT / "params" / "default.yaml"], {"epochs": epochs, "patience": epochs})
    data = prepare_data(params)
    model, _, hist = fit_model(params, data, progress=False)
    return {
        "what": f"train default model, {epochs} epochs ({hist['train_windows']} windows/epoch)",
        "windows_per_s": hist["windows_per_s"],
        "seconds": hist["total_seconds"],
        "threads": torch.get_num_threads(),
    }


def timed_run(args: list[str], outputs: Path) -> dict:
    cmd = [sys.executable, "-m", "workbench", "run", "--no-progress", "--outputs", str(outputs), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    run_id = next(
        line.split()[1].rstrip(":")
        for line in proc.stdout.splitlines()
        if line.startswith("run ") and ": stages" in line
    )
    man = json.loads((outputs / run_id / "manifest.json").read_text())
    stages = {k: v.get("duration_s") for k, v in man["stages"].items()}
    metrics = json.loads((outputs / run_id / "metrics.json").read_text())["metrics"]
    train = [m for m in metrics if m["name"] == "train_seconds"]
    return {
        "wall_s": wall,
        "stages": stages,
        "train_s": train[0]["value"] if train else None,
        "test_acc": next((m["value"] for m in metrics if m["name"] == "test_accuracy"), None),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="also time the whole pipeline (01-08)")
    ap.add_argument("--hapt", metavar="DIR", help="also time stage 01 on UCI HAPT raw data")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark's run directories")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON too")
    args = ap.parse_args()

    outputs = Path(tempfile.mkdtemp(prefix="wb-bench-"))
    rows = []
    tp = training_throughput()
    rows.append(
        ("training throughput", tp["what"], f"{tp['windows_per_s']:.0f} windows/s", f"{tp['seconds']:.1f} s", "")
    )
    cases = [
        ("smoke, stage 01", ["-f", "params/smoke.yaml", "--to", "01"]),
        ("default, stage 01", ["-f", "params/default.yaml", "--to", "01"]),
    ]
    if args.full:
        cases += [
            ("smoke, stages 01-08", ["-f", "params/smoke.yaml"]),
            ("default, stages 01-08", ["-f", "params/default.yaml"]),
        ]
    if args.hapt:
        cases.append(("hapt, stage 01", ["-f", "params/hapt.yaml", "-p", "data_dir", args.hapt, "--to", "01"]))
    results = {"training": tp}
    for label, cmd in cases:
        r = timed_run(cmd, outputs)
        results[label] = r
        acc = f"test acc {r['test_acc']:.3f} (torch-fp32)" if r["test_acc"] is not None else ""
        rows.append(
            (
                "pipeline wall time",
                label,
                f"{r['wall_s']:.1f} s",
                f"train {r['train_s']:.1f} s" if r["train_s"] else "",
                acc,
            )
        )

    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}"
    )
    widths = [max(len(str(r[i])) for r in rows + [("measure", "case", "value", "detail", "")]) for i in range(5)]
    header = ("measure", "case", "value", "detail", "")
    for r in [header, tuple("-" * w for w in widths)] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if args.keep:
        print(f"\nruns kept in {outputs}")
    else:
        shutil.rmtree(outputs, ignore_errors=True)


if __name__ == "__main__":
    main()
