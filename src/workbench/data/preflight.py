"""Data checks that need the dataset but not its signals, run before a run directory is created, so a
wrong `data_dir` or a window longer than the data fails in a second instead of inside stage 01."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .windowset import DataError

if TYPE_CHECKING:
    from workbench.config import Params


def preflight(params: "Params") -> None:
    """Raise DataError naming the parameter and the fix; synthetic data always fits."""
    if params.dataset == "synthetic":
        return
    path = Path(params.data_dir).expanduser()
    if not path.exists():
        raise DataError(f"data_dir does not exist: {path} (dataset '{params.dataset}'); see the README's "
                        f"Data section for where to get it, and `python -m workbench data check PATH`")
    if params.dataset == "hapt":
        from .hapt import _check_window_fits, segment_table
        _, known, labels, _ = segment_table(path)
        label_set = list(params.label_set or [1, 2, 3, 4, 5, 6])
        unknown = [a for a in label_set if a not in known]
        if unknown:
            raise DataError(f"label_set {label_set}: activity ids {unknown} are not in activity_labels.txt "
                            f"(known: {sorted(known)})")
        _check_window_fits(labels, label_set, known, params.window)
    elif params.dataset == "npz":
        if path.suffix != ".npz" or not path.is_file():
            raise DataError(f"dataset 'npz' needs data_dir to be a .npz file, got {path}")
        with np.load(path, allow_pickle=False) as f:
            if "X" not in f.files:
                raise DataError(f"{path} has no array 'X' (N, C, S, T); found {f.files}")
            t = f["X"].shape[-1]
        if params.window != t:
            raise DataError(f"window={params.window} but {path} holds windows of {t} samples; set window: {t}")
