"""Bring your own model: an FSQ model the workbench did not train, as ONNX or as a PyTorch factory.

Stage 01 (``mode: import``) turns it into what the later stages read:

* ``imported_model.onnx`` -- the full inference graph taking the workbench's windows ``(N, C, S, T)``.
  An ONNX file is copied as is when its input already is ``(N, C, S, T)``; for the 1-D layouts
  ``(N, C, T)`` and ``(N, T, C)`` a Reshape (and a Transpose) is put in front, so that model channel
  ``k`` is workbench channel ``c = k // S`` at site ``s = k % S`` (channel-major, the order of
  ``X.reshape(N, C * S, T)``). A PyTorch factory is exported here (TorchScript exporter, opset from
  the params) so the ``torch-fp32`` backend exists for it.
* ``imported_model.json`` -- where the model came from (path or factory, sha256 of every file), the
  input layout, the graph's outputs, which one holds the logits (or that none does), the FSQ quantizer
  found in the graph (levels from its constants), the normaliser and how it was obtained.

``load_run_model`` gives later stages the same facts for a run whatever its origin (a workbench
checkpoint or an import), so they never assume the workbench's own architecture. The ONNX handling
(layouts, batch forms, outputs) lives in ``workbench.graph.foreign``, FSQ detection in
``workbench.graph.fsq_detect``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import onnx

from workbench.data import Normalizer
from workbench.errors import DataError, ModelImportError
from workbench.graph.foreign import (  # noqa: F401
    LAYOUTS,
    WINDOW_INPUT,
    adapt_input_layout,
    choose_logits_output,
    model_input_shape,
    opset_of,
    output_table,
    run_outputs,
    tensor_dims,
    to_model_layout,
    with_batch,
)

IMPORT_RECORD = "imported_model.json"
IMPORT_ONNX = "imported_model.onnx"
IMPORT_WEIGHTS = "imported_weights.pt"
# Accuracy within this many percentage points of chance (1 / K) on validation windows means the
# imported model does not see the data it was trained on (wrong normaliser, layout or labels).
NEAR_CHANCE_MARGIN = 0.10


# ---- what the user passed ---------------------------------------------------------------------------
def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_model_path(model_path: str) -> tuple[str, Any]:
    """("onnx", Path) for a file, ("factory", (module, function)) for ``package.module:function``."""
    if not model_path:
        raise ModelImportError("mode 'import' needs model_path: an .onnx file or package.module:function")
    p = Path(model_path).expanduser()
    if p.suffix.lower() == ".onnx" or p.exists():
        if not p.is_file():
            raise ModelImportError(f"model_path {str(p)!r} does not exist; pass the ONNX file of the model to import")
        if p.suffix.lower() != ".onnx":
            raise ModelImportError(
                f"model_path {str(p)!r} is a file but not .onnx; pass an ONNX file or "
                f"package.module:function (a factory returning the torch.nn.Module)"
            )
        return "onnx", p
    if ":" in model_path:
        module, _, fn = model_path.partition(":")
        if module and fn.isidentifier():
            return "factory", (module, fn)
    raise ModelImportError(f"model_path {model_path!r} is neither an existing .onnx file nor package.module:function")


def load_factory(spec: tuple[str, str]) -> Callable[[], Any]:
    module, fn = spec
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ModelImportError(
            f"cannot import {module!r} for model_path {module}:{fn} ({exc}); make the package "
            f"importable (pip install -e it, or add its folder to PYTHONPATH)"
        ) from exc
    factory = getattr(mod, fn, None)
    if not callable(factory):
        raise ModelImportError(
            f"{module} has no callable {fn!r}; model_path must name a function that returns the model"
        )
    return factory


def load_torch_model(spec: tuple[str, str], weights_path: str | Path) -> Any:
    """factory() with the weights of ``weights_path`` (a state_dict, loaded with weights_only=True)."""
    import torch

    wp = Path(weights_path).expanduser()
    if not wp.is_file():
        raise ModelImportError(
            f"weights_path {str(wp)!r} does not exist; pass the state_dict file (torch.save("
            f"model.state_dict(), path)) of the model that {spec[0]}:{spec[1]} builds"
        )
    model = load_factory(spec)()
    try:
        state = torch.load(str(wp), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelImportError(
            f"{wp} cannot be loaded with weights_only=True ({type(exc).__name__}: {exc}); save "
            f"the state_dict, not the pickled model"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelImportError(f"the weights in {wp} do not fit the model {spec[0]}:{spec[1]} builds: {exc}") from exc
    return model.eval()


def load_normalizer_json(path: str | Path, channels: int, sites: int) -> Normalizer:
    """``{"mean": [...], "std": [...]}`` per channel (C) or per channel and site (C x S), data units."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelImportError(
            f"normalizer_path {str(p)!r} does not exist; pass a JSON file "
            f'{{"mean": [...], "std": [...]}} (or leave normalizer_path unset to fit one on the '
            f"training split)"
        )
    try:
        d = json.loads(p.read_text())
    except ValueError as exc:
        raise ModelImportError(f"{p} is not valid JSON: {exc}") from exc
    if not isinstance(d, dict) or "mean" not in d or "std" not in d:
        raise ModelImportError(
            f'{p} must hold {{"mean": [...], "std": [...]}}; found keys '
            f"{sorted(d) if isinstance(d, dict) else type(d).__name__}"
        )
    out = []
    for key in ("mean", "std"):
        try:
            a = np.asarray(d[key], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ModelImportError(f"{p}: '{key}' is not a list of numbers ({exc})") from exc
        if a.shape == (channels,):
            a = np.repeat(a[:, None], sites, axis=1)
        elif a.shape != (channels, sites):
            raise ModelImportError(
                f"{p}: '{key}' has shape {a.shape}; the data has C = {channels} channels and "
                f"S = {sites} sites, so give {channels} values (one per channel) or "
                f"{channels} lists of {sites} (per channel and site)"
            )
        if not np.all(np.isfinite(a)):
            raise ModelImportError(f"{p}: '{key}' holds NaN or infinite values")
        out.append(a[:, :, None])
    if np.any(out[1] <= 0):
        raise ModelImportError(f"{p}: every 'std' must be > 0")
    return Normalizer(mean=out[0], std=out[1])


# ---- the import --------------------------------------------------------------------------------------
@dataclass
class ImportedModel:
    """What stage 01 records about an imported model (imported_model.json)."""

    kind: str  # "onnx" | "torch-factory"
    source: str  # model_path as given
    files: dict[str, dict]  # name -> {"path": original path, "sha256": ...}
    input_layout: str
    input_name: str  # the original model input
    outputs: list[dict]
    logits_output: Optional[str]
    fsq: dict
    fsq_levels: list[int]
    opset: int
    normalizer: dict
    normalizer_source: str
    label_names: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def has_logits(self) -> bool:
        return self.logits_output is not None

    @property
    def has_torch(self) -> bool:
        return self.kind == "torch-factory"

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ImportedModel":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def export_torch(model: Any, path: Path, input_shape: Sequence[int], opset: int, layout: str) -> None:
    """Export the user's PyTorch model (batch-dynamic) as its author would, input in its own layout."""
    import io
    import warnings

    import torch

    dummy = torch.zeros(tuple(int(s) for s in input_shape))
    with torch.no_grad():
        out = model(dummy)
    n_out = len(out) if isinstance(out, (tuple, list)) else 1
    names = [f"output_{i}" for i in range(n_out)]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            buf,
            input_names=["input"],
            output_names=names,
            opset_version=int(opset),
            dynamic_axes={"input": {0: "batch"}, **{n: {0: "batch"} for n in names}},
            do_constant_folding=True,
            dynamo=False,
            training=torch.onnx.TrainingMode.EVAL,
        )
    path.write_bytes(buf.getvalue())


def import_model(
    params: Any, channels: int, sites: int, window: int, label_names: Sequence[str], train_X: np.ndarray, out_dir: Path
) -> tuple[ImportedModel, Any]:
    """Copy/export the model into ``out_dir`` and describe it; returns (record, torch model or None).

    ``train_X``: raw training windows, used only when no normaliser file is given.
    """
    from workbench.graph.fsq_detect import find_fsq

    out_dir = Path(out_dir)
    kind, what = parse_model_path(params.model_path)
    files: dict[str, dict] = {}
    torch_model = None
    layout = params.model_input_layout
    if kind == "onnx":
        shutil.copyfile(what, out_dir / IMPORT_ONNX)
        files["onnx"] = {"path": str(what), "sha256": sha256_file(what), "copied_to": IMPORT_ONNX}
        kind_name = "onnx"
    else:
        if not params.weights_path:
            raise ModelImportError(
                f"model_path {params.model_path!r} is a factory: also pass weights_path (the state_dict file)"
            )
        torch_model = load_torch_model(what, params.weights_path)
        shutil.copyfile(Path(params.weights_path).expanduser(), out_dir / IMPORT_WEIGHTS)
        files["weights"] = {
            "path": str(Path(params.weights_path).expanduser()),
            "sha256": sha256_file(out_dir / IMPORT_WEIGHTS),
            "copied_to": IMPORT_WEIGHTS,
        }
        export_torch(
            torch_model, out_dir / IMPORT_ONNX, model_input_shape(layout, channels, sites, window), params.opset, layout
        )
        files["onnx"] = {
            "path": None,
            "sha256": sha256_file(out_dir / IMPORT_ONNX),
            "copied_to": IMPORT_ONNX,
            "exported_by": "workbench (torch.onnx.export, TorchScript exporter)",
        }
        kind_name = "torch-factory"
    proto = onnx.load(str(out_dir / IMPORT_ONNX))
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ModelImportError(f"{params.model_path} fails onnx.checker: {exc}") from exc
    adapted = adapt_input_layout(proto, layout, channels, sites, window)
    fsq = find_fsq(with_batch(adapted, 1), expected_levels=params.fsq_levels)
    logits = choose_logits_output(proto, len(label_names), params.logits_output)
    notes = []
    if params.normalizer_path:
        normalizer = load_normalizer_json(params.normalizer_path, channels, sites)
        files["normalizer"] = {
            "path": str(Path(params.normalizer_path).expanduser()),
            "sha256": sha256_file(Path(params.normalizer_path).expanduser()),
        }
        norm_source = f"file {params.normalizer_path}"
    else:
        normalizer = Normalizer.fit(train_X)
        norm_source = "fitted on the training split (no normalizer_path given)"
        notes.append(
            "normaliser fitted on the training split: the model was trained with its own normalisation, "
            "so a mismatch shows up as near-chance accuracy; pass normalizer_path to use the author's"
        )
    if logits is None:
        notes.append(
            f"no output has {len(label_names)} classes in its last dimension (outputs: "
            f"{[o['name'] for o in output_table(proto)]}): treated as an encoder without class logits"
        )
    record = ImportedModel(
        kind=kind_name,
        source=str(params.model_path),
        files=files,
        input_layout=layout,
        input_name=proto.graph.input[0].name,
        outputs=output_table(proto),
        logits_output=logits,
        fsq=fsq.to_dict(),
        fsq_levels=list(fsq.levels),
        opset=opset_of(proto),
        normalizer=normalizer.to_dict(),
        normalizer_source=norm_source,
        label_names=list(label_names),
        notes=notes,
    )
    (out_dir / IMPORT_RECORD).write_text(json.dumps(record.to_dict(), indent=2))
    return record, torch_model


def adapted_graph(stage01_dir: Path, record: ImportedModel, channels: int, sites: int, window: int) -> onnx.ModelProto:
    """The imported graph with the (N, C, S, T) window input (stage 02 writes its static/dynamic forms)."""
    proto = onnx.load(str(Path(stage01_dir) / IMPORT_ONNX))
    return adapt_input_layout(proto, record.input_layout, channels, sites, window)


# ---- evaluation with ONNX Runtime -------------------------------------------------------------------
def evaluate_import(
    model: str | Path | onnx.ModelProto, record: ImportedModel, x: np.ndarray, y: np.ndarray
) -> dict[str, Any]:
    """ort-fp32 accuracy of the imported model on normalised windows, with a near-chance verdict."""
    k = len(record.label_names)
    chance = 1.0 / k if k else float("nan")
    names = [record.fsq["levels_tensor"]] + ([record.logits_output] if record.logits_output else [])
    outs = run_outputs(model, x, names)
    levels = outs[record.fsq["levels_tensor"]].reshape(len(x), -1)
    res: dict[str, Any] = {"backend": "ort-fp32", "n": int(len(y)), "levels": levels, "chance": chance}
    if record.logits_output is None:
        res.update(accuracy=None, near_chance=None, skipped="no class logits: the model is an encoder")
        return res
    logits = outs[record.logits_output].reshape(len(x), -1)
    pred = logits.argmax(1)
    acc = float((pred == y).mean()) if len(y) else float("nan")
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    res.update(
        logits=logits, pred=pred, y=y, accuracy=acc, confusion=cm, near_chance=bool(acc <= chance + NEAR_CHANCE_MARGIN)
    )
    return res


def near_chance_warning(split: str, res: dict[str, Any], record: ImportedModel) -> Optional[str]:
    if not res.get("near_chance"):
        return None
    return (
        f"WARNING: the imported model reaches {res['accuracy']:.3f} {split} accuracy (ort-fp32, n={res['n']}), "
        f"within {NEAR_CHANCE_MARGIN:.2f} of chance ({res['chance']:.3f}). It probably does not see the data "
        f"it was trained on: check the normaliser ({record.normalizer_source}), model_input_layout "
        f"({record.input_layout}), the label order ({record.label_names}) and the units of the data."
    )


# ---- what later stages read -------------------------------------------------------------------------
@dataclass
class RunModel:
    """The facts later stages need about a run's model, whatever produced it."""

    origin: str  # "workbench" | "onnx" | "torch-factory"
    normalizer: Normalizer
    label_names: list[str]
    fsq_levels: list[int]
    logits_output: Optional[str]
    has_torch: bool  # is there a PyTorch model (torch-fp32 backend)?
    record: Optional[ImportedModel] = None

    @property
    def has_logits(self) -> bool:
        return self.logits_output is not None

    @property
    def reference_backend(self) -> str:
        """The FP32 reference of every comparison: torch-fp32 when there is a PyTorch model."""
        return "torch-fp32" if self.has_torch else "ort-fp32"

    def skipped(self, metric: str) -> Optional[str]:
        """One line saying why ``metric`` is not computed for this model, or None when it is."""
        if not self.has_logits and metric in LOGIT_METRICS:
            return (
                f"{metric}: skipped - the imported model has no class-logit output (outputs: "
                f"{[o['name'] for o in (self.record.outputs if self.record else [])]}), so there are "
                f"no class predictions to score"
            )
        return None


LOGIT_METRICS = (
    "accuracy",
    "macro_f1",
    "confusion",
    "per_subject_accuracy",
    "prediction_flips",
    "calibration (ECE, temperature scaling)",
    "conformal prediction sets",
    "report card",
)


def load_run_model(stage01_dir: str | Path) -> RunModel:
    """Read stage 01's record (imported_model.json) or the workbench checkpoint of a run."""
    d = Path(stage01_dir)
    rec_path = d / IMPORT_RECORD
    if rec_path.is_file():
        rec = ImportedModel.from_dict(json.loads(rec_path.read_text()))
        return RunModel(
            origin=rec.kind,
            normalizer=Normalizer.from_dict(rec.normalizer),
            label_names=list(rec.label_names),
            fsq_levels=list(rec.fsq_levels),
            logits_output=rec.logits_output,
            has_torch=rec.has_torch,
            record=rec,
        )
    from workbench.model.meta import read_model_meta

    ckpt = d / "checkpoint.pt"
    if not ckpt.is_file() and not (d / "model_meta.json").is_file():
        raise DataError(f"{d} holds neither {IMPORT_RECORD} nor checkpoint.pt: run stage 01 first")
    meta = read_model_meta(d / "model_meta.json", ckpt)  # model_meta.json needs no torch (stages 06-08)
    return RunModel(
        origin="workbench",
        normalizer=meta.make_normalizer(),
        label_names=list(meta.label_names),
        fsq_levels=list(meta.config["fsq_levels"]),
        logits_output="logits",
        has_torch=True,
    )


def load_imported_torch(stage01_dir: str | Path, record: ImportedModel) -> Any:
    """The PyTorch model of a factory import, rebuilt from the run's copy of the weights."""
    if record.kind != "torch-factory":
        raise ModelImportError(
            f"the run's model came from {record.kind}: there is no PyTorch model (torch-fp32 is "
            f"absent; ort-fp32 is the reference)"
        )
    kind, spec = parse_model_path(record.source)
    return load_torch_model(spec, Path(stage01_dir) / IMPORT_WEIGHTS)


def torch_round_inputs(model: Any, x: np.ndarray, batch_size: int = 256) -> tuple[list[np.ndarray], np.ndarray]:
    """(inputs of every torch.round call in order, first output) of ``model`` on ``x``.

    FSQ's bound is the input of its first round; capturing it with a TorchFunctionMode needs no access
    to the model's internals, so any author's FSQ implementation works.
    """
    import torch
    from torch.overrides import TorchFunctionMode

    class _Capture(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[Any] = []

        def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
            if func in (torch.round, torch.Tensor.round) and args:
                self.seen.append(args[0].detach().clone())
            return func(*args, **(kwargs or {}))

    rounds: list[list[np.ndarray]] = []
    firsts = []
    model = model.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            cap = _Capture()
            with cap:
                out = model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], np.float32)))
            first = out[0] if isinstance(out, (tuple, list)) else out
            firsts.append(first.numpy())
            for k, t in enumerate(cap.seen):
                if len(rounds) <= k:
                    rounds.append([])
                rounds[k].append(t.numpy())
    return [np.concatenate(r) for r in rounds], np.concatenate(firsts)


# ---- stage 01 ----------------------------------------------------------------------------------------
def first_line(params: Any) -> str:
    """Stage 01's first output line for an import: what is imported and where the normaliser comes from."""
    norm = (
        f"normaliser from {params.normalizer_path}"
        if params.normalizer_path
        else "normaliser FITTED ON THE TRAINING SPLIT (no normalizer_path given; the model's own normalisation "
        "is unknown)"
    )
    return f"import {params.model_path} (input layout {params.model_input_layout}): {norm}"


def import_into_stage(params: Any, data: Any, stage_dir: str | Path) -> tuple[ImportedModel, Any]:
    """Stage 01 in import mode: copy/export the model, record it, use its normaliser for ``data``."""
    ws = data.windows
    _, c, s, t = ws.X.shape
    if t != params.window:
        raise DataError(f"the data has {t}-sample windows but window={params.window}; set window: {t}")
    record, torch_model = import_model(params, c, s, t, ws.label_names, ws.X[data.splits.train], Path(stage_dir))
    data.normalizer = Normalizer.from_dict(record.normalizer)
    return record, torch_model


def evaluate_split_import(stage_dir: str | Path, record: ImportedModel, data: Any, split: str) -> dict[str, Any]:
    """ort-fp32 predictions, accuracy, confusion matrix and FSQ codes of the imported graph on one split."""
    _, c, s, t = data.windows.X.shape
    graph = with_batch(adapted_graph(Path(stage_dir), record, c, s, t), "batch")
    X, y = data.arrays(split)
    res = evaluate_import(graph, record, X, y)
    levels = res["levels"]
    L = np.asarray(record.fsq_levels, np.int64)
    basis = np.concatenate([[1], np.cumprod(L[:-1])]).astype(np.int64)
    res["indices"] = ((np.rint(levels).astype(np.int64) + L // 2) * basis).sum(axis=1)
    res["split"] = split
    return res


def save_import_artifacts(stage: Any, data: Any, record: ImportedModel) -> None:
    """windows.npz (raw windows + split) and data_summary.json; imported_model.* are already there."""
    from workbench.data.prepare import data_summary

    data.windows.save(stage.artifact("windows", must_exist=False), split=data.split_of_window)
    summary = data_summary(data)
    summary["model"] = {"origin": record.kind, "source": record.source, "normalizer": record.normalizer_source}
    stage.artifact("data_summary", must_exist=False).write_text(json.dumps(summary, indent=2))


def preflight_import(params: Any) -> None:
    """Checks of an import that need no data, before a run directory exists: the files are there, the
    graph loads, it has an FSQ quantizer with the levels ``fsq_levels`` says, the normaliser file parses."""
    from workbench.graph.fsq_detect import find_fsq

    kind, what = parse_model_path(params.model_path)
    if kind == "onnx":
        try:
            proto = onnx.load(str(what))
        except Exception as exc:
            raise ModelImportError(f"model_path {str(what)!r} is not a readable ONNX file: {exc}") from exc
        find_fsq(with_batch(proto, 1), expected_levels=params.fsq_levels)
    else:
        if not params.weights_path:
            raise ModelImportError(
                f"model_path {params.model_path!r} is a factory: also pass weights_path (the state_dict file)"
            )
        if not Path(params.weights_path).expanduser().is_file():
            raise ModelImportError(f"weights_path {params.weights_path!r} does not exist")
        load_factory(what)
    if params.normalizer_path:
        p = Path(params.normalizer_path).expanduser()
        if not p.is_file():
            raise ModelImportError(
                f"normalizer_path {str(p)!r} does not exist; pass the JSON with the model's "
                f'{{"mean": [...], "std": [...]}} or leave it unset to fit on the training split'
            )
        try:
            d = json.loads(p.read_text())
        except ValueError as exc:
            raise ModelImportError(f"{p} is not valid JSON: {exc}") from exc
        if not isinstance(d, dict) or not {"mean", "std"} <= set(d):
            raise ModelImportError(f'{p} must hold {{"mean": [...], "std": [...]}}')


# ---- stage 02 ----------------------------------------------------------------------------------------
def write_import_graphs(
    stage01_dir: str | Path,
    record: ImportedModel,
    shape_cst: Sequence[int],
    static_path: str | Path,
    dynamic_path: str | Path,
) -> dict[str, dict]:
    """model.onnx (static batch 1, for the compiler) and model_dynamic.onnx from the imported graph,
    both with the (N, C, S, T) window input; each passes onnx.checker. Returns a check table."""
    c, s, t = (int(v) for v in shape_cst)
    adapted = adapted_graph(Path(stage01_dir), record, c, s, t)
    checks = {}
    for path, batch in ((Path(static_path), 1), (Path(dynamic_path), "batch")):
        proto = with_batch(adapted, batch)
        try:
            onnx.checker.check_model(proto, full_check=False)
        except onnx.checker.ValidationError as exc:
            raise ModelImportError(f"the imported graph with batch {batch} fails onnx.checker: {exc}") from exc
        onnx.save(proto, str(path))
        ops = [n.op_type for n in proto.graph.node]
        checks[path.name] = {
            "input": f"{proto.graph.input[0].name} {tensor_dims(proto.graph.input[0])}",
            "outputs": ", ".join(o.name for o in proto.graph.output),
            "opset": opset_of(proto),
            "nodes": len(ops),
            "BatchNormalization": ops.count("BatchNormalization"),
            "Round nodes": ops.count("Round"),
            "size KiB": round(path.stat().st_size / 1024, 1),
        }
    return checks


def import_opset_note(record: ImportedModel, wanted: int) -> Optional[str]:
    """The imported graph keeps its own opset (converting a foreign graph could change its numbers)."""
    if record.kind == "onnx" and record.opset != int(wanted):
        return (
            f"opset: the imported graph uses opset {record.opset}; the 'opset' parameter ({wanted}) applies to "
            f"graphs the workbench exports, a foreign graph is not converted. Hailo staff advise opset 13 when "
            f"the parser refuses a graph: re-export it with opset_version=13"
        )
    return None


def import_parity(
    record: ImportedModel,
    static_path: str | Path,
    dynamic_path: str | Path,
    x: np.ndarray,
    torch_model: Any = None,
    cosine_min: float = 0.99999,
) -> dict[str, dict]:
    """Parity of the stage-02 graphs for an import, on held-out windows ``x`` (N, C, S, T).

    ONNX import: no PyTorch model exists, so the reference is ONNX Runtime on the static batch-1
    graph, window by window (``ort-fp32``), against the batch-dynamic graph. Factory import: PyTorch
    (``torch-fp32``) against both graphs; PyTorch's FSQ levels come from the input of its first
    ``torch.round`` call.
    """
    from workbench.graph.export import parity_metrics

    lv = record.fsq["levels_tensor"]
    bound = record.fsq["bound_tensor"]
    logits = record.logits_output
    names = [n for n in (logits, lv, bound) if n]

    def outs(path: str | Path) -> dict[str, np.ndarray]:
        o = run_outputs(path, x, names)
        return {k: v.reshape(len(x), -1) for k, v in o.items()}

    static = outs(static_path)
    if torch_model is not None:
        rounds, first = torch_round_inputs(torch_model, to_model_layout(x, record.input_layout))
        if not rounds:
            raise ModelImportError("the PyTorch model never calls torch.round: it has no FSQ rounding to compare")
        ref_bound = rounds[0].reshape(len(x), -1)
        ref = {
            "bound": ref_bound,
            "levels": np.rint(ref_bound),
            "logits": first.reshape(len(x), -1) if logits else None,
        }
        ref_name = "torch-fp32"
        targets = {"model.onnx": static, "model_dynamic.onnx": outs(dynamic_path)}
    else:
        ref = {"bound": static[bound], "levels": np.rint(static[bound]), "logits": static.get(logits)}
        ref_name = "ort-fp32 (model.onnx, batch 1, window by window)"
        targets = {"model_dynamic.onnx": outs(dynamic_path)}
    report = {}
    for name, got in targets.items():
        if logits:
            m = parity_metrics(ref["logits"], ref["levels"], got[logits], got[bound], ref["bound"])
        else:
            lv_ok = np.rint(got[bound]) == ref["levels"]
            m = {
                "n_windows": int(len(x)),
                "max_abs_diff": None,
                "cosine_min": None,
                "cosine_all": None,
                "argmax_agreement": None,
                "level_agreement": float(lv_ok.all(axis=1).mean()),
                "level_element_agreement": float(lv_ok.mean()),
                "bound_max_abs_diff": float(np.abs(got[bound].astype(np.float64) - ref["bound"]).max()),
            }
        failures = []
        if m["argmax_agreement"] is not None and m["argmax_agreement"] < 1.0:
            failures.append(f"argmax agreement {m['argmax_agreement']:.6f} < 1")
        if m["level_agreement"] < 1.0:
            failures.append(f"FSQ level agreement {m['level_agreement']:.6f} < 1")
        if m["cosine_min"] is not None and not m["cosine_min"] >= cosine_min:
            failures.append(f"min cosine {m['cosine_min']:.9f} < {cosine_min}")
        report[name] = {
            **m,
            "cosine_threshold": float(cosine_min),
            "passed": not failures,
            "failures": failures,
            "reference_backend": ref_name,
            "backend": "ort-fp32",
            "onnx": str(name),
        }
    return report
