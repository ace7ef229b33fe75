"""What stages 06-08 need of the trained model, readable without torch.

Stage 01 writes ``model_meta.json`` next to ``checkpoint.pt``: the normaliser fitted on the training
split, the label names and the model config (plain JSON). The Hailo machines (a Raspberry Pi with
HailoRT, a DFC machine with Python 3.10) have no torch, and a run directory copied there must still
evaluate with exactly the normaliser the model was trained with. Runs made before this file existed
are read from the checkpoint, which needs torch; without it the error says so and names the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from workbench.errors import ModelMetaError

FORMAT = "workbench-model-meta"
FORMAT_VERSION = 1


@dataclass
class ModelMeta:
    """Normaliser (as a dict of nested lists), label names and model config of one checkpoint."""

    normalizer: dict[str, Any]
    label_names: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the file it was read from

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "normalizer": self.normalizer,
            "label_names": list(self.label_names),
            "config": self.config,
        }

    def make_normalizer(self) -> Any:
        """The :class:`~workbench.data.normalize.Normalizer` (numpy only)."""
        from workbench.data.normalize import Normalizer

        return Normalizer.from_dict(self.normalizer)


def write_model_meta(path: Union[str, Path], *, normalizer: Any, label_names: list[str], config: Any) -> Path:
    """Write model_meta.json. ``normalizer`` and ``config`` are dicts or objects with ``to_dict()``."""
    norm = normalizer.to_dict() if hasattr(normalizer, "to_dict") else dict(normalizer)
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    meta = ModelMeta(normalizer=_plain(norm), label_names=[str(s) for s in label_names], config=_plain(cfg))
    path = Path(path)
    path.write_text(json.dumps(meta.to_dict(), indent=1))
    return path


def _plain(value: Any) -> Any:
    """numpy arrays and scalars to lists and numbers, recursively (json cannot write them)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def read_model_meta(meta_json: Optional[Union[str, Path]], checkpoint: Optional[Union[str, Path]] = None) -> ModelMeta:
    """model_meta.json when it exists; else the checkpoint's own metadata (needs torch).

    Raises :class:`ModelMetaError` when neither can be read here, naming what is missing.
    """
    if meta_json is not None and Path(meta_json).is_file():
        return _parse(Path(meta_json))
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is None or not ckpt.is_file():
        raise ModelMetaError(
            f"neither {meta_json} nor a checkpoint exists: run stage 01 (it writes both) or "
            f"start from a run that has them (--parent RUN)"
        )
    try:
        import torch  # noqa: F401  (only to say plainly why the checkpoint cannot be read)
    except ImportError:
        raise ModelMetaError(
            f"{ckpt.parent} has checkpoint.pt but no model_meta.json (the run predates it), and torch is not "
            f"installed here to read the checkpoint. On a machine with torch, make a new run that writes it "
            f"(python -m workbench run --to 05 -p mode load -p checkpoint_path {ckpt}) and copy that run"
        ) from None
    from workbench.model.checkpoint import load_checkpoint

    _, meta = load_checkpoint(ckpt)
    cfg = meta.get("config")
    return ModelMeta(
        normalizer=meta["normalizer"],
        label_names=list(meta["label_names"]),
        config=cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg or {}),
        source=str(ckpt),
    )


def _parse(path: Path) -> ModelMeta:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelMetaError(f"{path} is not readable JSON ({exc}); re-run stage 01") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ModelMetaError(f"{path} is not a workbench model_meta.json (no '{FORMAT}' format tag); re-run stage 01")
    if d.get("format_version") != FORMAT_VERSION:
        raise ModelMetaError(
            f"{path} has format version {d.get('format_version')}; this code reads {FORMAT_VERSION}. Re-run stage 01"
        )
    norm, labels = d.get("normalizer"), d.get("label_names")
    if not isinstance(norm, dict) or not isinstance(labels, list) or not labels:
        raise ModelMetaError(f"{path} lacks a normalizer dict or label names; re-run stage 01")
    return ModelMeta(
        normalizer=norm, label_names=[str(s) for s in labels], config=dict(d.get("config") or {}), source=str(path)
    )
