"""Tick labels of the figures reviewers read most stay legible with real label sets (issue 16)."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from support.figures import overlapping_ticklabels
from workbench.data.hapt import DEFAULT_ACTIVITIES
from workbench.evaluate.plots import confusion, confusion_per_backend
from workbench.quant.calibset import STRATEGIES
from workbench.quant.plots import plot_comparison


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_the_checker_sees_overlap():
    """The check itself can fail: crowded horizontal labels do overlap."""
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(range(12), np.ones(12))
    ax.set_xticks(range(12))
    ax.set_xticklabels(list(DEFAULT_ACTIVITIES.values()))
    assert overlapping_ticklabels(fig)


def test_hapt_confusion_labels_do_not_overlap():
    names = list(DEFAULT_ACTIVITIES.values())
    cm = np.random.default_rng(0).integers(0, 50, (12, 12))
    assert overlapping_ticklabels(confusion(cm, names, title="test")) == []
    per_backend = confusion_per_backend({b: cm for b in ("ort-fp32", "ort-int8-emulated", "hailo-emulator")}, names)
    assert overlapping_ticklabels(per_backend) == []


def test_quant_comparison_labels_do_not_overlap_for_a_full_grid():
    rows = [
        {"cut": cut, "strategy": s, "calib_size": n, "output_bits": b, "code_flip_rate": 0.01}
        for cut, s, n, b in itertools.product(["pre_round"], STRATEGIES, [64, 256, 1024], [8, 16])
    ]
    assert overlapping_ticklabels(plot_comparison(pd.DataFrame(rows))) == []


def test_comparison_figures_name_runs_by_their_settings_legibly():
    from workbench.runs import compare

    names = {
        f"20261203-1200{i:02d}-sweep-{i:04x}": f"quant_calib_strategy=random_windows quant_calib_size={n}"
        for i, n in enumerate([64, 256, 1024, 4096])
    }
    idx = pd.MultiIndex.from_tuples(
        [("07_evaluate_on_device", "accuracy", b) for b in ("ort-fp32", "ort-int8-emulated")],
        names=["stage", "metric", "backend"],
    )
    table = pd.DataFrame(np.full((2, 4), 0.9), index=idx, columns=list(names)).rename(columns=names)
    assert overlapping_ticklabels(compare.accuracy_bars(table)) == []
    curves = pd.DataFrame(
        [
            {"run": run, "backend": "ort-int8-emulated", "when": w, "confidence": c, "accuracy": c, "count": 5}
            for run in names
            for w in ("before", "after")
            for c in (0.3, 0.6, 0.9)
        ]
    )
    fig = compare.reliability_overlay(curves, names)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert sorted(legend) == sorted(f"{n} {w}" for n in names.values() for w in ("before", "after"))
