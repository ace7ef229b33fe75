"""Subject-wise splits: no subject's windows in two splits, so test accuracy is on unseen people."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from .windowset import DataError

SPLIT_NAMES = ("train", "val", "conformal", "test")


@dataclass
class Splits:
    """Window index arrays per split, and the subjects of each."""

    train: np.ndarray
    val: np.ndarray
    conformal: np.ndarray
    test: np.ndarray
    subjects: dict[str, list[int]] = field(default_factory=dict)

    def indices(self, name: str) -> np.ndarray:
        if name not in SPLIT_NAMES:
            raise KeyError(f"unknown split {name!r}; splits are {SPLIT_NAMES}")
        return getattr(self, name)

    def names_per_window(self, n: int) -> np.ndarray:
        """(n,) array of split names, e.g. for WindowSet.save(split=...)."""
        out = np.full(n, "", dtype="<U9")
        for name in SPLIT_NAMES:
            out[self.indices(name)] = name
        if np.any(out == ""):
            raise DataError(f"{int(np.sum(out == ''))} windows belong to no split")
        return out

    @classmethod
    def from_names(cls, names: np.ndarray, subject: np.ndarray) -> "Splits":
        """Rebuild from per-window split names (the inverse of names_per_window)."""
        names = np.asarray(names).astype(str)
        parts = {s: np.flatnonzero(names == s) for s in SPLIT_NAMES}
        subs = {s: sorted({int(v) for v in subject[idx]}) for s, idx in parts.items()}
        return cls(**parts, subjects=subs)


def split_by_subject(
    subject: np.ndarray,
    val_fraction: float = 0.15,
    conformal_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
    test_subjects: Optional[Sequence[int]] = None,
) -> Splits:
    """Assign whole subjects to train / val / conformal / test.

    Each non-train split gets max(1, round(fraction * n_subjects)) subjects, drawn with `seed`;
    explicit `test_subjects` replace the drawn test set. Every split holds at least one subject.
    """
    subject = np.asarray(subject).astype(np.int64)
    uniq = np.unique(subject)
    n = len(uniq)
    for name, frac in (
        ("val_fraction", val_fraction),
        ("conformal_fraction", conformal_fraction),
        ("test_fraction", test_fraction),
    ):
        if not 0 < frac < 1:
            raise DataError(f"{name} must be between 0 and 1, got {frac}")
    rng = np.random.default_rng([int(seed), 303])
    if test_subjects is not None:
        test = sorted({int(s) for s in test_subjects})
        missing = [s for s in test if s not in set(uniq.tolist())]
        if missing or not test:
            raise DataError(
                f"test_subjects {missing or test} not in the data (subjects: {uniq.tolist()}); choose from those"
            )
        rest = np.array([s for s in uniq if s not in set(test)], dtype=np.int64)
    else:
        test = None
        rest = uniq
    n_val = max(1, int(round(val_fraction * n)))
    n_conf = max(1, int(round(conformal_fraction * n)))
    n_test = 0 if test is not None else max(1, int(round(test_fraction * n)))
    if len(rest) - n_val - n_conf - n_test < 1:
        need = n_val + n_conf + n_test + 1 + (len(test) if test else 0)
        raise DataError(
            f"too few subjects ({n}) for a subject-wise split: need at least {need} (one for "
            f"train, {n_val} val, {n_conf} conformal, {len(test) if test else n_test} test); "
            f"use data with more subjects or smaller fractions"
        )
    perm = rng.permutation(rest)
    val = sorted(perm[:n_val].tolist())
    conf = sorted(perm[n_val : n_val + n_conf].tolist())
    if test is None:
        test = sorted(perm[n_val + n_conf : n_val + n_conf + n_test].tolist())
        train = sorted(perm[n_val + n_conf + n_test :].tolist())
    else:
        train = sorted(perm[n_val + n_conf :].tolist())
    subs = {"train": train, "val": val, "conformal": conf, "test": test}
    groups = list(subs.values())
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            assert not set(groups[i]) & set(groups[j]), "a subject landed in two splits"
    assert sum(len(g) for g in groups) == n, "a subject landed in no split"
    parts = {k: np.flatnonzero(np.isin(subject, v)) for k, v in subs.items()}
    return Splits(**parts, subjects={k: [int(x) for x in v] for k, v in subs.items()})
