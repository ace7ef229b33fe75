"""Quantization calibration set: the windows the INT8 quantizer sees to choose its ranges.

Not to be confused with probability calibration (``workbench.reliability``). The set is drawn from
the TRAINING split only (never validation, conformal or test windows, so later evaluation is not
contaminated) and saved exactly as the Hailo Dataflow Compiler wants it: float32, channels-last
(N, S, T, C), normalised the same way as the model input (REFERENCE.md §2).

Strategies:
- ``random_windows``: uniform sample of training windows without replacement.
- ``stratified``: balanced over classes first, then round-robin over subjects inside each class.
- ``gaussian_noise``: N(0, 1) in normalised input space, what the predecessor pipeline did. Kept for
  comparison only; it is not real calibration and is labelled so everywhere.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from workbench.data.layout import nchw_to_nhwc, nhwc_to_nchw
from workbench.errors import CalibSetError

STRATEGIES = ("random_windows", "stratified", "gaussian_noise")
TRAIN_SPLIT = "train"
HELD_OUT_SPLITS = ("val", "conformal", "test")
LAYOUT = "NHWC (N, S, T, C)"
NOISE_NOTE = (
    "gaussian_noise: N(0, 1) in normalised input space, the predecessor's approach; for comparison "
    "only, not a real quantization calibration set"
)


@dataclass
class CalibSet:
    """A quantization calibration set in DFC layout plus the description saved next to it."""

    x_nhwc: np.ndarray  # (N, S, T, C) float32, normalised
    info: dict = field(default_factory=dict)

    @property
    def x_nchw(self) -> np.ndarray:
        """The same windows in model-input layout (N, C, S, T), for ONNX Runtime."""
        return nhwc_to_nchw(self.x_nhwc)

    def __len__(self) -> int:
        return int(self.x_nhwc.shape[0])


def _split_names(split: np.ndarray) -> np.ndarray:
    s = np.asarray(split)
    if s.dtype.kind in "SO":
        s = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in s])
    return s.astype(str)


def train_indices(split: np.ndarray) -> np.ndarray:
    """Indices of training windows; raises when the split array has no training windows."""
    names = _split_names(split)
    idx = np.flatnonzero(names == TRAIN_SPLIT)
    if idx.size == 0:
        raise CalibSetError(
            f"the split array has no {TRAIN_SPLIT!r} windows (values: {sorted(set(names))}); "
            f"a quantization calibration set is drawn from the training split only"
        )
    return idx


def assert_train_only(indices: np.ndarray, split: np.ndarray) -> None:
    """Guard against leakage: every index must be a training window, none val/conformal/test."""
    names = _split_names(split)[np.asarray(indices, dtype=np.int64)]
    leaked = Counter(n for n in names if n != TRAIN_SPLIT)
    if leaked:
        raise CalibSetError(
            f"quantization calibration set would use non-training windows {dict(leaked)}; "
            f"only the {TRAIN_SPLIT!r} split may be used"
        )


def select_indices(
    y: np.ndarray, subject: np.ndarray, split: np.ndarray, strategy: str, size: int, seed: int = 0
) -> np.ndarray:
    """Indices (into the full window arrays) of ``size`` training windows chosen by ``strategy``.

    Sizes above the number of training windows raise an error naming the available count, rather than
    sampling with replacement (duplicates would silently weight some windows twice).
    """
    if strategy not in ("random_windows", "stratified"):
        raise CalibSetError(
            f"strategy {strategy!r} does not select windows; use one of "
            f"random_windows, stratified (gaussian_noise draws no windows)"
        )
    if size < 1:
        raise CalibSetError(f"quantization calibration set size must be >= 1, got {size}")
    pool = train_indices(split)
    if size > pool.size:
        raise CalibSetError(
            f"quantization calibration set size {size} exceeds the {pool.size} training windows "
            f"available; lower quant_calib_size (or quant_compare_sizes) to at most {pool.size}"
        )
    rng = np.random.default_rng(seed)
    if strategy == "random_windows":
        chosen = rng.choice(pool, size=size, replace=False)
    else:
        chosen = _stratified(pool, np.asarray(y)[pool], np.asarray(subject)[pool], size, rng)
    chosen = np.sort(chosen.astype(np.int64))
    assert_train_only(chosen, split)
    return chosen


def _stratified(pool: np.ndarray, y: np.ndarray, subj: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Class-balanced first, subject-balanced within a class, random inside each (class, subject) cell.

    Every candidate gets a key (position within its class, random class order); within a class the
    position comes from round-robin over subjects (rank inside the subject's shuffled windows, then a
    random subject order). Taking the ``size`` smallest keys gives class counts that differ by at most
    one, and subject counts within a class that differ by at most one, until a class or cell runs out.
    """
    classes = np.unique(y)
    class_order = {c: r for r, c in enumerate(rng.permutation(classes))}
    pos_in_class = np.empty(pool.size, dtype=np.int64)
    for c in classes:
        in_c = np.flatnonzero(y == c)
        subjects = np.unique(subj[in_c])
        subj_order = {s: r for r, s in enumerate(rng.permutation(subjects))}
        rank = np.empty(in_c.size, dtype=np.int64)
        for s in subjects:
            cell = in_c[subj[in_c] == s]
            local = np.flatnonzero(subj[in_c] == s)
            rank[local[rng.permutation(cell.size)]] = np.arange(cell.size)
        s_rank = np.array([subj_order[s] for s in subj[in_c]], dtype=np.int64)
        order = np.lexsort((s_rank, rank))  # primary: rank in cell, then subject order
        pos_in_class[in_c[order]] = np.arange(in_c.size)
    c_rank = np.array([class_order[c] for c in y], dtype=np.int64)
    take = np.lexsort((c_rank, pos_in_class))[:size]
    return pool[take]


def _normalise(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    if X.ndim != 4:
        raise CalibSetError(f"windows must be (N, C, S, T), got shape {X.shape}")
    want = (X.shape[1], X.shape[2], 1)
    for name, a in (("mean", mean), ("std", std)):
        if a.shape != want:
            raise CalibSetError(
                f"normaliser {name} has shape {a.shape}, expected {want} (C, S, 1) for windows "
                f"{X.shape}; use the Normalizer saved with the checkpoint"
            )
    if np.any(std <= 0):
        raise CalibSetError("normaliser std has non-positive entries; refit the Normalizer on training data")
    from workbench.data import Normalizer

    return Normalizer(mean=mean, std=std).apply(X)


def build_calibset(
    X: np.ndarray,
    y: np.ndarray,
    subject: np.ndarray,
    split: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    strategy: str = "stratified",
    size: int = 1024,
    seed: int = 0,
    label_names: Optional[Sequence[str]] = None,
) -> CalibSet:
    """Build a quantization calibration set from raw (N, C, S, T) windows and the saved normaliser.

    Returns NHWC float32 windows normalised like the model input, and a JSON-ready description.
    """
    if strategy not in STRATEGIES:
        raise CalibSetError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    X = np.asarray(X)
    n = X.shape[0]
    for name, a in (("y", y), ("subject", subject), ("split", split)):
        if len(a) != n:
            raise CalibSetError(f"{name} has {len(a)} entries but X has {n} windows")
    info: dict = {
        "purpose": "INT8 quantization calibration set (not probability calibration)",
        "strategy": strategy,
        "size": int(size),
        "seed": int(seed),
        "layout": LAYOUT,
        "dtype": "float32",
        "normalisation": {
            "applied": True,
            "formula": "(x - mean) / std",
            "mean": np.asarray(mean, dtype=float).reshape(-1).tolist(),
            "std": np.asarray(std, dtype=float).reshape(-1).tolist(),
            "shape": list(np.asarray(mean).shape),
        },
    }
    if strategy == "gaussian_noise":
        if size < 1:
            raise CalibSetError(f"quantization calibration set size must be >= 1, got {size}")
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((size,) + X.shape[1:]).astype(np.float32)
        _ = _normalise(X[:1], mean, std)  # still validate the normaliser shape
        info.update(
            source_split="none (synthetic N(0,1) noise)",
            note=NOISE_NOTE,
            class_counts=None,
            subject_counts=None,
            indices=None,
        )
    else:
        idx = select_indices(y, subject, split, strategy, size, seed)
        x = _normalise(X[idx], mean, std)
        names = list(label_names) if label_names is not None else None
        yc = Counter(int(v) for v in np.asarray(y)[idx])
        info.update(
            source_split=TRAIN_SPLIT,
            class_counts={(names[k] if names else str(k)): int(v) for k, v in sorted(yc.items())},
            subject_counts={
                str(k): int(v) for k, v in sorted(Counter(int(s) for s in np.asarray(subject)[idx]).items())
            },
            indices=idx.tolist(),
        )
    x_nhwc = nchw_to_nhwc(x)
    info["shape"] = list(x_nhwc.shape)
    return CalibSet(x_nhwc=x_nhwc, info=info)


def save_calibset(cs: CalibSet, npy_path: str | Path) -> tuple[Path, Path]:
    """Write ``calibset_nhwc.npy`` and the matching ``.json`` description next to it."""
    npy_path = Path(npy_path)
    if cs.x_nhwc.dtype != np.float32 or cs.x_nhwc.ndim != 4:
        raise CalibSetError(f"calibration array must be 4-D float32 NHWC, got {cs.x_nhwc.dtype} {cs.x_nhwc.shape}")
    npy_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(npy_path, cs.x_nhwc)
    json_path = npy_path.with_suffix(".json")
    json_path.write_text(json.dumps(cs.info, indent=2))
    return npy_path, json_path


def load_calibset(npy_path: str | Path) -> CalibSet:
    """Read a saved set and check it matches its description (layout, shape, dtype)."""
    npy_path = Path(npy_path)
    json_path = npy_path.with_suffix(".json")
    if not npy_path.is_file() or not json_path.is_file():
        raise CalibSetError(f"{npy_path} or its {json_path.name} is missing; build it with build_calibset")
    x = np.load(npy_path)
    info = json.loads(json_path.read_text())
    if info.get("layout") != LAYOUT or list(x.shape) != info.get("shape") or x.dtype != np.float32:
        raise CalibSetError(
            f"{npy_path}: array {x.dtype} {list(x.shape)} does not match its description "
            f"({info.get('layout')}, {info.get('shape')})"
        )
    return CalibSet(x_nhwc=x, info=info)


def load_windows_npz(path: str | Path) -> dict:
    """Stage 01's windows.npz as plain arrays: X (N, C, S, T) raw, y, subject, split, label_names."""
    from workbench.data.windowset import load_with_split

    ws, split = load_with_split(path)
    return {
        "X": ws.X,
        "y": ws.y,
        "subject": ws.subject,
        "split": _split_names(split),
        "label_names": list(ws.label_names),
    }
