"""The deploy bundle: one folder with everything the inference service needs, and nothing it does not.

Why a bundle and not the run directory: the Pi has neither torch nor papermill, the run folder holds
hundreds of files the service never reads, and a run is never rewritten. The bundle copies the NPU
part (``model.hef`` when the run has one, ``npu_int8.onnx`` and ``npu_dynamic.onnx`` for the CPU
paths), the host post-processor's program and weights (``split.json``, ``host_weights.npz``), the
normaliser the model was trained with (``normalizer.json``: inputs arrive in physical units), and
``deploy.json`` with labels, FSQ levels, the temperature and conformal thresholds stage 08 fitted for
each backend, and the sha256 of every other file. :func:`load_bundle` verifies every checksum and
refuses a missing, changed or unlisted file.

Nothing here imports torch: building reads the normaliser through the same loader stage 07 uses,
loading reads only JSON and numpy files.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, get_args

import numpy as np

from workbench.config import HAILO8_DEVICE, ORT_FP32, ORT_INT8, TORCH_FP32, ConformalMethod
from workbench.errors import BundleError

FORMAT = "workbench-deploy-bundle"
FORMAT_VERSION = 1
MANIFEST = "deploy.json"
NORMALIZER_FILE = "normalizer.json"
SPLIT_FILE = "split.json"
HOST_WEIGHTS_FILE = "host_weights.npz"
REQUIREMENTS_FILE = "requirements.txt"

# The serving backends: the project's backend name -> the bundle file holding its NPU part.
NPU_FILES = {HAILO8_DEVICE: "model.hef", ORT_INT8: "npu_int8.onnx", ORT_FP32: "npu_dynamic.onnx"}
DEPLOYED_GRAPH_BACKENDS = (HAILO8_DEVICE, ORT_INT8)
# Where each serving backend's temperature and conformal thresholds come from, in order of preference:
# its own stage-08 analysis, else the closest backend stage 08 analysed (recorded in deploy.json).
RELIABILITY_FROM = {HAILO8_DEVICE: (HAILO8_DEVICE, ORT_INT8), ORT_INT8: (ORT_INT8,), ORT_FP32: (ORT_FP32, TORCH_FP32)}
CONFORMAL_METHODS: tuple[str, ...] = get_args(ConformalMethod)
DEFAULT_CONFORMAL_METHOD = "LAC marginal"

# What the service needs on a Raspberry Pi 5 (aarch64, Python 3.11, numpy<2 for HailoRT). Every pin
# has a cp311 manylinux aarch64 wheel (or is pure Python) and accepts numpy 1.26. HailoRT itself comes
# from the system's hailo-all package, not from PyPI.
SERVICE_REQUIREMENTS = """\
# Inference service for a workbench deploy bundle (`workbench serve BUNDLE`).
# Python 3.11, aarch64 or x86_64; numpy<2 because HailoRT 4.20-4.23 requires it.
# Install the workbench package itself without its training dependencies:
#   pip install -r requirements.txt && pip install --no-deps <path to the workbench checkout>
numpy==1.26.4
onnxruntime==1.32.0
fastapi==0.163.2
uvicorn==0.54.0
uvloop==0.23.0
httptools==0.9.0
orjson==3.13.0
prometheus-client==0.26.0
pydantic==2.14.4
PyYAML==6.0.4
"""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# ---- what goes in ---------------------------------------------------------------------------------
@dataclass
class BundleSources:
    """The run's files a bundle is made of (paths), plus the normaliser and labels already read."""

    run_id: str
    split_json: Path
    host_weights: Path
    normalizer: dict[str, Any]  # {"mean": (C, S, 1) lists, "std": ...}
    label_names: list[str]
    npu_files: dict[str, Path]  # serving backend -> existing NPU file
    reliability_json: Optional[Path] = None  # stage 08 output, when it ran
    input_info: dict[str, Any] = field(default_factory=dict)  # channel/site names, rate, shape
    # stage 05's host input transform (equalization scales, clip range) that the deployed NPU graph
    # (npu_int8.onnx, model.hef) expects after normalisation; {} when the picked remedy has none
    input_transform: dict[str, Any] = field(default_factory=dict)


def sources_from_run(run: Any, hef_path: Optional[Path] = None) -> BundleSources:
    """Collect a run's bundle sources. ``run`` is a :class:`workbench.runs.Run` (duck-typed here: this
    package does not import the run store). ``hef_path`` overrides the run's own ``model.hef``."""
    from workbench.data.windowset import WindowSet
    from workbench.evaluate.backends import load_normalizer

    def need(name: str) -> Path:
        try:
            return Path(run.artifact(name))
        except Exception as exc:  # the run store's message names the stage to run
            raise BundleError(f"cannot build a deploy bundle from run {run.run_id}: {exc}") from exc

    split_json, host_weights = need("split"), need("host_weights")
    windows = need("windows")
    checkpoint = Path(run.artifact("checkpoint", must_exist=False))  # absent for an imported model
    npu = {
        ORT_INT8: Path(run.artifact("npu_int8_onnx", must_exist=False)),
        ORT_FP32: Path(run.artifact("npu_dynamic_onnx", must_exist=False)),
        HAILO8_DEVICE: Path(hef_path) if hef_path else Path(run.artifact("hef", must_exist=False)),
    }
    if hef_path and not npu[HAILO8_DEVICE].is_file():
        raise BundleError(f"HEF not found: {hef_path}")
    npu = {k: v for k, v in npu.items() if v.is_file()}
    if not ({ORT_INT8, ORT_FP32} & set(npu)):
        raise BundleError(
            f"run {run.run_id} has neither npu_int8.onnx (stage 05) nor npu_dynamic.onnx "
            f"(stage 04): run the pipeline through stage 05 first"
        )
    normalizer, labels = load_normalizer(run.artifact("model_meta", must_exist=False), checkpoint)
    ws, _ = WindowSet.load(windows)
    if list(ws.label_names) != list(labels):
        raise BundleError(
            f"windows.npz labels {ws.label_names} differ from the checkpoint's {labels}: stage 01 "
            f"artifacts are inconsistent; re-run from stage 01"
        )
    rel = Path(run.artifact("reliability", must_exist=False))
    remedy_path = Path(run.artifact("quant_remedy", must_exist=False))
    transform = {}
    if remedy_path.is_file():
        t = json.loads(remedy_path.read_text()).get("input_transform") or {}
        transform = {k: t[k] for k in ("scale", "clip") if t.get(k) is not None}
    info = {
        "shape": [int(d) for d in ws.X.shape[1:]],
        "channel_names": list(ws.channel_names),
        "site_names": list(ws.site_names),
        "sample_rate_hz": float(ws.sample_rate_hz),
    }
    return BundleSources(
        run_id=str(run.run_id),
        split_json=split_json,
        host_weights=host_weights,
        normalizer=normalizer.to_dict(),
        label_names=list(labels),
        npu_files=npu,
        reliability_json=rel if rel.is_file() else None,
        input_info=info,
        input_transform=transform,
    )


# ---- building --------------------------------------------------------------------------------------
def _reliability_entries(path: Optional[Path], method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per stage-08 backend: its fitted temperature and the conformal predictor of ``method``."""
    if path is None:
        return {}, {}
    data = json.loads(Path(path).read_text())
    temps, conf = {}, {}
    for name, res in (data.get("backends") or {}).items():
        t = (res.get("temperature") or {}).get("temperature")
        if t is not None:
            temps[name] = {"temperature": float(t), "n": (res.get("temperature") or {}).get("n")}
        entry = (res.get("conformal") or {}).get(method)
        if entry and entry.get("predictor"):
            pred = dict(entry["predictor"])
            if pred.get("randomized"):
                continue  # a randomised set is not reproducible per request; the service does not serve it
            conf[name] = {"method": method, **pred}
    return temps, conf


def serving_reliability(backend: str, temps: dict, conf: dict) -> dict[str, Any]:
    """Temperature and conformal predictor for one serving backend, with the stage-08 backend they came
    from. None when stage 08 did not analyse any backend this one may borrow from."""
    for source in RELIABILITY_FROM[backend]:
        if source in temps:
            return {
                "calibrated_on": source,
                "borrowed": source != backend,
                "temperature": temps[source]["temperature"],
                "conformal": conf.get(source),
            }
    return {"calibrated_on": None, "borrowed": False, "temperature": None, "conformal": None}


def build_bundle(src: BundleSources, out_dir: Path, conformal_method: str = DEFAULT_CONFORMAL_METHOD) -> Path:
    """Write the bundle into ``out_dir`` (created; must not exist or be empty) and return it."""
    if conformal_method not in CONFORMAL_METHODS:
        raise BundleError(f"conformal_method {conformal_method!r} is not one of {list(CONFORMAL_METHODS)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise BundleError(
            f"{out_dir} exists and is not an empty folder; a bundle is written into a new folder (choose another --out)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[str] = []

    def copy(src_path: Path, name: str) -> None:
        shutil.copyfile(src_path, out_dir / name)
        files.append(name)

    copy(src.split_json, SPLIT_FILE)
    copy(src.host_weights, HOST_WEIGHTS_FILE)
    (out_dir / NORMALIZER_FILE).write_text(json.dumps(src.normalizer))
    files.append(NORMALIZER_FILE)
    (out_dir / REQUIREMENTS_FILE).write_text(SERVICE_REQUIREMENTS)
    files.append(REQUIREMENTS_FILE)
    temps, conf = _reliability_entries(src.reliability_json, conformal_method)
    backends = {}
    for name, path in src.npu_files.items():
        copy(path, NPU_FILES[name])
        backends[name] = {
            "npu_file": NPU_FILES[name],
            **serving_reliability(name, temps, conf),
            # the deployed graphs (stage 05's pick) take the transformed input; npu_dynamic.onnx not
            "input_transform": src.input_transform if name in DEPLOYED_GRAPH_BACKENDS else {},
        }
    split = json.loads(Path(src.split_json).read_text())
    alpha = next((c["alpha"] for b in backends.values() if (c := b["conformal"])), None)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "run_id": src.run_id,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "input": {"layout": "(C, S, T) per window: channels, sites, time; physical units, float32", **src.input_info},
        "label_names": list(src.label_names),
        "fsq_levels": [int(v) for v in split.get("fsq_levels", [])],
        "cut": split.get("cut"),
        "normalizer": NORMALIZER_FILE,
        "host": {"split": SPLIT_FILE, "weights": HOST_WEIGHTS_FILE},
        "conformal_method": conformal_method,
        "conformal_alpha": alpha,
        "reliability_source": "08_reliability/reliability.json" if src.reliability_json else None,
        "backends": backends,
        "files": {
            name: {"sha256": sha256_file(out_dir / name), "bytes": (out_dir / name).stat().st_size}
            for name in sorted(files)
        },
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
    load_bundle(out_dir)  # what was written must verify
    return out_dir


# ---- loading ---------------------------------------------------------------------------------------
@dataclass
class Bundle:
    """A verified bundle: the manifest and the folder it describes."""

    path: Path
    manifest: dict[str, Any]

    @property
    def run_id(self) -> str:
        return str(self.manifest["run_id"])

    @property
    def label_names(self) -> list[str]:
        return list(self.manifest["label_names"])

    @property
    def fsq_levels(self) -> list[int]:
        return [int(v) for v in self.manifest["fsq_levels"]]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.manifest["input"]["shape"])

    @property
    def backends(self) -> list[str]:
        return list(self.manifest["backends"])

    def file(self, name: str) -> Path:
        return self.path / name

    def sha256(self, name: str) -> Optional[str]:
        entry = self.manifest["files"].get(name)
        return entry["sha256"] if entry else None

    def backend_entry(self, backend: str) -> dict[str, Any]:
        if backend not in self.manifest["backends"]:
            raise BundleError(
                f"bundle {self.path} has no {backend} backend (it has {self.backends}); "
                + (
                    "build the bundle from a run with a HEF (stage 06 or `workbench hailo import-hef`)"
                    if backend == "hailo8-device"
                    else "rebuild it from a run that has that model file"
                )
            )
        return self.manifest["backends"][backend]

    def normalizer(self) -> Any:
        from workbench.data.normalize import Normalizer

        return Normalizer.from_dict(json.loads(self.file(NORMALIZER_FILE).read_text()))

    def host_postprocessor(self) -> Any:
        from workbench.graph.host import HostPostprocessor

        return HostPostprocessor.from_files(self.file(SPLIT_FILE), self.file(HOST_WEIGHTS_FILE))


def load_bundle(path: Path | str) -> Bundle:
    """Read ``deploy.json`` and verify every file's sha256; refuse anything missing, changed or unlisted."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise BundleError(
            f"{path} is not a deploy bundle: {MANIFEST} is missing (build one with `workbench deploy RUN`)"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except ValueError as exc:
        raise BundleError(f"{mpath} is not valid JSON ({exc}); rebuild the bundle") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{mpath} is not a {FORMAT} manifest; rebuild the bundle with `workbench deploy`")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{mpath} has format_version {manifest.get('format_version')}, this workbench reads "
            f"{FORMAT_VERSION}; rebuild the bundle with this version"
        )
    listed = manifest.get("files") or {}
    problems = []
    for name, entry in sorted(listed.items()):
        p = path / name
        if Path(name).name != name:
            problems.append(f"{name}: file names in a bundle must not contain a folder")
        elif not p.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(p) != entry.get("sha256"):
            problems.append(
                f"{name}: sha256 {sha256_file(p)[:12]}... differs from deploy.json's "
                f"{str(entry.get('sha256'))[:12]}... (changed after the bundle was built)"
            )
    unlisted = sorted(p.name for p in path.iterdir() if p.name != MANIFEST and p.name not in listed)
    if unlisted:
        problems.append(f"files not listed in deploy.json: {unlisted}")
    needed = {NORMALIZER_FILE, SPLIT_FILE, HOST_WEIGHTS_FILE}
    needed |= {b["npu_file"] for b in (manifest.get("backends") or {}).values()}
    absent = sorted(needed - set(listed))
    if absent:
        problems.append(f"deploy.json does not list {absent}")
    if problems:
        raise BundleError(
            f"bundle {path} failed verification; refusing to use it:\n  - "
            + "\n  - ".join(problems)
            + "\nRebuild it with `workbench deploy RUN` (never edit a bundle by hand)."
        )
    return Bundle(path=path, manifest=manifest)


def conformal_predictor(entry: Optional[dict[str, Any]]) -> Any:
    """The stage-08 :class:`ConformalPredictor` from a bundle's backend entry (None when absent)."""
    if not entry:
        return None
    from workbench.reliability.conformal import ConformalPredictor

    thr = np.array([np.inf if t is None else float(t) for t in entry["thresholds"]], dtype=np.float64)
    return ConformalPredictor(
        score=entry["score"],
        alpha=float(entry["alpha"]),
        mondrian=bool(entry["mondrian"]),
        randomized=bool(entry["randomized"]),
        thresholds=thr,
        n=int(entry["n"]),
        k=int(entry["k"]),
        class_info=list(entry.get("class_info") or []),
        backend=entry.get("backend"),
    )
