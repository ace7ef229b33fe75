"""Task metrics on the test split, computed the same way for every backend.

Everything here is plain numpy on already-computed predictions, so the same numbers come out whether
the logits were produced by PyTorch, ONNX Runtime, the Dataflow Compiler emulator or a Hailo-8. Each
result carries the name of the backend that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd


# ---- elementary metrics --------------------------------------------------------------------------
def _check_labels(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim != 1 or y_pred.ndim != 1:
        raise ValueError(
            f"labels must be 1-D class ids; got shapes {y_true.shape} and {y_pred.shape} "
            f"(take argmax over the logits first)"
        )
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true has {y_true.shape[0]} entries but y_pred has {y_pred.shape[0]}: "
            f"predictions must cover exactly the evaluated windows"
        )
    if y_true.size == 0:
        raise ValueError("no windows to evaluate (empty label arrays); check the test split")
    return y_true.astype(np.int64), y_pred.astype(np.int64)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of windows whose predicted class equals the label."""
    y_true, y_pred = _check_labels(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts; row = true class, column = predicted class."""
    y_true, y_pred = _check_labels(y_true, y_pred)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    for name, arr in (("y_true", y_true), ("y_pred", y_pred)):
        if arr.min() < 0 or arr.max() >= num_classes:
            raise ValueError(
                f"{name} holds class ids outside 0..{num_classes - 1} "
                f"(min {arr.min()}, max {arr.max()}); pass the model's number of classes"
            )
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def f1_per_class(cm: np.ndarray) -> np.ndarray:
    """Per-class F1 = 2·TP / (2·TP + FP + FN) from a confusion matrix; NaN for a class that is neither
    present in the labels nor ever predicted (its F1 is undefined, not zero)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    denom = 2 * tp + fp + fn
    out = np.full(cm.shape[0], np.nan)
    np.divide(2 * tp, denom, out=out, where=denom > 0)
    return out


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes that occur in the labels or the predictions.

    Classes absent from both are left out (their F1 is 0/0), the convention of scikit-learn's default
    label set and of torchmetrics' ``MulticlassF1Score(average="macro")``.
    """
    per_class = f1_per_class(confusion_matrix(y_true, y_pred, num_classes))
    return float(np.nanmean(per_class))


def per_subject_accuracy(y_true: np.ndarray, y_pred: np.ndarray, subject: np.ndarray) -> pd.DataFrame:
    """One row per subject: subject, n (windows), correct, accuracy; sorted by subject id."""
    y_true, y_pred = _check_labels(y_true, y_pred)
    subject = np.asarray(subject)
    if subject.shape != y_true.shape:
        raise ValueError(
            f"subject has shape {subject.shape}, labels {y_true.shape}: one subject id per window is needed"
        )
    rows = []
    for s in np.unique(subject):
        m = subject == s
        correct = int(np.sum(y_true[m] == y_pred[m]))
        rows.append({"subject": int(s), "n": int(m.sum()), "correct": correct, "accuracy": correct / int(m.sum())})
    return pd.DataFrame(rows, columns=["subject", "n", "correct", "accuracy"])


def level_agreement(levels: np.ndarray, ref_levels: np.ndarray) -> float:
    """Fraction of (window, FSQ dimension) entries whose integer level equals the reference's."""
    a, b = _check_levels(levels, ref_levels)
    return float(np.mean(a == b))


def code_agreement(levels: np.ndarray, ref_levels: np.ndarray) -> float:
    """Fraction of windows whose whole FSQ code (every dimension) equals the reference's."""
    a, b = _check_levels(levels, ref_levels)
    return float(np.mean(np.all(a == b, axis=1)))


def _check_levels(levels: np.ndarray, ref_levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(levels)
    b = np.asarray(ref_levels)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"FSQ levels must be (N, D) arrays of the same shape; got {a.shape} and "
            f"{b.shape} (compare the same windows in the same order)"
        )
    # levels are integers held in float; compare on rounded values so 3.0 and 3.0000001 agree
    return np.rint(a).astype(np.int64), np.rint(b).astype(np.int64)


def prediction_flips(y_true: np.ndarray, y_pred: np.ndarray, ref_pred: np.ndarray) -> dict[str, Any]:
    """Windows whose predicted class differs from the reference (FP32) prediction.

    ``flips`` counts every change; ``broken`` are flips away from a correct reference prediction,
    ``fixed`` flips onto the label from a wrong reference, ``other`` wrong-to-different-wrong.
    """
    y_true, y_pred = _check_labels(y_true, y_pred)
    _, ref_pred = _check_labels(y_true, ref_pred)
    flip = y_pred != ref_pred
    ref_ok = ref_pred == y_true
    now_ok = y_pred == y_true
    n_flips = int(flip.sum())
    return {
        "flips": n_flips,
        "flip_rate": n_flips / y_true.size,
        "broken": int(np.sum(flip & ref_ok)),
        "fixed": int(np.sum(flip & now_ok)),
        "other": int(np.sum(flip & ~ref_ok & ~now_ok)),
    }


# ---- one backend's evaluation ---------------------------------------------------------------------
@dataclass
class BackendResult:
    """Predictions and task metrics of one backend on the windows it could evaluate."""

    backend: str
    index: np.ndarray  # (n,) window indices into windows.npz
    y: np.ndarray  # (n,) labels
    subject: np.ndarray  # (n,)
    levels: np.ndarray  # (n, D) integer FSQ levels (float32)
    logits: np.ndarray  # (n, K)
    num_classes: int
    info: dict = field(default_factory=dict)  # backend details (output bits, file used, ...)

    def __post_init__(self) -> None:
        # argmax over NaN picks class 0: no accuracy, F1 or agreement is computed from such logits
        bad = int(np.size(self.logits) - np.count_nonzero(np.isfinite(self.logits)))
        if bad:
            raise ValueError(
                f"{self.backend}: {bad} NaN/inf logits; metrics are not computed from non-finite "
                f"predictions (check the model's weights and this backend's inputs)"
            )

    @property
    def has_logits(self) -> bool:
        """False for a model without class output (an encoder): its logits are (n, 0)."""
        return self.logits.ndim == 2 and self.logits.shape[1] > 0

    @property
    def pred(self) -> np.ndarray:
        if not self.has_logits:
            return np.full(self.y.shape[0], -1, dtype=np.int64)
        return np.argmax(self.logits, axis=1).astype(np.int64)

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    def accuracy(self) -> float:
        return accuracy(self.y, self.pred)

    def macro_f1(self) -> float:
        return macro_f1(self.y, self.pred, self.num_classes)

    def confusion(self) -> np.ndarray:
        return confusion_matrix(self.y, self.pred, self.num_classes)

    def per_subject(self) -> pd.DataFrame:
        df = per_subject_accuracy(self.y, self.pred, self.subject)
        df.insert(0, "backend", self.backend)
        return df

    def save(self, path: Path) -> Path:
        """``predictions_<backend>.npz`` for stage 08 (logits, levels, y, subject, index, backend)."""
        path = Path(path)
        np.savez(
            path,
            logits=self.logits.astype(np.float32),
            levels=self.levels.astype(np.float32),
            y=self.y.astype(np.int64),
            subject=self.subject.astype(np.int64),
            index=self.index.astype(np.int64),
            pred=self.pred,
            backend=np.array(self.backend),
        )
        return path


def load_predictions(path: str | Path) -> BackendResult:
    """Read a ``predictions_<backend>.npz`` written by :meth:`BackendResult.save`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run stage 07 with that backend first")
    with np.load(path, allow_pickle=False) as z:
        missing = {"logits", "levels", "y", "subject", "index", "backend"} - set(z.files)
        if missing:
            raise ValueError(f"{path} lacks {sorted(missing)}; it was not written by stage 07")
        logits = z["logits"]
        if not np.all(np.isfinite(logits)):
            raise ValueError(
                f"{path}: logits hold {int(np.size(logits) - np.isfinite(logits).sum())} NaN/inf "
                f"values; stage 07 never writes such a file, so it was altered or damaged: rerun "
                f"stage 07"
            )
        return BackendResult(
            backend=str(z["backend"]),
            index=z["index"],
            y=z["y"],
            subject=z["subject"],
            levels=z["levels"],
            logits=logits,
            num_classes=int(logits.shape[1]),
        )


def _align(result: BackendResult, ref: BackendResult) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``result`` and ``ref`` of the windows both evaluated, in ``result``'s order."""
    pos_ref = {int(i): k for k, i in enumerate(ref.index)}
    a = [k for k, i in enumerate(result.index) if int(i) in pos_ref]
    b = [pos_ref[int(result.index[k])] for k in a]
    return np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)


def compare_to_reference(result: BackendResult, ref: Optional[BackendResult]) -> dict[str, Any]:
    """FSQ level/code agreement and prediction flips of ``result`` against ``ref`` on shared windows."""
    empty = {
        "reference": None,
        "n_compared": 0,
        "level_agreement": np.nan,
        "code_agreement": np.nan,
        "flips": np.nan,
        "flip_rate": np.nan,
        "broken": np.nan,
        "fixed": np.nan,
    }
    if ref is None:
        return empty
    if result is ref:
        return {**empty, "reference": "self"}
    a, b = _align(result, ref)
    if a.size == 0:
        return {**empty, "reference": ref.backend}
    if not (result.has_logits and ref.has_logits):
        flips = {"flips": np.nan, "flip_rate": np.nan, "broken": np.nan, "fixed": np.nan}
    else:
        flips = prediction_flips(result.y[a], result.pred[a], ref.pred[b])
    return {
        "reference": ref.backend,
        "n_compared": int(a.size),
        "level_agreement": level_agreement(result.levels[a], ref.levels[b]),
        "code_agreement": code_agreement(result.levels[a], ref.levels[b]),
        "flips": flips["flips"],
        "flip_rate": flips["flip_rate"],
        "broken": flips["broken"],
        "fixed": flips["fixed"],
    }


REFERENCE_ORDER = ("torch-fp32", "ort-fp32")


def pick_reference(results: Sequence[BackendResult]) -> Optional[BackendResult]:
    """The FP32 reference for agreement: torch-fp32 if evaluated, else ort-fp32, else None."""
    by_name = {r.backend: r for r in results}
    for name in REFERENCE_ORDER:
        if name in by_name:
            return by_name[name]
    return None


def backend_table(results: Sequence[BackendResult]) -> pd.DataFrame:
    """One row per backend: n, accuracy, macro-F1, agreement with the FP32 reference, flips, info.
    The reference's own row says ``reference == "self"`` and leaves the agreement columns empty."""
    ref = pick_reference(results)
    rows = []
    for r in results:
        row: dict[str, Any] = {
            "backend": r.backend,
            "n_windows": r.n,
            "accuracy": r.accuracy() if r.has_logits else np.nan,
            "macro_f1": r.macro_f1() if r.has_logits else np.nan,
        }
        row.update(compare_to_reference(r, ref))
        for key in ("hardware", "output_bits", "source"):
            if key in r.info:
                row[key] = r.info[key]
        rows.append(row)
    return pd.DataFrame(rows)


def per_subject_table(results: Sequence[BackendResult]) -> pd.DataFrame:
    """Long table: backend, subject, n, correct, accuracy."""
    parts = [r.per_subject() for r in results if r.has_logits]
    if not parts:
        return pd.DataFrame(columns=["backend", "subject", "n", "correct", "accuracy"])
    return pd.concat(parts, ignore_index=True)
