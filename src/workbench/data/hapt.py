"""UCI HAPT v2.1 raw recordings: labelled segments cut into fixed windows.

Layout (see ../shared/datasets/hapt-rawdata/PROVENANCE.md): ``RawData/acc_expXX_userYY.txt`` and
``gyro_expXX_userYY.txt`` (3 space-separated floats per line, 50 Hz; acc in g with gravity, gyro in
rad/s) and ``RawData/labels.txt`` with rows ``exp user activity start end``. The README does not say
whether start/end are 0- or 1-based; we read them as **1-based and inclusive** (MATLAB style, the usual
reading; every end index then lies within its file), i.e. rows ``start-1 .. end-1`` in Python.

Citation: J.-L. Reyes-Ortiz, L. Oneto, A. Samà, X. Parra, D. Anguita, "Transition-Aware Human Activity
Recognition Using Smartphones", Neurocomputing 171 (2016) 754-767. UCI ML Repository id 341.
Non-commercial use only (dataset README).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from .windows import count_windows, cut_windows
from .windowset import DataError, WindowSet

SAMPLE_RATE_HZ = 50.0
CHANNEL_NAMES = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
CITATION = (
    "Reyes-Ortiz, Oneto, Samà, Parra, Anguita: Transition-Aware Human Activity Recognition Using "
    "Smartphones. Neurocomputing 171 (2016) 754-767. UCI ML Repository id 341."
)
DEFAULT_ACTIVITIES = {
    1: "WALKING",
    2: "WALKING_UPSTAIRS",
    3: "WALKING_DOWNSTAIRS",
    4: "SITTING",
    5: "STANDING",
    6: "LAYING",
    7: "STAND_TO_SIT",
    8: "SIT_TO_STAND",
    9: "SIT_TO_LIE",
    10: "LIE_TO_SIT",
    11: "STAND_TO_LIE",
    12: "LIE_TO_STAND",
}
_FILE_RE = re.compile(r"^(acc|gyro)_exp(\d+)_user(\d+)\.txt$")


def find_rawdata(data_dir: str | Path) -> Path:
    """The RawData folder, given it or the folder that holds it."""
    d = Path(data_dir)
    if not d.exists():
        raise DataError(
            f"HAPT folder not found: {d}; pass the folder that holds RawData/ (e.g. "
            f"'../shared/datasets/hapt-rawdata/HAPT Data Set')"
        )
    if not d.is_dir():
        raise DataError(f"HAPT data_dir must be a folder, got a file: {d}")
    if (d / "RawData").is_dir():
        return d / "RawData"
    if (d / "labels.txt").is_file() and any(d.glob("acc_exp*_user*.txt")):
        return d
    raise DataError(
        f"{d} has no RawData/ folder (and is not one itself: no labels.txt with "
        f"acc_expXX_userYY.txt next to it); point data_dir at the folder that holds RawData/"
    )


def read_activity_labels(raw: Path) -> dict[int, str]:
    """Activity names from activity_labels.txt (next to RawData/ or inside it); the defaults if absent."""
    for cand in (raw.parent / "activity_labels.txt", raw / "activity_labels.txt"):
        if cand.is_file():
            names = {}
            for ln, line in enumerate(cand.read_text(errors="replace").splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) < 2 or not parts[0].isdigit():
                    raise DataError(f"{cand}:{ln}: expected '<id> <NAME>', got {line!r}")
                names[int(parts[0])] = parts[1]
            return names
    return dict(DEFAULT_ACTIVITIES)


def find_pairs(raw: Path) -> list[tuple[int, int, Path, Path]]:
    """(exp, user, acc file, gyro file) for every recording; a file without its partner is an error."""
    found: dict[tuple[str, int, int], Path] = {}
    for f in raw.iterdir():
        m = _FILE_RE.match(f.name)
        if m:
            found[(m.group(1), int(m.group(2)), int(m.group(3)))] = f
    if not found:
        raise DataError(f"{raw}: no acc_expXX_userYY.txt / gyro_expXX_userYY.txt files")
    pairs = []
    for kind, exp, user in sorted(found, key=lambda k: (k[1], k[2], k[0])):
        other = "gyro" if kind == "acc" else "acc"
        if (other, exp, user) not in found:
            have = found[(kind, exp, user)].name
            raise DataError(
                f"{raw}: {have} has no {other} partner {other}_exp{exp:02d}_user{user:02d}.txt; "
                f"every recording needs both files"
            )
        if kind == "acc":
            pairs.append((exp, user, found[("acc", exp, user)], found[("gyro", exp, user)]))
    return pairs


def read_xyz(path: Path, ncols: int = 3) -> np.ndarray:
    """A whitespace-separated numeric text file as float64 (rows, ncols); DataError names file and line."""
    try:
        df = pd.read_csv(path, sep=r"\s+", header=None, dtype=np.float64, engine="c")
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: empty file") from exc
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not {ncols} numbers per line ({_first_bad_line(path, ncols) or exc})") from exc
    arr = df.to_numpy()
    if arr.shape[1] != ncols:
        raise DataError(
            f"{path}: expected {ncols} columns, found {arr.shape[1]} "
            f"({_first_bad_line(path, ncols) or 'check the separator'})"
        )
    bad = np.argwhere(~np.isfinite(arr))
    if len(bad):
        raise DataError(f"{path}:{bad[0][0] + 1}: NaN or missing value ({len(bad)} in the file)")
    return arr


def _first_bad_line(path: Path, ncols: int) -> Optional[str]:
    with open(path, errors="replace") as fh:
        for ln, line in enumerate(fh, 1):
            parts = line.split()
            try:
                ok = len(parts) == ncols and all(np.isfinite(float(p)) for p in parts)
            except ValueError:
                ok = False
            if not ok:
                return f"line {ln}: {line.strip()[:80]!r}"
    return None


def read_labels(raw: Path, known: dict[int, str]) -> np.ndarray:
    """labels.txt as int64 (rows, 5): exp, user, activity, start, end; checked line by line."""
    path = raw / "labels.txt"
    if not path.is_file():
        raise DataError(f"{raw}: labels.txt is missing (rows 'exp user activity start end')")
    rows = []
    for ln, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5 or not all(p.lstrip("-").isdigit() for p in parts):
            raise DataError(f"{path}:{ln}: expected 5 integers 'exp user activity start end', got {line!r}")
        exp, user, act, start, end = (int(p) for p in parts)
        if act not in known:
            raise DataError(
                f"{path}:{ln}: activity id {act} is out of range (known ids "
                f"{min(known)}..{max(known)} from activity_labels.txt)"
            )
        if start < 1 or end < start:
            raise DataError(f"{path}:{ln}: segment {start}..{end} is not a valid 1-based inclusive range")
        rows.append((exp, user, act, start, end))
    if not rows:
        raise DataError(f"{path}: no label rows")
    return np.array(rows, dtype=np.int64)


def load_hapt(
    data_dir: str | Path, window: int = 100, hop: int = 50, label_set: Sequence[int] = (1, 2, 3, 4, 5, 6)
) -> WindowSet:
    """Windows of `window` samples every `hop` samples inside each labelled segment of `label_set`.

    X (N, 6, 1, window): acc_x, acc_y, acc_z (g), gyro_x, gyro_y, gyro_z (rad/s), site "waist".
    y = position of the segment's activity id in `label_set`; subject = HAPT user id (1..30).
    """
    raw = find_rawdata(data_dir)
    known = read_activity_labels(raw)
    label_set = [int(a) for a in label_set]
    unknown = [a for a in label_set if a not in known]
    if unknown or not label_set or len(set(label_set)) != len(label_set):
        raise DataError(
            f"label_set {label_set} must list distinct activity ids among "
            f"{sorted(known)} ({', '.join(f'{k}={v}' for k, v in sorted(known.items()))})"
        )
    if window < 1 or hop < 1:
        raise DataError(f"window and hop must be >= 1; got window={window}, hop={hop}")
    pairs = find_pairs(raw)
    labels = read_labels(raw, known)
    by_exp = {exp: (user, acc, gyro) for exp, user, acc, gyro in pairs}
    keep = labels[np.isin(labels[:, 2], label_set)]
    if len(keep) == 0:
        raise DataError(f"{raw / 'labels.txt'}: no segment has an activity in label_set {label_set}")
    _check_window_fits(keep, label_set, known, window)

    remap = {a: i for i, a in enumerate(label_set)}
    xs, ys, ss = [], [], []
    for exp in sorted(set(labels[:, 0].tolist())):
        if exp not in by_exp:
            raise DataError(
                f"{raw / 'labels.txt'}: experiment {exp} has labels but no "
                f"acc_exp{exp:02d}_user*.txt / gyro_exp{exp:02d}_user*.txt files"
            )
    for exp, (user, acc_f, gyro_f) in sorted(by_exp.items()):
        segs = keep[keep[:, 0] == exp]
        acc = read_xyz(acc_f)
        gyro = read_xyz(gyro_f)
        if len(acc) != len(gyro):
            raise DataError(
                f"{acc_f.name} has {len(acc)} rows but {gyro_f.name} has {len(gyro)}; a pair "
                f"must have one row per sample in both"
            )
        all_segs = labels[labels[:, 0] == exp]
        _check_segments(raw, exp, user, all_segs, len(acc), labels)
        if len(segs) == 0:
            continue
        sig = np.concatenate([acc, gyro], axis=1).T.astype(np.float32)  # (6, L)
        for _exp, _user, act, start, end in segs:
            w, _starts = cut_windows(sig, int(start) - 1, int(end), window, hop)
            if len(w):
                xs.append(w)
                ys.append(np.full(len(w), remap[int(act)], dtype=np.int64))
                ss.append(np.full(len(w), user, dtype=np.int64))
    X = np.concatenate(xs)[:, :, None, :]
    return WindowSet(
        X=X,
        y=np.concatenate(ys),
        subject=np.concatenate(ss),
        label_names=[known[a] for a in label_set],
        channel_names=list(CHANNEL_NAMES),
        site_names=["waist"],
        sample_rate_hz=SAMPLE_RATE_HZ,
        source="hapt",
        provenance={
            "kind": "real",
            "dataset": "UCI HAPT v2.1 raw",
            "path": str(raw.resolve()),
            "n_files": 2 * len(pairs) + 1,
            "n_recordings": len(pairs),
            "window": int(window),
            "hop": int(hop),
            "label_set": label_set,
            "label_indexing": "labels.txt start/end read as 1-based inclusive",
            "citation": CITATION,
            "license": "dataset README: any commercial use is prohibited",
        },
    )


def _check_window_fits(segs: np.ndarray, label_set: list[int], known: dict[int, str], window: int) -> None:
    """Every kept activity needs at least one segment of `window` samples; name the largest allowed."""
    lengths = segs[:, 4] - segs[:, 3] + 1
    longest = {a: int(lengths[segs[:, 2] == a].max()) if np.any(segs[:, 2] == a) else 0 for a in label_set}
    absent = [a for a, v in longest.items() if v == 0]
    if absent:
        raise DataError(f"activities {absent} of label_set have no labelled segment in labels.txt")
    short = [a for a, v in longest.items() if v < window]
    if short:
        max_ok = min(longest.values())
        raise DataError(
            f"window={window} is longer than every segment of "
            f"{', '.join(f'{known[a]} (longest {longest[a]})' for a in short)}; use window <= "
            f"{max_ok} for label_set {label_set}"
        )


def _check_segments(raw: Path, exp: int, user: int, segs: np.ndarray, n_rows: int, labels: np.ndarray) -> None:
    for row in segs:
        line = int(np.flatnonzero((labels == row).all(axis=1))[0]) + 1
        if int(row[1]) != user:
            raise DataError(
                f"{raw / 'labels.txt'}:{line}: experiment {exp} is labelled user {row[1]} but its files say user {user}"
            )
        if int(row[4]) > n_rows:
            raise DataError(
                f"{raw / 'labels.txt'}:{line}: segment ends at sample {row[4]} but "
                f"acc_exp{exp:02d}_user{user:02d}.txt has only {n_rows} rows"
            )


def segment_table(data_dir: str | Path) -> tuple[Path, dict[int, str], np.ndarray, list]:
    """(RawData path, activity names, labels rows, pairs) without reading the signal files."""
    raw = find_rawdata(data_dir)
    known = read_activity_labels(raw)
    return raw, known, read_labels(raw, known), find_pairs(raw)


def expected_window_count(labels: np.ndarray, window: int, hop: int, label_set: Sequence[int]) -> dict[int, int]:
    """Windows per activity id that load_hapt will cut (for summaries and tests)."""
    out = {int(a): 0 for a in label_set}
    for _e, _u, act, start, end in labels:
        if int(act) in out:
            out[int(act)] += count_windows(int(end - start + 1), window, hop)
    return out
