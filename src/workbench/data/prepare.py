"""Stage 01, data half: load the dataset, split it by subject, fit the normaliser, summarise.

Later stages read the run's `windows.npz` (raw windows + the split each window belongs to), so they
evaluate on exactly the subjects held out here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from workbench.config import Params
from workbench.data.loaders import load_dataset
from workbench.data.normalize import Normalizer
from workbench.data.splits import SPLIT_NAMES, Splits, split_by_subject
from workbench.data.windowset import DataError, WindowSet


@dataclass
class PreparedData:
    windows: WindowSet
    splits: Splits
    split_of_window: np.ndarray  # (N,) str: train / val / conformal / test
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
        raise DataError(
            f"subjects {unknown} are not in the checkpoint's recorded split "
            f"{ {k: v for k, v in stored.items()} }; load it with the data it was trained on"
        )
    return Splits.from_names(names, subject)


def prepare_data(params: Params, checkpoint_meta: Optional[dict] = None) -> PreparedData:
    """Load, split by subject and normalise (statistics from the training split only).

    With a loaded checkpoint, its own subject split and normaliser are reused, so no window the model
    was trained on can land in validation or test.
    """
    ws = load_dataset(params)
    stored = (checkpoint_meta or {}).get("provenance", {}).get("split_subjects")
    if checkpoint_meta is not None and not (stored and checkpoint_meta.get("normalizer")):
        raise DataError(
            "the checkpoint records no subject split or no normaliser, so its training "
            "subjects cannot be kept out of validation and test; load a checkpoint.pt "
            "written by stage 01, or train (mode: train)"
        )
    if stored:
        splits = splits_from_subjects(ws.subject, stored)
    else:
        splits = split_by_subject(
            ws.subject,
            val_fraction=params.val_fraction,
            conformal_fraction=params.conformal_fraction,
            test_fraction=params.test_fraction,
            seed=params.seed,
            test_subjects=params.test_subjects,
        )
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
        per_split[name] = {
            "windows": int(len(idx)),
            "subjects": sorted(int(s) for s in np.unique(ws.subject[idx])),
            "per_class": {ws.label_names[k]: int(c) for k, c in enumerate(counts)},
        }
    return {
        "source": ws.source,
        "synthetic": ws.source == "synthetic" or ws.provenance.get("kind") == "synthetic",
        "shape": list(ws.X.shape),
        "layout": "(N, C, S, T)",
        "channels": ws.channel_names,
        "sites": ws.site_names,
        "labels": ws.label_names,
        "sample_rate_hz": ws.sample_rate_hz,
        "splits": per_split,
        "provenance": ws.provenance,
    }


def split_subjects(data: PreparedData) -> dict[str, list[int]]:
    return {
        name: sorted(int(s) for s in np.unique(data.windows.subject[getattr(data.splits, name)]))
        for name in SPLIT_NAMES
    }
