"""Run directories: the contract between stages.

A run directory is created once and never overwritten. Each stage writes into
``artifacts/<NN_name>/`` and reads earlier stages' files from the same run. Metrics are appended to
``metrics.json``, each tagged with the backend that produced it.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from workbench.errors import RunError
from workbench.hailo.compile import EMULATOR_FILES

STAGES: list[tuple[str, str]] = [
    ("01", "train_or_load"),
    ("02", "export_onnx"),
    ("03", "inspect_graph"),
    ("04", "split_at_round"),
    ("05", "calibrate_int8"),
    ("06", "compile_hailo"),
    ("07", "evaluate_on_device"),
    ("08", "reliability"),
]
STAGE_NAMES = {num: f"{num}_{name}" for num, name in STAGES}

# Artifact file names, one place, so stages and tests agree on them.
ARTIFACTS = {
    "checkpoint": ("01", "checkpoint.pt"),
    "model_meta": ("01", "model_meta.json"),   # normaliser, label names, config: read without torch (06-08)
    "windows": ("01", "windows.npz"),          # X (N,C,S,T) float32 raw, y, subject, split, label_names
    "data_summary": ("01", "data_summary.json"),
    "train_history": ("01", "train_history.json"),
    "model_onnx": ("02", "model.onnx"),          # static batch 1, for the compiler
    "model_dynamic_onnx": ("02", "model_dynamic.onnx"),  # batch-dynamic, for CPU evaluation
    "parity": ("02", "parity.json"),
    "graph_nodes": ("03", "nodes.csv"),
    "hailo_compat": ("03", "hailo_compat.json"),
    "npu_onnx": ("04", "npu.onnx"),
    "npu_dynamic_onnx": ("04", "npu_dynamic.onnx"),
    "host_onnx": ("04", "host.onnx"),
    "split": ("04", "split.json"),
    "host_weights": ("04", "host_weights.npz"),
    "calibset": ("05", "calibset_nhwc.npy"),
    "calibset_info": ("05", "calibset_nhwc.json"),
    "npu_int8_onnx": ("05", "npu_int8.onnx"),
    "quant_comparison": ("05", "quant_comparison.csv"),
    "quant_sensitivity": ("05", "quant_sensitivity.csv"),
    "quant_layer_sqnr": ("05", "quant_layer_sqnr.csv"),
    "quant_summary": ("05", "quant_summary.json"),
    "quant_16bit_alls": ("05", "quant_16bit_layers.alls"),   # suggested a16_w16 lines, HN names guessed
    "model_alls": ("06", "model.alls"),
    "compile_sh": ("06", "compile.sh"),
    "har": ("06", "model.har"),
    "hef": ("06", "model.hef"),
    "dfc_log": ("06", "dfc.log"),
    "compile_result": ("06", "compile_result.json"),          # DFC run facts (only when the DFC ran)
    "hef_provenance": ("06", "hef_provenance.json"),          # written by `workbench hailo import-hef`
    # The DFC path names its emulator outputs itself (hailo.compile.EMULATOR_FILES); registered here too.
    "emulator_fp_optimized": ("06", EMULATOR_FILES["fp_optimized"]),     # DFC SDK_FP_OPTIMIZED, (N, D)
    "emulator_quantized": ("06", EMULATOR_FILES["quantized"]),           # DFC SDK_QUANTIZED, (N, D)
    "emulator_indices": ("06", EMULATOR_FILES["indices"]),               # windows.npz rows of both
    "backend_table": ("07", "backends.csv"),
    "latency_table": ("07", "latency.csv"),
    "latency_targets": ("07", "latency_targets.csv"),
    "per_subject_table": ("07", "per_subject.csv"),
    "device_cli": ("07", "hailortcli.json"),            # parsed hailortcli run / benchmark (device only)
    "predictions_torch-fp32": ("07", "predictions_torch-fp32.npz"),   # logits, levels, y, subject, index
    "predictions_ort-fp32": ("07", "predictions_ort-fp32.npz"),
    "predictions_ort-int8-emulated": ("07", "predictions_ort-int8-emulated.npz"),
    "predictions_hailo-emulator": ("07", "predictions_hailo-emulator.npz"),
    "predictions_hailo8-device": ("07", "predictions_hailo8-device.npz"),
    "reliability": ("08", "reliability.json"),
    "reliability_card": ("08", "report_card.csv"),          # pass/fail per backend and target
    "reliability_summary": ("08", "summary.csv"),           # T, ECE before/after, coverage per backend
}

DEFAULT_OUTPUTS = Path("outputs")


def stage_key(stage: str) -> str:
    """Accept '2', '02', '02_export_onnx' or 'export_onnx' and return '02'."""
    s = str(stage).strip()
    for num, name in STAGES:
        if s in (num, str(int(num)), f"{num}_{name}", name):
            return num
    raise RunError(f"unknown stage {stage!r}; stages are " + ", ".join(STAGE_NAMES.values()))


def outputs_root() -> Path:
    return Path(os.environ.get("WORKBENCH_OUTPUTS", DEFAULT_OUTPUTS))


def new_run_id(label: str = "run") -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")[:40] or "run"
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{slug}-{secrets.token_hex(2)}"


@dataclass
class Run:
    """A run directory on disk."""

    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    # -- creation ------------------------------------------------------------------------------
    @classmethod
    def create(cls, label: str = "run", root: Optional[Path] = None) -> "Run":
        root = Path(root) if root else outputs_root()
        root.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            path = root / new_run_id(label)
            try:
                path.mkdir()  # exclusive: an existing run is never reused
            except FileExistsError:
                continue
            for sub in ("notebooks", "html", "artifacts"):
                (path / sub).mkdir()
            return cls(path)
        raise RunError(f"could not create a fresh run directory under {root}")

    @classmethod
    def open(cls, ref: str | Path, root: Optional[Path] = None) -> "Run":
        """Open by path or by run id (or a unique prefix/suffix of one) under outputs/."""
        p = Path(ref)
        if p.is_dir() and (p / "artifacts").is_dir():
            return cls(p)
        root = Path(root) if root else outputs_root()
        hits = [d for d in root.iterdir() if d.is_dir() and (d.name == str(ref) or str(ref) in d.name)] \
            if root.is_dir() else []
        exact = [d for d in hits if d.name == str(ref)]
        if exact:
            return cls(exact[0])
        if len(hits) == 1:
            return cls(hits[0])
        if not hits:
            raise RunError(f"no run {ref!r} under {root}/ (see `python -m workbench list`)")
        raise RunError(f"{ref!r} matches several runs: {', '.join(sorted(h.name for h in hits))}")

    # -- paths ---------------------------------------------------------------------------------
    def stage_dir(self, stage: str) -> Path:
        d = self.path / "artifacts" / STAGE_NAMES[stage_key(stage)]
        d.mkdir(parents=True, exist_ok=True)
        return d

    def artifact(self, name: str, must_exist: bool = True) -> Path:
        """Path of a named artifact (see ARTIFACTS); raises a clear error when it is missing."""
        if name not in ARTIFACTS:
            raise RunError(f"unknown artifact {name!r}; known: {', '.join(sorted(ARTIFACTS))}")
        stage, filename = ARTIFACTS[name]
        path = self.path / "artifacts" / STAGE_NAMES[stage] / filename
        if must_exist and not path.exists():
            raise RunError(
                f"{filename} is missing from run {self.run_id}: stage {STAGE_NAMES[stage]} has not "
                f"produced it. Run that stage first (python -m workbench run --to {stage}) or start "
                f"from a run that has it (--parent RUN --from <later stage>).")
        return path

    # -- json files ----------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def read_json(self, name: str, default: Any = None) -> Any:
        p = self.path / name
        return json.loads(p.read_text()) if p.exists() else default

    def write_json(self, name: str, obj: Any) -> None:
        _atomic_write_json(self.path / name, obj)

    def manifest(self) -> dict:
        return self.read_json("manifest.json", {}) or {}

    def metrics(self) -> list[dict]:
        return (self.read_json("metrics.json", {}) or {}).get("metrics", [])

    def params(self) -> dict:
        import yaml
        p = self.path / "params.yaml"
        return yaml.safe_load(p.read_text()) if p.exists() else {}


def _atomic_write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
    tmp.replace(path)


def _json_default(o: Any) -> Any:
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class Stage:
    """What a notebook holds: its run, its artifact folder, and ways to record results."""

    def __init__(self, run: Run, stage: str):
        self.run = run
        self.key = stage_key(stage)
        self.name = STAGE_NAMES[self.key]
        self.dir = run.stage_dir(self.key)

    def artifact(self, name: str, must_exist: bool = True) -> Path:
        return self.run.artifact(name, must_exist=must_exist)

    def path(self, filename: str) -> Path:
        """A file in this stage's own artifact folder."""
        return self.dir / filename

    def record_metric(self, name: str, value: Any, backend: str, unit: str = "", **extra: Any) -> None:
        """Add or replace one headline number, tagged with the backend that produced it."""
        data = self.run.read_json("metrics.json", {}) or {}
        rows = [m for m in data.get("metrics", [])
                if not (m["stage"] == self.name and m["name"] == name and m["backend"] == backend)]
        row = {"stage": self.name, "name": name, "value": value, "backend": backend}
        if unit:
            row["unit"] = unit
        row.update(extra)
        rows.append(row)
        data["run_id"] = self.run.run_id
        data["metrics"] = rows
        self.run.write_json("metrics.json", data)

    def set_status(self, status: str, **info: Any) -> None:
        """A stage-specific status (e.g. 'bundle-only') the pipeline copies into the manifest."""
        _atomic_write_json(self.dir / "stage_status.json", {"status": status, **info})


def open_stage(run_dir: Optional[str], stage: str, create_if_missing: bool = False) -> Stage:
    """Used by every notebook. Under papermill ``run_dir`` is injected. Interactively, an empty
    ``run_dir`` opens a new run for stage 01 and the newest run holding the previous stage otherwise."""
    key = stage_key(stage)
    if run_dir:
        return Stage(Run.open(run_dir), key)
    if key == "01" or create_if_missing:
        return Stage(Run.create("interactive"), key)
    prev = STAGE_NAMES[STAGES[[n for n, _ in STAGES].index(key) - 1][0]]
    root = outputs_root()
    candidates = sorted((d for d in root.iterdir() if (d / "artifacts" / prev).is_dir()),
                        key=lambda d: d.stat().st_mtime) if root.is_dir() else []
    if not candidates:
        raise RunError(f"no run under {root}/ has stage {prev}; set run_dir in the parameters cell "
                       f"or run `python -m workbench run --to {key}` first")
    newest = Run(candidates[-1])
    ran = STAGE_NAMES[key] in newest.manifest().get("stages", {})
    if ran or any((newest.path / "artifacts" / STAGE_NAMES[key]).glob("*")):
        raise RunError(f"the newest run {newest.run_id} already has stage {STAGE_NAMES[key]}; runs are "
                       f"never overwritten. Rerun it as a child run (python -m workbench run --from {key} "
                       f"--parent {newest.run_id}) or set run_dir to a run without this stage")
    return Stage(newest, key)


def copy_stage_artifacts(parent: Run, child: Run, stages: list[str]) -> None:
    """For ``--from``: bring the parent's artifacts of earlier stages into the new run."""
    recorded = parent.manifest().get("stages", {})
    for s in stages:
        name = STAGE_NAMES[stage_key(s)]
        status = (recorded.get(name) or {}).get("status")
        if status is not None and status not in ("succeeded", "bundle-only", "compiled"):
            raise RunError(f"parent run {parent.run_id} has stage {name} with status '{status}'; "
                           f"rerun from that stage (--from {stage_key(s)}) instead of reusing it")
        src = parent.path / "artifacts" / STAGE_NAMES[stage_key(s)]
        if not src.is_dir():
            raise RunError(f"parent run {parent.run_id} has no artifacts for stage "
                           f"{STAGE_NAMES[stage_key(s)]}; rerun from an earlier stage")
        shutil.copytree(src, child.path / "artifacts" / src.name, dirs_exist_ok=False)
