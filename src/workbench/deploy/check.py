"""Stage 09's evidence that a bundle serves what the pipeline measured (pandas tables for the notebook;
not imported by the service)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.deploy.bundle import Bundle
from workbench.deploy.predictor import Predictor
from workbench.graph.host import LOGIT_ROW_ULP_TOL, row_scaled_ulp


def backend_table(bundle: Bundle) -> pd.DataFrame:
    """One row per serving backend: model file, temperature, conformal threshold and where they came from."""
    rows = []
    for name, entry in bundle.manifest["backends"].items():
        conf = entry.get("conformal") or {}
        thr = conf.get("thresholds") or []
        rows.append(
            {
                "backend": name,
                "npu_file": entry["npu_file"],
                "temperature": entry.get("temperature"),
                "calibrated_on": entry.get("calibrated_on"),
                "borrowed": entry.get("borrowed"),
                "conformal": conf.get("method"),
                "alpha": conf.get("alpha"),
                "threshold": None if not thr else (thr[0] if len(set(thr)) == 1 else "per class"),
            }
        )
    return pd.DataFrame(rows)


def compare_with_stage07(bundle: Bundle, windows_npz: Path, predictions: dict[str, Path]) -> pd.DataFrame:
    """The bundle's inference path on stage 07's test windows (physical units) against stage 07's
    ``predictions_<backend>.npz``, for every bundle backend stage 07 evaluated and that can run here
    (hailo8-device only where HailoRT finds a device)."""
    from workbench.data.windowset import WindowSet

    ws, _ = WindowSet.load(windows_npz)
    rows = []
    for backend in bundle.backends:
        ref_path = Path(predictions.get(backend, ""))
        if not ref_path.is_file():
            continue
        if backend == "hailo8-device":
            from workbench.hailo.runtime import hailort_available

            if not hailort_available()[0]:
                continue  # the device is checked where it is fitted
        with np.load(ref_path, allow_pickle=False) as z:
            index, levels, logits = z["index"], z["levels"], z["logits"]
        predictor = Predictor(bundle, backend, max_windows=max(1, len(index)))
        try:
            got = predictor.predict(ws.X[index])
        finally:
            predictor.close()
        same_code = (got.levels == levels).all(axis=1)
        ulp = float(row_scaled_ulp(got.logits, logits).max())
        rows.append(
            {
                "backend": backend,
                "n_windows": int(len(index)),
                "code_agreement": float(same_code.mean()),
                "levels_bitwise": bool(got.levels.tobytes() == np.ascontiguousarray(levels, np.float32).tobytes()),
                "logits_max_abs_diff": float(np.abs(got.logits.astype(np.float64) - logits).max()),
                "logits_max_row_ulp": ulp,
                "passed": bool(same_code.all() and ulp <= LOGIT_ROW_ULP_TOL),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "backend",
            "n_windows",
            "code_agreement",
            "levels_bitwise",
            "logits_max_abs_diff",
            "logits_max_row_ulp",
            "passed",
        ],
    )


def example_response(bundle: Bundle, windows_npz: Path, n: int = 2) -> dict[str, Any]:
    """What POST /infer answers for the first ``n`` windows (CPU backend chosen like ``auto`` would)."""
    from workbench.data.windowset import WindowSet
    from workbench.deploy.predictor import prediction_body

    ws, _ = WindowSet.load(windows_npz)
    predictor = Predictor(bundle, "auto")
    try:
        return prediction_body(predictor.predict(ws.X[:n]), predictor)
    finally:
        predictor.close()
