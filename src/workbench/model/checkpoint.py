"""Checkpoints: state_dict + model config + normalisation + label names + provenance + metrics.

Only plain Python types and tensors go in, so ``torch.load(path, weights_only=True)`` can read it:
loading never unpickles arbitrary objects, which makes a shared checkpoint safe to open.
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from workbench.errors import CheckpointError, NonFiniteModel

from .network import FSQClassifier, ModelConfig

FORMAT = "workbench-fsq-checkpoint"
FORMAT_VERSION = 1


def _plain(value: Any, where: str) -> Any:
    """Convert numpy arrays/scalars and Paths to plain types; reject anything weights_only cannot load."""
    if isinstance(value, np.generic):  # before float: np.float64 subclasses float
        return value.item()
    if value is None:
        return None
    for plain in (bool, int, float, str):  # bool first: it subclasses int
        if isinstance(value, plain):
            return plain(value)  # drops subclasses such as TorchVersion
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise CheckpointError(f"{where}: dict keys must be str or int (got {type(k).__name__} {k!r})")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return _plain(value.to_dict(), where)
    raise CheckpointError(
        f"{where}: cannot store a {type(value).__name__} in a checkpoint (plain types, "
        f"numpy arrays and tensors only); convert it first, e.g. with .to_dict()"
    )


def save_checkpoint(
    path: Union[str, Path],
    model: FSQClassifier,
    config: ModelConfig,
    normalizer: Any,
    label_names: list[str],
    provenance: dict,
    metrics: dict,
) -> Path:
    """Write the checkpoint; ``normalizer`` is a dict (or an object with ``to_dict``)."""
    if not isinstance(config, ModelConfig):
        raise CheckpointError(f"config must be a ModelConfig (got {type(config).__name__})")
    if len(label_names) != config.num_classes:
        raise CheckpointError(f"{len(label_names)} label names for a model with {config.num_classes} classes")
    if getattr(model, "config", None) is not None and model.config.diff(config):
        raise CheckpointError(
            f"the model was built with a different config than the one passed: {model.config.diff(config)}"
        )
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    bad = nonfinite_tensors(state)
    if bad:
        raise CheckpointError(
            f"refusing to save {path}: non-finite weights (NaN or inf) in "
            f"{_describe_nonfinite(bad, state)}; training diverged (lower learning_rate)"
        )
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "torch_version": str(torch.__version__),  # TorchVersion is not weights_only-safe
        "config": _plain(config.to_dict(), "config"),
        "state_dict": state,
        "normalizer": _plain(normalizer, "normalizer"),
        "label_names": [str(s) for s in label_names],
        "provenance": _plain(provenance, "provenance"),
        "metrics": _plain(metrics, "metrics"),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def _fmt_shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Problems that stop ``state`` from loading into ``model``: one readable line each."""
    own = model.state_dict()
    problems = []
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing:
        problems.append("missing from the checkpoint: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected in the checkpoint: " + ", ".join(unexpected))
    for k in own:
        if k in state and tuple(state[k].shape) != tuple(own[k].shape):
            problems.append(f"{k}: checkpoint {_fmt_shape(state[k])} vs model {_fmt_shape(own[k])}")
    return problems


def _fix_hint(diff: dict[str, tuple[Any, Any]]) -> str:
    settings = ", ".join(f"{k}: {v[0]}" for k, v in diff.items())
    return (
        f"Fix: train again with the current parameters (mode: train), or set the parameters to match "
        f"the checkpoint ({settings})."
    )


# torch's message around a refused pickle advises retrying with weights_only=False, which would run
# the payload; those sentences are never repeated to the user.
_TORCH_ADVICE = (
    "weights_only",
    "re-running",
    "pytorch 2.6",
    "file an issue",
    "check the documentation",
    "trusted source",
    "torch.serialization",
    "safe_globals",
)


def _reason(exc: Exception) -> str:
    """What was wrong with the file, in words that do not suggest loading it unsafely."""
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    glob = re.search(r"GLOBAL\s+([\w.]+)", text)
    if glob:
        return (
            f"it holds a pickled reference to {glob.group(1).rstrip('.')}, which a checkpoint never needs "
            f"and which could run code when unpickled; it was not loaded"
        )
    kept = [ln for ln in lines if not any(a in ln.lower() for a in _TORCH_ADVICE)]
    kept = [ln.split("WeightsUnpickler error:", 1)[-1].strip() for ln in kept]
    kept = [ln for ln in kept if ln]
    if kept:
        return f"{type(exc).__name__}: {kept[0]}"
    return f"{type(exc).__name__}: torch could not parse it as a tensor archive"


def nonfinite_tensors(state: dict[str, Any]) -> dict[str, int]:
    """Floating tensors holding NaN or inf, with the count of such entries (empty when all are finite)."""
    bad = {}
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            n = int((~torch.isfinite(t)).sum())
            if n:
                bad[name] = n
    return bad


def check_model_outputs(model: torch.nn.Module, outputs: dict[str, torch.Tensor], where: str) -> None:
    """NonFiniteModel when any output is NaN/inf, naming the non-finite weights (or saying they are
    finite, which points at the input windows or the normaliser)."""
    bad_out = {
        k: int((~torch.isfinite(v)).reshape(len(v), -1).any(dim=1).sum())
        for k, v in outputs.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    }
    if not bad_out:
        return
    state = model.state_dict()
    bad_w = nonfinite_tensors(state)
    cause = (
        f"non-finite weights: {_describe_nonfinite(bad_w, state)}"
        if bad_w
        else "every weight is finite, so the input windows or the normaliser hold NaN/inf"
    )
    raise NonFiniteModel(
        f"{where}: NaN/inf outputs ({', '.join(f'{k} in {n} windows' for k, n in bad_out.items())}); {cause}"
    )


def _describe_nonfinite(bad: dict[str, int], state: dict[str, Any]) -> str:
    return ", ".join(f"{k} ({n} of {state[k].numel()})" for k, n in bad.items())


def load_checkpoint(
    path: Union[str, Path], expected: Optional[ModelConfig] = None, map_location: str = "cpu"
) -> tuple[FSQClassifier, dict[str, Any]]:
    """Rebuild the model (eval mode) and return it with the metadata; always ``weights_only=True``.

    With ``expected`` (the config the current parameters ask for), any difference is an error that
    names the config fields and the tensors that would not fit.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path} (checkpoint_path must point to the "
            f"checkpoint.pt written by stage 01 of an earlier run)"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not a readable checkpoint"
        raise CheckpointError(
            f"{path} is not a workbench checkpoint ({_reason(exc)}). "
            f"Use a checkpoint.pt written by stage 01 (save_checkpoint)"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a workbench checkpoint (no '{FORMAT}' format tag; got a "
            f"{type(payload).__name__}). Use a checkpoint.pt written by stage 01"
        )
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {payload.get('format_version')}; this "
            f"code reads version {FORMAT_VERSION}. Train again to write a current one"
        )
    missing_keys = [k for k in ("config", "state_dict", "normalizer", "label_names") if k not in payload]
    if missing_keys:
        raise CheckpointError(f"{path} is an incomplete checkpoint: missing {missing_keys}")
    try:
        stored = ModelConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: stored model config is invalid: {exc}") from None
    state = payload["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: state_dict is a {type(state).__name__}, not a mapping of tensors")
    bad = nonfinite_tensors(state)
    if bad:
        raise CheckpointError(
            f"{path}: non-finite weights (NaN or inf) in {_describe_nonfinite(bad, state)}; "
            f"every number computed from them would be meaningless. The training that wrote "
            f"it diverged or the file was altered: train again (mode: train)"
        )

    if expected is not None:
        diff = stored.diff(expected)
        if diff:
            lines = [
                f"{path} does not fit the requested model config.",
                "Config fields that differ (checkpoint vs parameters):",
            ]
            lines += [f"  - {k}: {a} vs {b}" for k, a, b in ((k, v[0], v[1]) for k, v in diff.items())]
            tensor_problems = check_state_dict(FSQClassifier(expected), state)
            if tensor_problems:
                lines.append("Tensors that would not fit a model built from the parameters:")
                lines += [f"  - {p}" for p in tensor_problems]
            else:
                lines.append("All tensor shapes would fit; the difference is in non-shape settings.")
            lines.append(_fix_hint(diff))
            raise CheckpointError("\n".join(lines))

    model = FSQClassifier(stored)
    problems = check_state_dict(model, state)
    if problems:
        raise CheckpointError(
            f"{path}: the stored tensors do not fit the stored config "
            f"(was the model code changed since it was saved?):\n  - "
            + "\n  - ".join(problems)
            + "\nFix: train again with this code version."
        )
    model.load_state_dict(state)
    model.eval()
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    meta["config"] = stored
    meta["path"] = str(path)
    return model, meta
