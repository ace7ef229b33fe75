"""`workbench sweep -f params/sweeps/<name>.yaml`: a grid of parameter variations from one stage.

Sweep file:
    base: [params/smoke.yaml]         # parameter files every variation starts from
    params: {epochs: 3}               # optional fixed overrides
    from: "05"                        # first stage each variation reruns
    to: "08"                          # last stage (default 08)
    parent: null                      # a run holding the earlier stages; null = run them once now
    workers: 2                        # parallel processes (bounded by the CPU count)
    grid:                             # every combination becomes one run with the same parent
      quant_calib_strategy: [random_windows, stratified]
      quant_calib_size: [64, 1024]
Every variation is validated before anything runs. Each variation is its own `workbench run`
process, so a crash in one does not take the others down; the sweep then writes the comparison.
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

from workbench.config import ParamError, Params, load_params, read_yaml
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


def run_sweep(path: Path, workers: Optional[int] = None, root: Optional[Path] = None,
              log=print) -> Path:
    spec = read_sweep(path)
    vars_ = variations(spec)
    checked: list[Params] = []
    for v in vars_:  # validate everything before anything runs
        try:
            checked.append(load_params(spec["base"], {**spec["params"], **v,
                                                      "run_label": _label(v)[:40]}))
        except ParamError as exc:
            raise SweepError(f"variation {v} is invalid:\n{exc}") from None
    root = Path(root) if root else outputs_root()
    n_workers = max(1, min(int(workers or spec.get("workers") or 1), os.cpu_count() or 1, len(vars_)))
    parent = spec.get("parent")
    first = [n for n, _ in STAGES].index(spec["from"])
    if parent is None and first > 0:
        prev = STAGES[first - 1][0]
        log(f"sweep: running stages 01-{prev} once for the shared parent")
        parent = _invoke(spec["base"], spec["params"], "01", prev, None, root, "sweep-parent")
    log(f"sweep: {len(vars_)} variations from stage {spec['from']} with {n_workers} workers")

    def one(v: dict[str, Any]) -> tuple[dict, Optional[str], Optional[str]]:
        try:
            rid = _invoke(spec["base"], {**spec["params"], **v}, spec["from"], spec["to"], parent, root,
                          _label(v)[:40])
            return v, rid, None
        except SweepError as exc:
            return v, None, str(exc)

    with ThreadPoolExecutor(max_workers=n_workers) as pool:  # threads only wait on subprocesses
        results = list(pool.map(one, vars_))
    summary = {"sweep": str(path), "parent": parent, "from": spec["from"], "to": spec["to"],
               "variations": [{"values": v, "run": rid, "error": err} for v, rid, err in results]}
    ok = [rid for _, rid, err in results if rid and not err]
    out = root / "sweeps" / new_run_id(path.stem)
    out.mkdir(parents=True, exist_ok=False)
    (out / "sweep.json").write_text(json.dumps(summary, indent=2))
    if len(ok) >= 2:
        from workbench.runs.compare import compare_runs
        compare_runs(ok, root=root, out_dir=out / "comparison")
    failed = [r for r in results if r[2]]
    for v, _, err in failed:
        log(f"sweep: variation {v} failed: {err.splitlines()[0] if err else ''}")
    if failed:
        raise SweepError(f"{len(failed)} of {len(vars_)} variations failed; see {out / 'sweep.json'}")
    return out


def _invoke(base: list[str], overrides: dict[str, Any], frm: str, to: str, parent: Optional[str],
            root: Path, label: str) -> str:
    cmd = [sys.executable, "-m", "workbench", "run", "--no-progress", "--outputs", str(root),
           "--from", frm, "--to", to]
    for f in base:
        cmd += ["-f", str(f)]
    cmd += _overrides_args({**overrides, "run_label": label})
    if parent:
        cmd += ["--parent", parent]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    run_id = None
    for line in proc.stdout.splitlines():
        if line.startswith("run ") and ": stages" in line:
            run_id = line.split()[1].rstrip(":")
    if proc.returncode != 0 or run_id is None:
        raise SweepError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return run_id
