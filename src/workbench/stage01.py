"""Stage 01 logic (train or load), kept out of the notebook so it is tested and reusable.

Later stages read the run's `windows.npz` (raw windows + the split each window belongs to) and the
checkpoint (weights + config + normaliser), so they evaluate on exactly the subjects held out here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from workbench.config import Params
from workbench.data import Normalizer, Splits, WindowSet, load_dataset, split_by_subject
from workbench.data.splits import SPLIT_NAMES
from workbench.data.windowset import DataError


@dataclass
class PreparedData:
    windows: WindowSet
    splits: Splits
    split_of_window: np.ndarray        # (N,) str: train / val / conformal / test
    normalizer: Normalizer

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        idx = getattr(self.splits, split)
        return self.normalizer.apply(self.windows.X[idx]), self.windows.y[idx]


def splits_from_subjects(subject: np.ndarray, stored: dict[str, list[int]]) -> Splits:
    """The split a checkpoint was trained with, applied to freshly loaded windows."""
    names = np.full(len(subject), "", dtype="<U9")
    for name in SPLIT_NAMES:
        names[np.isin(subject, stored.get(name, []))] = name
    unknown = sorted(set(int(s) for s in np.unique(subject[names == ""])))
    if unknown:
        raise DataError(f"subjects {unknown} are not in the checkpoint's recorded split "
                        f"{ {k: v for k, v in stored.items()} }; load it with the data it was trained on")
    return Splits.from_names(names, subject)


def prepare_data(params: Params, checkpoint_meta: Optional[dict] = None) -> PreparedData:
    """Load, split by subject and normalise (statistics from the training split only).

    With a loaded checkpoint, its own subject split and normaliser are reused, so no window the model
    was trained on can land in validation or test.
    """
    ws = load_dataset(params)
    stored = (checkpoint_meta or {}).get("provenance", {}).get("split_subjects")
    if checkpoint_meta is not None and not (stored and checkpoint_meta.get("normalizer")):
        raise DataError("the checkpoint records no subject split or no normaliser, so its training "
                        "subjects cannot be kept out of validation and test; load a checkpoint.pt "
                        "written by stage 01, or train (mode: train)")
    if stored:
        splits = splits_from_subjects(ws.subject, stored)
    else:
        splits = split_by_subject(ws.subject, val_fraction=params.val_fraction,
                                  conformal_fraction=params.conformal_fraction,
                                  test_fraction=params.test_fraction, seed=params.seed,
                                  test_subjects=params.test_subjects)
    if checkpoint_meta and checkpoint_meta.get("normalizer"):
        normalizer = Normalizer.from_dict(checkpoint_meta["normalizer"])
    else:
        normalizer = Normalizer.fit(ws.X[splits.train])
    return PreparedData(ws, splits, splits.names_per_window(len(ws.y)), normalizer)


def data_summary(data: PreparedData) -> dict[str, Any]:
    ws = data.windows
    per_split = {}
    for name in SPLIT_NAMES:
        idx = getattr(data.splits, name)
        counts = np.bincount(ws.y[idx], minlength=len(ws.label_names))
        per_split[name] = {"windows": int(len(idx)),
                           "subjects": sorted(int(s) for s in np.unique(ws.subject[idx])),
                           "per_class": {ws.label_names[k]: int(c) for k, c in enumerate(counts)}}
    return {"source": ws.source, "synthetic": ws.source == "synthetic",
            "shape": list(ws.X.shape), "layout": "(N, C, S, T)",
            "channels": ws.channel_names, "sites": ws.site_names, "labels": ws.label_names,
            "sample_rate_hz": ws.sample_rate_hz, "splits": per_split, "provenance": ws.provenance}


# --------------------------------------------------------------------------------------------------
# model: train or load
# --------------------------------------------------------------------------------------------------
def model_config_for(params: Params, data: PreparedData):
    from workbench.model import ModelConfig
    _, c, s, t = data.windows.X.shape
    if t != params.window:
        raise DataError(f"the data has {t}-sample windows but window={params.window}; set window: {t}")
    return ModelConfig.from_params(params, in_channels=c, sites=s, num_classes=len(data.windows.label_names))


def peek_checkpoint(path: str) -> dict:
    """The checkpoint's metadata (split subjects, normaliser) before the data is loaded."""
    from workbench.model import load_checkpoint
    _, meta = load_checkpoint(path)
    return meta


def fit_model(params: Params, data: PreparedData, progress: bool = True):
    """Build the model from params and the data's shape, train it, return (model, config, history)."""
    import torch

    from workbench.model import Augmenter, FSQClassifier, train_model
    config = model_config_for(params, data)
    augmenter = Augmenter(data.normalizer.mean, data.normalizer.std, rotation_deg=params.augment_rotation_deg,
                          scale=params.augment_scale)
    torch.manual_seed(params.seed)
    model = FSQClassifier(config)
    history = train_model(model, data.arrays("train"), data.arrays("val"), epochs=params.epochs,
                          batch_size=params.batch_size, learning_rate=params.learning_rate,
                          weight_decay=params.weight_decay, patience=params.patience, seed=params.seed,
                          device=params.device, max_seconds=params.max_train_seconds, progress=progress,
                          augment=augmenter if augmenter.enabled else None)
    return model, config, history


def load_model(params: Params, data: PreparedData):
    """Load `checkpoint_path`, insisting that it fits the architecture the params describe."""
    from workbench.model import load_checkpoint
    config = model_config_for(params, data)
    model, meta = load_checkpoint(params.checkpoint_path, expected=config)
    if list(meta.get("label_names", [])) != list(data.windows.label_names):
        raise DataError(f"the checkpoint was trained on labels {meta.get('label_names')} but the data has "
                        f"{data.windows.label_names}; load it with the dataset and label_set it was "
                        f"trained on")
    return model, config, meta


def evaluate_split(model, data: PreparedData, split: str) -> dict[str, Any]:
    """torch-fp32 predictions, accuracy, confusion matrix and FSQ codes on one split."""
    import torch
    X, y = data.arrays(split)
    model.cpu().eval()  # train_model may leave it on CUDA; evaluation and export run on the CPU
    with torch.no_grad():
        parts = model.forward_parts(torch.from_numpy(X))
    logits = parts["logits"].numpy()
    levels = parts["levels"].numpy().astype(np.int64)
    indices = model.fsq.codes_to_indices(parts["levels"]).numpy()
    pred = logits.argmax(1)
    k = len(data.windows.label_names)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    return {"split": split, "backend": "torch-fp32", "n": int(len(y)), "y": y, "pred": pred,
            "logits": logits, "levels": levels, "indices": indices,
            "accuracy": float((pred == y).mean()) if len(y) else float("nan"), "confusion": cm}


def split_subjects(data: PreparedData) -> dict[str, list[int]]:
    return {name: sorted(int(s) for s in np.unique(data.windows.subject[getattr(data.splits, name)]))
            for name in SPLIT_NAMES}


def save_artifacts(stage, model, config, data: PreparedData, history: Optional[dict],
                   metrics: dict[str, Any], params: Params) -> None:
    """checkpoint.pt, windows.npz, data_summary.json, train_history.json in the stage folder."""
    import json

    from workbench.model import save_checkpoint
    provenance = {"data": data.windows.provenance, "source": data.windows.source,
                  "split_subjects": split_subjects(data), "seed": params.seed,
                  "window": params.window, "hop": params.hop}
    save_checkpoint(stage.artifact("checkpoint", must_exist=False), model, config,
                    data.normalizer.to_dict(), data.windows.label_names, provenance, metrics)
    data.windows.save(stage.artifact("windows", must_exist=False), split=data.split_of_window)
    stage.artifact("data_summary", must_exist=False).write_text(json.dumps(data_summary(data), indent=2))
    if history is not None:
        stage.artifact("train_history", must_exist=False).write_text(json.dumps(history, indent=2))
