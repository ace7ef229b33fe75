"""UCI HAR (the windowed 2012 release): ``UCI HAR Dataset/{train,test}/Inertial Signals/``.

Each signal file holds one 128-sample window per line (2.56 s at 50 Hz, 50% overlap, already
filtered by the authors). We use total_acc_{x,y,z} (g, gravity included, so it matches HAPT raw) and
body_gyro_{x,y,z} (rad/s): X (N, 6, 1, 128). Train and test are merged; the original test subjects
are kept in the provenance so `test_subjects` can reproduce the official split.

Citation: D. Anguita, A. Ghio, L. Oneto, X. Parra, J. L. Reyes-Ortiz, "A Public Domain Dataset for
Human Activity Recognition Using Smartphones", ESANN 2013. UCI ML Repository id 240.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .hapt import read_xyz
from .windowset import DataError, WindowSet

SAMPLE_RATE_HZ = 50.0
WINDOW = 128
SIGNALS = ["total_acc_x", "total_acc_y", "total_acc_z", "body_gyro_x", "body_gyro_y", "body_gyro_z"]
CHANNEL_NAMES = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
DEFAULT_LABELS = ["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING"]
CITATION = (
    "Anguita, Ghio, Oneto, Parra, Reyes-Ortiz: A Public Domain Dataset for Human Activity "
    "Recognition Using Smartphones. ESANN 2013. UCI ML Repository id 240."
)


def find_root(data_dir: str | Path) -> Path:
    """The folder that holds train/ and test/ (the 'UCI HAR Dataset' folder or its parent)."""
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(f"UCI HAR folder not found: {d}; pass the 'UCI HAR Dataset' folder (or its parent)")
    for cand in (d, d / "UCI HAR Dataset"):
        if (cand / "train" / "Inertial Signals").is_dir() or (cand / "test" / "Inertial Signals").is_dir():
            return cand
    raise DataError(
        f"{d}: no train/Inertial Signals/ or test/Inertial Signals/ (the UCI HAR layout); "
        f"pass the 'UCI HAR Dataset' folder"
    )


def _labels(root: Path) -> list[str]:
    f = root / "activity_labels.txt"
    if not f.is_file():
        return list(DEFAULT_LABELS)
    names = {}
    for ln, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
        parts = line.split()
        if parts:
            if len(parts) < 2 or not parts[0].isdigit():
                raise DataError(f"{f}:{ln}: expected '<id> <NAME>', got {line!r}")
            names[int(parts[0])] = parts[1]
    if sorted(names) != list(range(1, len(names) + 1)):
        raise DataError(f"{f}: ids must be 1..K without gaps, got {sorted(names)}")
    return [names[i] for i in range(1, len(names) + 1)]


def _read_ints(path: Path, n: int | None) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"missing {path}")
    arr = read_xyz(path, ncols=1)[:, 0]
    if np.any(arr != np.round(arr)):
        raise DataError(f"{path}:{int(np.flatnonzero(arr != np.round(arr))[0]) + 1}: not an integer")
    if n is not None and len(arr) != n:
        raise DataError(f"{path} has {len(arr)} rows but the signal files have {n}; one row per window")
    return arr.astype(np.int64)


def read_split(root: Path, split: str, n_labels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X (N, 6, 1, 128), y (0-based), subject for one of 'train' / 'test'."""
    sig_dir = root / split / "Inertial Signals"
    chans = []
    for name in SIGNALS:
        f = sig_dir / f"{name}_{split}.txt"
        if not f.is_file():
            raise DataError(f"missing {f} (the loader uses {', '.join(SIGNALS)})")
        a = read_xyz(f, ncols=WINDOW)
        if chans and len(a) != len(chans[0]):
            raise DataError(
                f"{f} has {len(a)} rows but {SIGNALS[0]}_{split}.txt has {len(chans[0])}; every "
                f"signal file holds one row per window"
            )
        chans.append(a)
    n = len(chans[0])
    y = _read_ints(root / split / f"y_{split}.txt", n)
    subject = _read_ints(root / split / f"subject_{split}.txt", n)
    bad = np.flatnonzero((y < 1) | (y > n_labels))
    if len(bad):
        raise DataError(f"{root / split / f'y_{split}.txt'}:{bad[0] + 1}: label {y[bad[0]]} out of range 1..{n_labels}")
    X = np.stack(chans, axis=1)[:, :, None, :].astype(np.float32)
    return X, y - 1, subject


def load_uci_har(data_dir: str | Path) -> WindowSet:
    """Both splits merged; provenance lists the official test subjects."""
    root = find_root(data_dir)
    label_names = _labels(root)
    parts = {}
    for split in ("train", "test"):
        if (root / split / "Inertial Signals").is_dir():
            parts[split] = read_split(root, split, len(label_names))
    X = np.concatenate([p[0] for p in parts.values()])
    y = np.concatenate([p[1] for p in parts.values()])
    subject = np.concatenate([p[2] for p in parts.values()])
    test_subjects = sorted({int(s) for s in parts["test"][2]}) if "test" in parts else []
    return WindowSet(
        X=X,
        y=y,
        subject=subject,
        label_names=label_names,
        channel_names=list(CHANNEL_NAMES),
        site_names=["waist"],
        sample_rate_hz=SAMPLE_RATE_HZ,
        source="uci_har",
        provenance={
            "kind": "real",
            "dataset": "UCI HAR (Inertial Signals)",
            "path": str(root.resolve()),
            "splits": sorted(parts),
            "signals": list(SIGNALS),
            "official_test_subjects": test_subjects,
            "citation": CITATION,
        },
    )
