"""workbench.model: FSQ quantizer, Conv2d-FSQ classifier, training loop and checkpoints.

Names load lazily (PEP 562): ``import workbench.model.meta`` (model_meta.json, what stages 06-08 need)
works where torch is not installed, and touching a torch-backed name is what imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Augmenter": "augment",
    "random_rotations": "augment",
    "FSQ": "fsq",
    "fsq_numpy_constants": "fsq",
    "codebook_usage": "fsq",
    "perplexity": "fsq",
    "ModelConfig": "network",
    "FSQClassifier": "network",
    "train_model": "train",
    "predict_logits": "train",
    "resolve_device": "train",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "check_state_dict": "checkpoint",
    "CheckpointError": "checkpoint",
    "ModelMeta": "meta",
    "ModelMetaError": "meta",
    "read_model_meta": "meta",
    "write_model_meta": "meta",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
