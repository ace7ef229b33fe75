"""Where stage 08's logits come from: the run directory's backends (the one module of this package that
knows about runs; everything else takes arrays).

* test split: stage 07's ``predictions_<backend>.npz`` (exactly the outputs stage 07 reported);
* validation and conformal-calibration splits: the same backend objects of ``workbench.evaluate``
  (same shared host post-processor) run on those windows, normalised with the checkpoint's normaliser.

A backend that cannot produce logits for every split (the ``hailo-emulator`` only replays the test
windows stage 06 emulated) cannot be temperature-scaled or conformally calibrated on its own outputs;
it is listed with that reason instead of being analysed with borrowed numbers.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from .report import SplitLogits

SPLITS = ("val", "conformal", "test")


def collect_split_logits(
    stage: Any, backends: Optional[Sequence[str]] = None, hef_path: Optional[str] = None, batch_size: int = 256
) -> tuple[dict[str, dict[str, SplitLogits]], pd.DataFrame, list[str]]:
    """Logits per backend and split for an open stage-08 ``Stage``.

    ``backends=None``: every backend stage 07 wrote predictions for that can also run on the
    validation and conformal windows. An explicit list must name backends that can; otherwise a
    ``BackendUnavailable`` names the backend and the reason. Returns (logits[backend][split], a table
    of what was used or skipped and why, label names).
    """
    from workbench.evaluate import backends as be
    from workbench.evaluate.metrics import load_predictions

    ctx = be.EvalContext.from_stage(stage, hef_path=hef_path)
    normalizer, label_names = be.load_normalizer(ctx.model_meta, ctx.checkpoint)
    windows = stage.artifact("windows")
    data = {s: be.load_test_data(windows, normalizer, split_name=s) for s in ("val", "conformal")}
    test_data = None
    names = list(be.BACKEND_NAMES) if backends is None else list(backends)
    unknown = [n for n in names if n not in be.REGISTRY]
    if unknown:
        raise be.BackendUnavailable(f"unknown backend(s) {unknown}; choose from {list(be.BACKEND_NAMES)}")
    out: dict[str, dict[str, SplitLogits]] = {}
    rows, problems = [], []
    for name in names:
        pred_path = stage.artifact(f"predictions_{name}", must_exist=False)
        backend = be.REGISTRY[name](ctx)
        ok, reason = backend.available()
        why = None
        if not ok:
            why = f"not available: {reason}"
        elif backend.replays_stored_outputs:
            why = (
                "cannot run on the validation/conformal windows (it replays stored test-window outputs "
                "only), so it cannot be temperature-scaled or conformally calibrated on its own logits"
            )
        elif backends is None and not pred_path.is_file():
            why = "stage 07 wrote no predictions for it"
        if why:
            rows.append({"backend": name, "used": False, "test logits": "-", "reason": why})
            if backends is not None:
                problems.append(f"  - {name}: {why}")
            continue
        per_split: dict[str, SplitLogits] = {}
        for split, d in data.items():
            res = be.evaluate_backend(backend, d, batch_size=batch_size)
            per_split[split] = SplitLogits(name, split, res.logits, res.y, res.subject, res.index)
        if pred_path.is_file():
            res = load_predictions(pred_path)
            src = f"stage 07 {pred_path.name}"
        else:
            if test_data is None:
                test_data = be.load_test_data(windows, normalizer, split_name="test")
            res = be.evaluate_backend(backend, test_data, batch_size=batch_size)
            src = "computed here (stage 07 has no predictions file for it)"
        if res.backend != name:
            raise RuntimeError(f"{pred_path} says backend {res.backend!r}, expected {name!r}; re-run stage 07")
        per_split["test"] = SplitLogits(name, "test", res.logits, res.y, res.subject, res.index)
        backend.close()
        out[name] = per_split
        rows.append(
            {
                "backend": name,
                "used": True,
                "test logits": src,
                "reason": ", ".join(
                    f"{s}: {per_split[s].n} windows / {len(per_split[s].subjects)} subjects" for s in SPLITS
                ),
            }
        )
    if problems:
        raise be.BackendUnavailable(
            "requested backend(s) cannot be analysed:\n"
            + "\n".join(problems)
            + "\nRemove them from `backends` (null = every one that can)."
        )
    if not out:
        raise be.BackendUnavailable(
            "no backend can be analysed; see the table of reasons:\n" + pd.DataFrame(rows).to_string(index=False)
        )
    return out, pd.DataFrame(rows), label_names


def check_consistent(logits: dict[str, dict[str, SplitLogits]]) -> None:
    """All backends must see the same windows (labels and subjects) in each split."""
    names = list(logits)
    for split in SPLITS:
        ref = logits[names[0]][split]
        for n in names[1:]:
            other = logits[n][split]
            if other.n != ref.n or not np.array_equal(other.y, ref.y) or not np.array_equal(other.subject, ref.subject):
                raise RuntimeError(
                    f"{split} windows differ between {names[0]} ({ref.n}) and {n} ({other.n}); "
                    f"stage 07 predictions must come from this run's windows.npz"
                )


__all__ = ["SPLITS", "check_consistent", "collect_split_logits"]
