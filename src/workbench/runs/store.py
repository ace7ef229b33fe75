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
import socket
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
    ("09", "deploy"),
]
STAGE_NAMES = {num: f"{num}_{name}" for num, name in STAGES}

# Artifact file names, one place, so stages and tests agree on them.
ARTIFACTS = {
    "checkpoint": ("01", "checkpoint.pt"),
    "model_meta": ("01", "model_meta.json"),  # normaliser, label names, config: read without torch (06-08)
    "windows": ("01", "windows.npz"),  # X (N,C,S,T) float32 raw, y, subject, split, label_names
    "data_summary": ("01", "data_summary.json"),
    "train_history": ("01", "train_history.json"),
    "imported_model": ("01", "imported_model.json"),  # mode import: origin, sha256, outputs, FSQ found
    "imported_onnx": ("01", "imported_model.onnx"),  # mode import: the model's graph as given / exported
    "imported_weights": ("01", "imported_weights.pt"),  # mode import from a factory: the state_dict
    "model_onnx": ("02", "model.onnx"),  # static batch 1, for the compiler
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
    "quant_16bit_alls": ("05", "quant_16bit_layers.alls"),  # suggested a16_w16 lines, HN names guessed
    "quant_ladder": ("05", "quant_ladder.csv"),  # remedy ladder, validation + test rows
    "quant_remedy": ("05", "quant_remedy.json"),  # the remedy picked on validation windows
    "quant_attribution": ("05", "quant_attribution.csv"),  # flips by quantized part (validation)
    "quant_flips_per_class": ("05", "quant_flips_per_class.csv"),
    "npu_deploy_onnx": ("05", "npu_deploy.onnx"),  # FP32 NPU graph stage 06 compiles (remedy folded)
    "model_alls": ("06", "model.alls"),
    "compile_sh": ("06", "compile.sh"),
    "har": ("06", "model.har"),
    "hef": ("06", "model.hef"),
    "dfc_log": ("06", "dfc.log"),
    "compile_result": ("06", "compile_result.json"),  # DFC run facts (only when the DFC ran)
    "hef_provenance": ("06", "hef_provenance.json"),  # written by `workbench hailo import-hef`
    # The DFC path names its emulator outputs itself (hailo.compile.EMULATOR_FILES); registered here too.
    "emulator_fp_optimized": ("06", EMULATOR_FILES["fp_optimized"]),  # DFC SDK_FP_OPTIMIZED, (N, D)
    "emulator_quantized": ("06", EMULATOR_FILES["quantized"]),  # DFC SDK_QUANTIZED, (N, D)
    "emulator_indices": ("06", EMULATOR_FILES["indices"]),  # windows.npz rows of both
    "backend_table": ("07", "backends.csv"),
    "latency_table": ("07", "latency.csv"),
    "latency_targets": ("07", "latency_targets.csv"),
    "per_subject_table": ("07", "per_subject.csv"),
    "device_cli": ("07", "hailortcli.json"),  # parsed hailortcli run / benchmark (device only)
    "predictions_torch-fp32": ("07", "predictions_torch-fp32.npz"),  # logits, levels, y, subject, index
    "predictions_ort-fp32": ("07", "predictions_ort-fp32.npz"),
    "predictions_ort-int8-emulated": ("07", "predictions_ort-int8-emulated.npz"),
    "predictions_hailo-emulator": ("07", "predictions_hailo-emulator.npz"),
    "predictions_hailo8-device": ("07", "predictions_hailo8-device.npz"),
    "reliability": ("08", "reliability.json"),
    "reliability_card": ("08", "report_card.csv"),  # pass/fail per backend and target
    "reliability_summary": ("08", "summary.csv"),  # T, ECE before/after, coverage per backend
    "deploy_manifest": ("09", "deploy.json"),  # the stage folder IS the deploy bundle (workbench.deploy)
}

DEFAULT_OUTPUTS = Path("outputs")
# Statuses of a stage whose artifacts a child run may reuse (``open``: an interactive stage as last saved).
REUSABLE = ("succeeded", "bundle-only", "compiled", "open", "done")
# How a run was started; the manifest's ``started_by``.
DOORS = ("pipeline", "papermill", "interactive")


def stage_key(stage: str) -> str:
    """Accept '2', '02', '02_export_onnx' or 'export_onnx' and return '02'."""
    s = str(stage).strip()
    for num, name in STAGES:
        if s in (num, str(int(num)), f"{num}_{name}", name):
            return num
    raise RunError(f"unknown stage {stage!r}; stages are " + ", ".join(STAGE_NAMES.values()))


def project_root() -> Path:
    """The checkout holding ``pyproject.toml`` and ``notebooks/``: found from this package's location
    first (editable install), then from the working directory; never the kernel's cwd alone, since
    Jupyter kernels start in ``notebooks/``. ``WORKBENCH_PROJECT_ROOT`` overrides both."""
    env = os.environ.get("WORKBENCH_PROJECT_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for d in (start, *start.parents):
            if (d / "pyproject.toml").is_file() and (d / "notebooks").is_dir():
                return d
    return Path.cwd().resolve()


def outputs_root() -> Path:
    """Where runs live: ``WORKBENCH_OUTPUTS`` (relative to the project root) or ``<project>/outputs``."""
    env = os.environ.get("WORKBENCH_OUTPUTS")
    p = Path(env).expanduser() if env else DEFAULT_OUTPUTS
    return p if p.is_absolute() else project_root() / p


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
        try:
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
        except OSError as exc:
            raise RunError(
                f"cannot create a run directory under {root}/: {exc.strerror or exc}; make it "
                f"writable and free some space, or choose another folder with --outputs DIR"
            ) from exc
        raise RunError(f"could not create a fresh run directory under {root}/")

    @classmethod
    def open(cls, ref: str | Path, root: Optional[Path] = None) -> "Run":
        """Open a run given as an absolute path, a path relative to the working directory or to the
        project root (``outputs/<id>``), or a run id (or a unique part of one) under the outputs
        folder. Kernels start in ``notebooks/``, so the project root is tried, not just the cwd."""
        text = str(ref).strip()
        if not text:
            raise RunError(
                "no run given: pass a run id, outputs/<run-id> or a path (run ids: python -m workbench list)"
            )
        p = Path(text).expanduser()
        root = Path(root) if root else outputs_root()
        tried = [p] if p.is_absolute() else [Path.cwd() / p, project_root() / p, root / p]
        for cand in tried:
            if _is_run_dir(cand):
                return cls(cand.resolve())
        if p.is_absolute():
            raise RunError(
                f"{p} is not a run directory (it has no manifest.json or artifacts/); run ids: python -m workbench list"
            )
        name = p.name
        hits = [d for d in root.iterdir() if _is_run_dir(d) and name in d.name] if root.is_dir() else []
        exact = [d for d in hits if d.name == name]
        if exact:
            return cls(exact[0].resolve())
        if len(hits) == 1:
            return cls(hits[0].resolve())
        if not hits:
            raise RunError(f"no run {text!r} under {root}/ (run ids: python -m workbench list)")
        raise RunError(f"{text!r} matches several runs: {', '.join(sorted(h.name for h in hits))}")

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
                f"produced it. Make a run that has it: python -m workbench run --to {stage} (or, from a "
                f"run holding the stages before it: python -m workbench run --from {stage} --to {stage} "
                f"--parent RUN)"
            )
        return path

    # -- json files ----------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def read_json(self, name: str, default: Any = None) -> Any:
        p = self.path / name
        try:
            return json.loads(p.read_text()) if p.exists() else default
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunError(f"{p} cannot be read ({exc}); the run is damaged: start a new run") from exc

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


def _is_run_dir(p: Path) -> bool:
    return p.is_dir() and ((p / "manifest.json").is_file() or (p / "artifacts").is_dir())


def _atomic_write_json(path: Path, obj: Any) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file. A write failure
    (read-only folder, disk full) removes the temporary file and becomes one RunError naming the path."""
    text = json.dumps(obj, indent=2, default=_json_default)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RunError(
            f"cannot write {path}: {exc.strerror or exc}; free some space or make the folder "
            f"writable, then start the run again"
        ) from exc


def overwrite_in_place(path: Path, obj: Any) -> bool:
    """Last resort when the atomic write failed (disk full): rewrite the existing file's bytes in place
    with a compact JSON, which needs no new blocks when it is not longer. True when it worked."""
    try:
        data = json.dumps(obj, separators=(",", ":"), default=_json_default).encode()
        with open(path, "r+b") as fh:
            fh.write(data)
            fh.truncate()
        return True
    except OSError:
        return False


def process_identity() -> dict[str, Any]:
    """pid, host and process start time: enough for ``workbench list`` to tell a live run from one
    whose process is gone (a reused pid has another start time)."""
    return {"pid": os.getpid(), "hostname": socket.gethostname(), "pid_start": _pid_start(os.getpid())}


def _proc_stat(pid: int) -> Optional[list[str]]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()
    except (OSError, ValueError):
        return None


def _pid_start(pid: int) -> Optional[str]:
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else None


def process_alive(info: dict) -> Optional[bool]:
    """Whether the process recorded in a manifest (``pid``, ``hostname``, ``pid_start``) still runs;
    None when it ran on another host (cannot tell from here)."""
    pid, host = info.get("pid"), info.get("hostname")
    if not isinstance(pid, int) or host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid)
    if fields and fields[0] == "Z":  # killed, not yet reaped
        return False
    start = info.get("pid_start")
    return start is None or _pid_start(pid) in (None, start)


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
        rows = [
            m
            for m in data.get("metrics", [])
            if not (m["stage"] == self.name and m["name"] == name and m["backend"] == backend)
        ]
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
    """Used by every notebook. ``run_dir`` is a run id, ``outputs/<id>`` or a path (resolved against
    the project root, not the kernel's cwd); empty opens a new run for stage 01 and the newest run with
    the previous stage finished otherwise. A stage that already ran in that run is never run into it
    again: a child run is made and the first output line says so (rules: ``workbench.runs.doors``)."""
    from workbench.runs.doors import open_stage as _open

    return _open(run_dir, stage, create_if_missing)


def check_reusable(parent: Run, stages: list[str]) -> None:
    """Refuse, before anything is created, parent stages that did not finish or have no artifacts."""
    recorded = parent.manifest().get("stages", {})
    for s in stages:
        key = stage_key(s)
        name = STAGE_NAMES[key]
        status = (recorded.get(name) or {}).get("status")
        if status is not None and status not in REUSABLE:
            raise RunError(
                f"parent run {parent.run_id} has stage {name} with status '{status}'; "
                f"rerun from that stage (--from {key}) instead of reusing it"
            )
        if not (parent.path / "artifacts" / name).is_dir():
            raise RunError(
                f"parent run {parent.run_id} has no artifacts for stage {name}; "
                f"rerun from an earlier stage (--from {key})"
            )


def copy_stage_artifacts(parent: Run, child: Run, stages: list[str]) -> None:
    """For ``--from`` and child runs: bring the parent's artifacts of earlier stages into the new run."""
    check_reusable(parent, stages)
    for s in stages:
        src = parent.path / "artifacts" / STAGE_NAMES[stage_key(s)]
        try:
            shutil.copytree(src, child.path / "artifacts" / src.name, dirs_exist_ok=False)
        except OSError as exc:
            raise RunError(
                f"cannot copy {src} into {child.path}: {exc.strerror or exc}; free some "
                f"space or make the outputs folder writable"
            ) from exc
