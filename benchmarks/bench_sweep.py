"""What a sweep costs beyond its stages' own work, and what a second worker buys, for both executors.

    .venv/bin/python benchmarks/bench_sweep.py                 # 4 variations, stages that sleep 3 s
    .venv/bin/python benchmarks/bench_sweep.py --variations 6 --sleep 5

Stand-in notebooks make the stage time known: stage 01 writes a file (the shared parent, made once),
stage 02 sleeps a fixed time and records a metric. Each variation is a full `workbench run --from 02`
(interpreter start, kernel start, papermill, render, manifest), exactly what a real sweep pays.

Reported per executor and worker count:
- overhead per variation: a variation's process wall time minus the sleep (its stage's own work);
- of which inside the stage: the stage's recorded duration minus the sleep (kernel start, execution
  machinery, rendering), the rest being process start-up and imports;
- speed-up 1 -> 2 workers: wall time of all variations with one worker / with two.
Ray runs on a local instance this script starts (127.0.0.1, as many CPUs as workers) and stops again;
its start-up is reported separately, not counted in the variations' wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import yaml


def standin_notebooks(folder: Path, sleep_s: float) -> None:
    def nb(cells: list[str], path: Path) -> None:
        book = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell(cells[0])
        params.metadata["tags"] = ["parameters"]
        book.cells = [params] + [nbformat.v4.new_code_cell(c) for c in cells[1:]]
        book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(book, str(path))

    folder.mkdir(parents=True, exist_ok=True)
    nb(
        [
            'run_dir = ""',
            'from workbench.runs import open_stage\nopen_stage(run_dir, "01").path("model.txt").write_text("x")',
        ],
        folder / "01_train_or_load.ipynb",
    )
    nb(
        [
            'run_dir = ""\nquant_calib_size = 1024',
            f"import time\ntime.sleep({sleep_s})",
            "from workbench.runs import open_stage\n"
            'open_stage(run_dir, "02").record_metric("code_flip_rate", 1 / quant_calib_size, '
            'backend="ort-int8-emulated")',
        ],
        folder / "02_export_onnx.ipynb",
    )


def one_sweep(root: Path, executor: str, workers: int, n: int, parent: str, sleep_s: float) -> dict:
    from workbench.runs.store import Run
    from workbench.runs.sweep import run_sweep

    spec = {
        "base": [],
        "from": "02",
        "to": "02",
        "parent": parent,
        "workers": workers,
        "grid": {"quant_calib_size": [2 ** (i + 4) for i in range(n)]},
    }
    f = root / f"sweep-{executor}-{workers}.yaml"
    f.write_text(yaml.safe_dump(spec))
    ray_start = 0.0
    if executor == "ray":
        import ray

        os.environ.setdefault("RAY_raylet_start_wait_time_s", "180")  # busy machines register slowly
        t0 = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
        ray_start = time.perf_counter() - t0
    try:
        out = run_sweep(f, workers=workers, root=root, executor=executor, log=lambda *_: None)
    finally:
        if executor == "ray":
            import ray

            ray.shutdown()
    summary = json.loads((out / "sweep.json").read_text())
    per_var, in_stage = [], []
    for v in summary["variations"]:
        run = Run.open(v["run"], root)
        stage_s = run.manifest()["stages"]["02_export_onnx"]["duration_s"]
        per_var.append(v["seconds"] - sleep_s)
        in_stage.append(stage_s - sleep_s)
    return {
        "executor": executor,
        "workers": workers,
        "variations": n,
        "variations_wall_s": summary["variations_wall_seconds"],
        "sweep_wall_s": summary["wall_seconds"],
        "overhead_per_variation_s": statistics.median(per_var),
        "of_which_inside_stage_s": statistics.median(in_stage),
        "ray_start_s": round(ray_start, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variations", type=int, default=4)
    ap.add_argument("--sleep", type=float, default=3.0, help="seconds each variation's stage works")
    ap.add_argument("--executors", default="local,ray")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        tmp_path = Path(tmp)
        standin_notebooks(tmp_path / "nbs", args.sleep)
        import workbench.runs.pipeline  # noqa: F401  (fixes the real notebook folder for compare_runs first)

        os.environ["WORKBENCH_NOTEBOOKS"] = str(tmp_path / "nbs")
        from workbench.runs.executors import run_workbench

        parent_out = run_workbench(["run", "--no-progress", "--outputs", str(tmp_path / "out"), "--to", "01"])
        parent = next(ln.split()[1].rstrip(":") for ln in parent_out.stdout.splitlines() if ": stages" in ln)
        rows = []
        for executor in args.executors.split(","):
            for workers in (1, 2):
                rows.append(one_sweep(tmp_path / "out", executor, workers, args.variations, parent, args.sleep))
                print(json.dumps(rows[-1]), flush=True)
    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"{args.variations} variations, stage sleeps {args.sleep} s"
    )
    print(
        f"{'executor':<9} {'workers':>7} {'variations wall s':>18} {'overhead/variation s':>21} "
        f"{'(in stage s)':>13} {'speed-up':>9}"
    )
    for r in rows:
        base = next(x for x in rows if x["executor"] == r["executor"] and x["workers"] == 1)
        speedup = base["variations_wall_s"] / r["variations_wall_s"]
        print(
            f"{r['executor']:<9} {r['workers']:>7} {r['variations_wall_s']:>18.1f} "
            f"{r['overhead_per_variation_s']:>21.1f} {r['of_which_inside_stage_s']:>13.1f} {speedup:>8.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
