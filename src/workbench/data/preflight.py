"""Everything about a run's inputs that can be known before its run directory exists.

A wrong `data_dir`, a window longer than the data, a sample-rate conflict, class ids without windows,
a channel-last layout, too few subjects for the split or quantization calibration sizes above the
training split fail here in seconds, with one message naming the parameter and the fix, instead of
inside stage 01 (or stage 05, after training). `workbench.runs.preflight` adds the checks of files
other domains own (checkpoint, HEF) and is what the pipeline calls.

`preflight` returns the parameters *resolved* against the data: `sample_rate_hz` left unset becomes
the data's own rate, so the run records the rate it used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

import numpy as np

from .splits import split_by_subject
from .windowset import DataError

if TYPE_CHECKING:
    from workbench.config import Params

QUANT_STAGES = ("05", "06", "07", "08")  # stages that read the quantization calibration set


@dataclass
class DataInventory:
    """What preflight learned about the data without cutting windows."""

    windows_per_subject: dict[int, int]
    sample_rate_hz: float
    rate_from: str  # "file", "dataset", "parameters", "synthetic default"
    notes: list[str] = field(default_factory=list)


@dataclass
class Preflight:
    """The resolved parameters and what the run should print before it starts."""

    params: "Params"
    notes: list[str]
    train_windows: Optional[int] = None
    subjects: Optional[int] = None


def preflight(
    params: "Params",
    stages: Iterable[str] = ("01", "02", "03", "04", "05", "06", "07", "08"),
    parent_windows: Optional[Path] = None,
    split_subjects: Optional[dict[str, list[int]]] = None,
) -> Preflight:
    """Check the data-side inputs of `stages`; raise DataError naming the parameter and the fix.

    `parent_windows`: the parent run's windows.npz when stage 01 is reused (``--from NN --parent``),
    so quantization calibration sizes are checked against the parent's training split.
    `split_subjects`: the subject split a loaded checkpoint records (``mode: load``), used instead of
    drawing one. Files of other domains (checkpoint, HEF) are checked by `workbench.runs.preflight`.
    """
    stages = [str(s) for s in stages]
    notes: list[str] = []
    problems: list[str] = []
    train_windows: Optional[int] = None
    subjects: Optional[int] = None
    if "01" in stages:
        inv = inventory(params)
        notes += inv.notes
        params = params.model_copy(update={"sample_rate_hz": inv.sample_rate_hz})
        subjects = len(inv.windows_per_subject)
        if split_subjects is None:
            split = split_by_subject(
                np.array(sorted(inv.windows_per_subject), dtype=np.int64),
                val_fraction=params.val_fraction,
                conformal_fraction=params.conformal_fraction,
                test_fraction=params.test_fraction,
                seed=params.seed,
                test_subjects=params.test_subjects,
            )
            train_subjects = split.subjects["train"]
        else:
            train_subjects = list(split_subjects.get("train", []))
        train_windows = int(sum(inv.windows_per_subject.get(int(s), 0) for s in train_subjects))
    elif parent_windows is not None and Path(parent_windows).is_file():
        from .arrays import open_npz

        split_arr = open_npz(parent_windows, keys=["split"]).get("split")
        if split_arr is not None:
            train_windows = int(np.sum(split_arr.astype(str) == "train"))
    if train_windows is not None and any(s in stages for s in ("05",)):
        problems += calibration_size_problems(params, train_windows)
    if problems:
        raise DataError(
            "the training split cannot supply the quantization calibration sets asked for:\n  - "
            + "\n  - ".join(problems)
        )
    return Preflight(params=params, notes=notes, train_windows=train_windows, subjects=subjects)


def calibration_size_problems(params: "Params", train_windows: int) -> list[str]:
    """Every quantization calibration size above the training windows, one line each (all at once)."""
    out = []
    if params.quant_calib_strategy != "gaussian_noise" and params.quant_calib_size > train_windows:
        out.append(
            f"quant_calib_size={params.quant_calib_size} > {train_windows} training windows; set "
            f"quant_calib_size <= {train_windows}"
        )
    if params.quant_compare:
        big = [s for s in params.quant_compare_sizes if s > train_windows]
        if big:
            keep = [s for s in params.quant_compare_sizes if s <= train_windows] or [train_windows]
            out.append(
                f"quant_compare_sizes {params.quant_compare_sizes}: {big} > {train_windows} training "
                f"windows; e.g. quant_compare_sizes: {keep} (or quant_compare: false)"
            )
    return out


# ---- per dataset ------------------------------------------------------------------------------
def inventory(params: "Params") -> DataInventory:
    """Subjects, windows per subject and the sample rate, read as cheaply as the format allows."""
    if params.dataset == "synthetic":
        from .synthetic import LABEL_NAMES, SYNTHETIC_RATE_HZ

        per = len(LABEL_NAMES) * params.synthetic_windows_per_class
        rate = params.sample_rate_hz or SYNTHETIC_RATE_HZ
        return DataInventory(
            {s: per for s in range(params.synthetic_subjects)},
            rate,
            "parameters" if params.sample_rate_hz else "synthetic default",
        )
    path = Path(params.data_dir).expanduser()
    if not path.exists():
        raise DataError(
            f"data_dir does not exist: {path} (dataset '{params.dataset}'); see the README's "
            f"Data section for where to get it, and `python -m workbench data check PATH`"
        )
    if params.dataset == "hapt":
        return _hapt_inventory(params, path)
    if params.dataset == "uci_har":
        return _uci_har_inventory(params, path)
    return _npz_inventory(params, path)


def _same_rate(asked: Optional[float], actual: float, what: str) -> tuple[float, str]:
    if asked is not None and abs(asked - actual) > 1e-6:
        raise DataError(
            f"{what} is recorded at {actual:g} Hz but the parameters set sample_rate_hz={asked:g}; "
            f"remove sample_rate_hz (or set {actual:g}); resampling is not supported"
        )
    return actual, "dataset"


def _hapt_inventory(params: "Params", path: Path) -> DataInventory:
    from .hapt import SAMPLE_RATE_HZ, _check_window_fits, segment_table
    from .windows import count_windows

    rate, source = _same_rate(params.sample_rate_hz, SAMPLE_RATE_HZ, "UCI HAPT")
    _, known, labels, pairs = segment_table(path)
    label_set = list(params.label_set or [1, 2, 3, 4, 5, 6])
    unknown = [a for a in label_set if a not in known]
    if unknown:
        raise DataError(
            f"label_set {label_set}: activity ids {unknown} are not in activity_labels.txt (known: {sorted(known)})"
        )
    keep = labels[np.isin(labels[:, 2], label_set)]
    _check_window_fits(keep, label_set, known, params.window)
    per: dict[int, int] = {}
    for _exp, user, _act, start, end in keep:
        per[int(user)] = per.get(int(user), 0) + count_windows(int(end - start + 1), params.window, params.hop)
    per = {u: n for u, n in per.items() if n > 0}
    notes = []
    unlabelled = sorted({int(u) for _e, u, _a, _g in pairs} - set(per))
    if unlabelled:
        notes.append(f"HAPT subjects with recordings but no windows for label_set {label_set}: {unlabelled}")
    return DataInventory(per, rate, source, notes)


def _uci_har_inventory(params: "Params", path: Path) -> DataInventory:
    from .uci_har import SAMPLE_RATE_HZ, _read_ints, find_root

    rate, source = _same_rate(params.sample_rate_hz, SAMPLE_RATE_HZ, "UCI HAR")
    root = find_root(path)
    per: dict[int, int] = {}
    for split in ("train", "test"):
        f = root / split / f"subject_{split}.txt"
        if f.is_file():
            for s in _read_ints(f, None):
                per[int(s)] = per.get(int(s), 0) + 1
    if not per:
        raise DataError(f"{root}: neither train/subject_train.txt nor test/subject_test.txt")
    return DataInventory(per, rate, source)


def _npz_inventory(params: "Params", path: Path) -> DataInventory:
    from .arrays import load_npz

    if path.suffix != ".npz" or not path.is_file():
        raise DataError(f"dataset 'npz' needs data_dir to be a .npz file, got {path}")
    ws = load_npz(path, sample_rate_hz=params.sample_rate_hz)  # layout, NaN, classes, rate conflict
    if params.window != ws.window:
        raise DataError(
            f"window={params.window} but {path} holds windows of {ws.window} samples; set window: {ws.window}"
        )
    subj, counts = np.unique(ws.subject, return_counts=True)
    source = "file" if ws.provenance.get("sample_rate_from") == "file" else "parameters"
    return DataInventory({int(s): int(c) for s, c in zip(subj, counts)}, ws.sample_rate_hz, source)
