"""`WindowSet`: the one in-memory form every loader returns and every stage reads.

Windows stay in physical units (g, rad/s, uT); normalisation is a separate, training-split-only step
(`normalize.Normalizer`). On disk a WindowSet is a plain ``.npz`` readable with ``allow_pickle=False``:
names as string arrays, provenance as a JSON string, so a file from an untrusted source cannot run code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from workbench.errors import DataError

_FORMAT_VERSION = 1


@dataclass
class WindowSet:
    """Fixed-length IMU windows with labels and subjects.

    X: (N, C, S, T) float32 in physical units; y: (N,) int64 in 0..K-1; subject: (N,) int64.
    """

    X: np.ndarray
    y: np.ndarray
    subject: np.ndarray
    label_names: list[str]
    channel_names: list[str]
    site_names: list[str]
    sample_rate_hz: float
    source: str
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X)
        self.y = np.asarray(self.y)
        self.subject = np.asarray(self.subject)
        self.label_names = [str(s) for s in self.label_names]
        self.channel_names = [str(s) for s in self.channel_names]
        self.site_names = [str(s) for s in self.site_names]
        self.sample_rate_hz = float(self.sample_rate_hz)
        self.validate()

    # -- checks --------------------------------------------------------------------------------
    def validate(self, where: str = "WindowSet") -> None:
        """Raise DataError when arrays and names do not agree; called on construction and load."""
        X, y, s = self.X, self.y, self.subject
        if X.ndim != 4:
            raise DataError(
                f"{where}: X must be 4-D (N, C, S, T), got shape {X.shape}; add a site axis "
                f"of size 1 for single-site data, e.g. X[:, :, None, :]"
            )
        if not np.issubdtype(X.dtype, np.floating):
            raise DataError(f"{where}: X must be floating point, got dtype {X.dtype}")
        if X.dtype != np.float32:
            self.X = X = X.astype(np.float32)
        n, c, sites, _t = X.shape
        if y.shape != (n,) or s.shape != (n,):
            raise DataError(
                f"{where}: y and subject must have shape ({n},) to match X {X.shape}; got "
                f"y {y.shape}, subject {s.shape}"
            )
        for name, arr in (("y", y), ("subject", s)):
            if n and not np.issubdtype(arr.dtype, np.integer):
                if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.mod(arr, 1) == 0):
                    raise DataError(f"{where}: {name} must hold integers, got dtype {arr.dtype}")
        self.y = y = y.astype(np.int64)
        self.subject = s.astype(np.int64)
        k = len(self.label_names)
        if k == 0:
            raise DataError(f"{where}: label_names is empty; give one name per class")
        if n and (y.min() < 0 or y.max() >= k):
            raise DataError(
                f"{where}: labels must lie in 0..{k - 1} (len(label_names)={k}); found {int(y.min())}..{int(y.max())}"
            )
        if len(self.channel_names) != c:
            raise DataError(f"{where}: {len(self.channel_names)} channel names for {c} channels in X")
        if len(self.site_names) != sites:
            raise DataError(f"{where}: {len(self.site_names)} site names for {sites} sites in X")
        if not np.isfinite(self.sample_rate_hz) or self.sample_rate_hz <= 0:
            raise DataError(f"{where}: sample_rate_hz must be a positive number, got {self.sample_rate_hz}")
        if not np.all(np.isfinite(X)):
            bad = np.argwhere(~np.isfinite(X))[0]
            raise DataError(
                f"{where}: X holds NaN or inf (first at window {bad[0]}, channel "
                f"{self.channel_names[bad[1]]}, site {self.site_names[bad[2]]}, sample {bad[3]}); "
                f"drop or interpolate those windows before loading"
            )

    # -- shape helpers -------------------------------------------------------------------------
    @property
    def n_windows(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    @property
    def window(self) -> int:
        return int(self.X.shape[3])

    @property
    def subjects(self) -> list[int]:
        return [int(v) for v in np.unique(self.subject)]

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.y, minlength=self.n_classes)
        return {name: int(c) for name, c in zip(self.label_names, counts)}

    def subset(self, idx: Sequence[int] | np.ndarray) -> "WindowSet":
        """Windows at `idx` (index array or boolean mask); names and provenance are shared copies."""
        idx = np.asarray(idx)
        return WindowSet(
            X=self.X[idx],
            y=self.y[idx],
            subject=self.subject[idx],
            label_names=list(self.label_names),
            channel_names=list(self.channel_names),
            site_names=list(self.site_names),
            sample_rate_hz=self.sample_rate_hz,
            source=self.source,
            provenance=json.loads(json.dumps(self.provenance)),
        )

    # -- disk ----------------------------------------------------------------------------------
    def save(self, path: str | Path, split: Optional[np.ndarray] = None) -> None:
        """Write an ``.npz`` (no pickles). `split`: optional per-window split names ("train", ...)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = dict(
            X=self.X.astype(np.float32),
            y=self.y.astype(np.int64),
            subject=self.subject.astype(np.int64),
            label_names=np.array(self.label_names, dtype=str),
            channel_names=np.array(self.channel_names, dtype=str),
            site_names=np.array(self.site_names, dtype=str),
            sample_rate_hz=np.array(self.sample_rate_hz, dtype=np.float64),
            source=np.array(self.source, dtype=str),
            provenance=np.array(json.dumps(self.provenance, sort_keys=True), dtype=str),
            format_version=np.array(_FORMAT_VERSION, dtype=np.int64),
        )
        if split is not None:
            split = np.asarray(split, dtype=str)
            if split.shape != (self.n_windows,):
                raise DataError(f"split must have one name per window, shape ({self.n_windows},); got {split.shape}")
            arrays["split"] = split
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:  # a file handle keeps numpy from appending a second ".npz"
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> tuple["WindowSet", Optional[np.ndarray]]:
        """Read a file written by `save`; returns (windows, split names or None)."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"window file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise DataError(f"{path} is not a readable .npz without pickles: {exc}") from exc
        need = (
            "X",
            "y",
            "subject",
            "label_names",
            "channel_names",
            "site_names",
            "sample_rate_hz",
            "source",
            "provenance",
        )
        missing = [k for k in need if k not in d]
        if missing:
            raise DataError(
                f"{path} lacks {missing}: it was not written by WindowSet.save (for a plain "
                f"array file with X, y, subject use load_npz)"
            )
        ws = cls(
            X=d["X"],
            y=d["y"],
            subject=d["subject"],
            label_names=d["label_names"].tolist(),
            channel_names=d["channel_names"].tolist(),
            site_names=d["site_names"].tolist(),
            sample_rate_hz=float(d["sample_rate_hz"]),
            source=str(d["source"]),
            provenance=json.loads(str(d["provenance"])),
        )
        split = d["split"].astype(str) if "split" in d else None
        return ws, split


@dataclass
class SplitWindows:
    """The windows of one split of a run's windows.npz, normalised when a normaliser was given."""

    X: np.ndarray  # (N, C, S, T) float32
    y: np.ndarray  # (N,) int64
    subject: np.ndarray  # (N,) int64
    index: np.ndarray  # (N,) int64 rows of windows.npz
    label_names: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)


def load_with_split(path: str | Path) -> tuple[WindowSet, np.ndarray]:
    """A run's windows.npz and its per-window split names; a file without them is an error, since
    every later stage must know which windows were held out."""
    ws, split = WindowSet.load(path)
    if split is None:
        raise DataError(
            f"{path} has no 'split' array: it was not written by stage 01 of a run; rerun "
            f"stage 01 so later stages know which windows are held out"
        )
    return ws, np.asarray(split).astype(str)


def load_split_windows(
    path: str | Path, split_name: str, normalizer: Any = None, limit: Optional[int] = None
) -> SplitWindows:
    """The one loader of a single split (first ``limit`` windows, in file order so reruns see the same
    ones), normalised with ``normalizer`` (an object with ``apply``) when given."""
    ws, split = load_with_split(path)
    idx = np.flatnonzero(split == split_name)
    if idx.size == 0:
        raise DataError(f"{path} has no '{split_name}' windows (splits present: {sorted(set(split.tolist()))})")
    if limit is not None:
        idx = idx[: int(limit)]
    X = ws.X[idx] if normalizer is None else normalizer.apply(ws.X[idx])
    return SplitWindows(
        X=np.ascontiguousarray(X, dtype=np.float32),
        y=np.asarray(ws.y[idx], dtype=np.int64),
        subject=np.asarray(ws.subject[idx], dtype=np.int64),
        index=idx.astype(np.int64),
        label_names=list(ws.label_names),
    )
