"""Issue 11: a model that classifies the validation subjects perfectly must get through every stage.

Stage 08 used to stop with "temperature search and grid disagree": on separable windows the NLL keeps
falling as T -> 0, so no temperature minimises it. The data here are separable by construction (class k is
a strong tone on channel k); the run must succeed and say that T is not identifiable.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from workbench.config import load_params
from workbench.runs.pipeline import run_pipeline

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _separable_npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(100) / 50
    X, y, s = [], [], []
    for subject in range(10):
        for k in range(3):
            for _ in range(8):
                x = 0.05 * rng.normal(size=(6, 1, 100))
                x[k, 0] += 3.0 * np.sin(2 * np.pi * (1 + k) * t)
                X.append(x)
                y.append(k)
                s.append(subject)
    np.savez(
        path,
        X=np.array(X, dtype=np.float32),
        y=np.array(y),
        subject=np.array(s),
        label_names=np.array(["walk", "sit", "lie"]),
        sample_rate_hz=50.0,
    )
    return path


def test_perfectly_separable_data_completes_every_stage(tmp_path):
    data = _separable_npz(tmp_path / "separable.npz")
    params = load_params(
        [ROOT / "params" / "smoke.yaml"],
        {
            "dataset": "npz",
            "data_dir": str(data),
            "epochs": 60,
            "patience": 60,
            "learning_rate": 0.01,
            "run_label": "separable",
        },
    )
    run = run_pipeline(params, root=tmp_path / "outputs", progress=False, log=lambda *_: None)
    man = run.manifest()
    assert man["status"] == "succeeded", man
    rel = json.loads((run.path / "artifacts" / "08_reliability" / "reliability.json").read_text())
    for backend, r in rel["backends"].items():
        assert r["temperature"]["identifiable"] is False, backend  # the validation windows are all right
        assert r["temperature"]["temperature"] == 1.0 and "not identifiable" in r["temperature"]["reason"]
        assert r["test_before_scaling"]["accuracy"]["value"] == 1.0
    card = list(csv.DictReader((run.path / "artifacts" / "08_reliability" / "report_card.csv").open()))
    assert any("not identifiable" in row["note"] for row in card)
    assert {row["status"] for row in card} <= {"pass", "warn", "fail"}
