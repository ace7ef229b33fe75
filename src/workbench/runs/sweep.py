"""`workbench sweep -f params/sweeps/<name>.yaml`: a grid of parameter variations from one stage.

Sweep file:
    base: [params/smoke.yaml]         # parameter files every variation starts from
    params: {epochs: 3}               # optional fixed overrides
    from: "05"                        # first stage each variation reruns
    to: "08"                          # last stage (default 08)
    parent: null                      # a run holding the earlier stages; null = run them once now
    workers: 2                        # variations at once (local: bounded by the CPU count)
    grid:                             # every combination becomes one run with the same parent
      quant_calib_strategy: [random_windows, stratified]
      quant_calib_size: [64, 1024]
Every variation is validated before anything runs. Each variation is its own `workbench run`
process, so a crash in one does not take the others down; the sweep then writes a results table keyed by
the varied parameters, the aggregation over seeds and the comparison.

Executors (runs.executors): `local` (default) runs up to `workers` processes on this machine; `ray` runs
each variation as a Ray task on a cluster (`--address`), which needs the outputs folder, the parameter
files and the project on a filesystem every node shares at the same path.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any, Optional

from workbench.config import ParamError, load_params, read_yaml
from workbench.errors import SweepError
from workbench.runs.store import STAGES, new_run_id, outputs_root, stage_key

ALLOWED_KEYS = {"base", "params", "from", "to", "parent", "workers", "grid"}


def read_sweep(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SweepError(f"sweep file not found: {path} (examples in params/sweeps/)")
    spec = read_yaml(path.read_text()) or {}
    if not isinstance(spec, dict):
        raise SweepError(f"{path}: expected a mapping with keys {sorted(ALLOWED_KEYS)}")
    unknown = set(spec) - ALLOWED_KEYS
    if unknown:
        raise SweepError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(ALLOWED_KEYS)}")
    grid = spec.get("grid")
    if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
        raise SweepError(f"{path}: 'grid' must map parameter names to non-empty lists of values")
    spec.setdefault("base", [])
    spec.setdefault("params", {})
    spec["from"] = stage_key(spec.get("from", "01"))
    spec["to"] = stage_key(spec.get("to", "08"))
    return spec


def variations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    names = list(spec["grid"])
    return [dict(zip(names, combo)) for combo in itertools.product(*(spec["grid"][n] for n in names))]


def _label(var: dict[str, Any]) -> str:
    return "sweep-" + "-".join(f"{k}={v}" for k, v in var.items()).replace(" ", "")


def _overrides_args(values: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for k, v in values.items():
        args += ["-p", k, json.dumps(v)]  # JSON is YAML: "05" stays a string, [8, 5] a list
    return args


def variation_key(values: dict[str, Any]) -> str:
    """How a variation is named in progress lines, tables and plots: its varied parameters."""
    return " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in values.items())


def run_sweep(
    path: Path,
    workers: Optional[int] = None,
    root: Optional[Path] = None,
    log=print,
    executor: str = "local",
    address: Optional[str] = None,
) -> Path:
    """Run every variation of a sweep file and write sweep.json, results.csv, the seed aggregation and
    the comparison into ``<outputs>/sweeps/<id>/``. ``executor``: "local" (a process per variation, at
    most ``workers`` at once) or "ray" (a Ray task per variation; see runs.executors)."""
    from workbench.runs.executors import make_executor

    spec = read_sweep(path)
    vars_ = variations(spec)
    for v in vars_:  # validate everything before anything runs
        try:
            load_params(spec["base"], {**spec["params"], **v, "run_label": _label(v)[:40]})
        except ParamError as exc:
            raise SweepError(f"variation {v} is invalid:\n{exc}") from None
    root = Path(root) if root else outputs_root()
    n_workers = max(1, min(int(workers or spec.get("workers") or 1), len(vars_)))
    if executor == "local":
        n_workers = min(n_workers, os.cpu_count() or 1)
    pool = make_executor(executor, n_workers, address)
    parent = spec.get("parent")
    first = [n for n, _ in STAGES].index(spec["from"])
    t_start = time.perf_counter()
    if parent is None and first > 0:
        prev = STAGES[first - 1][0]
        log(f"sweep: running stages 01-{prev} once for the shared parent")
        parent = _invoke(spec["base"], spec["params"], "01", prev, None, root, "sweep-parent")
        log(f"sweep: parent {parent} ready after {time.perf_counter() - t_start:.0f} s")
    log(f"sweep: {len(vars_)} variations from stage {spec['from']} on {pool.describe()}")

    jobs = [
        (v, run_args(spec["base"], {**spec["params"], **v}, spec["from"], spec["to"], parent, root, _label(v)[:40]))
        for v in vars_
    ]
    results: list[dict[str, Any]] = []
    t_vars = time.perf_counter()
    try:
        for done, (v, outcome) in enumerate(pool.run(jobs), start=1):
            rid, err = _parse_outcome(outcome)
            results.append({"values": v, "run": rid, "error": err, "seconds": outcome.seconds})
            elapsed = time.perf_counter() - t_vars
            eta = elapsed / done * (len(vars_) - done)
            status = f"run {rid}" if not err else "FAILED: " + err.splitlines()[0][:160]
            log(
                f"sweep [{done}/{len(vars_)}] {variation_key(v)}: {outcome.seconds:.0f} s, {status}; "
                f"elapsed {_duration(elapsed)}, ETA {_duration(eta)}"
            )
    finally:
        pool.close()
    variations_wall = time.perf_counter() - t_vars
    order = {json.dumps(v, sort_keys=True): i for i, v in enumerate(vars_)}
    results.sort(key=lambda r: order[json.dumps(r["values"], sort_keys=True)])
    summary = {
        "sweep": str(path),
        "parent": parent,
        "from": spec["from"],
        "to": spec["to"],
        "varied": list(spec["grid"]),
        "executor": pool.describe(),
        "wall_seconds": round(time.perf_counter() - t_start, 2),
        "variations_wall_seconds": round(variations_wall, 2),
        "variations": results,
    }
    out = root / "sweeps" / new_run_id(path.stem)
    out.mkdir(parents=True, exist_ok=False)
    (out / "sweep.json").write_text(json.dumps(summary, indent=2))
    from workbench.runs.sweep_report import write_sweep_report

    report = write_sweep_report(out, summary, root)
    if report.terminal:
        log(report.terminal)
    ok = [r["run"] for r in results if r["run"] and not r["error"]]
    if len(ok) >= 2:
        from workbench.runs.compare import compare_runs

        compare_runs(ok, root=root, out_dir=out / "comparison")
    failed = [r for r in results if r["error"]]
    for r in failed:
        log(f"sweep: variation {variation_key(r['values'])} failed: {(r['error'] or '').splitlines()[0]}")
    if failed:
        raise SweepError(f"{len(failed)} of {len(vars_)} variations failed; see {out / 'sweep.json'}")
    return out


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def run_args(
    base: list[str], overrides: dict[str, Any], frm: str, to: str, parent: Optional[str], root: Path, label: str
) -> list[str]:
    """Arguments of `python -m workbench run` for one variation (the interpreter is the worker's own)."""
    args = ["run", "--no-progress", "--outputs", str(Path(root).resolve()), "--from", frm, "--to", to]
    for f in base:
        args += ["-f", str(Path(f).resolve())]
    args += _overrides_args({**overrides, "run_label": label})
    if parent:
        args += ["--parent", parent]
    return args


def _parse_outcome(outcome) -> tuple[Optional[str], Optional[str]]:
    run_id = None
    for line in outcome.stdout.splitlines():
        if line.startswith("run ") and ": stages" in line:
            run_id = line.split()[1].rstrip(":")
    if outcome.returncode != 0 or run_id is None:
        return run_id, (
            f"`workbench {' '.join(outcome.args)}` failed (exit {outcome.returncode}):\n{outcome.stderr[-2000:]}"
        )
    return run_id, None


def _invoke(
    base: list[str], overrides: dict[str, Any], frm: str, to: str, parent: Optional[str], root: Path, label: str
) -> str:
    from workbench.runs.executors import run_workbench

    outcome = run_workbench(run_args(base, overrides, frm, to, parent, root, label))
    rid, err = _parse_outcome(outcome)
    if err or rid is None:
        raise SweepError(err or "no run id")
    return rid
