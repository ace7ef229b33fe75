"""Figures for stage 08. Each function takes results (not models) and returns a matplotlib Figure."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .metrics import CalibrationMetric


def draw_reliability(ax: plt.Axes, ax_hist: Optional[plt.Axes], ece: CalibrationMetric, title: str = "") -> None:
    """Per-bin accuracy bars against confidence, the gap to the diagonal shaded (red = over-confident,
    green = under-confident), and, on ``ax_hist``, the share of windows per confidence bin."""
    b = ece.bins
    if b is None:
        raise ValueError("this CalibrationMetric carries no bins; use expected_calibration_error()")
    ok = b.count > 0
    if ece.binning == "equal_width":
        left, width = b.lower, b.upper - b.lower
    else:  # equal mass: draw each bin over the confidence range it covers
        left, width = b.lower, np.maximum(b.upper - b.lower, 0.004)
    acc = np.where(ok, b.accuracy, 0.0)
    conf = np.where(ok, b.confidence, 0.0)
    ax.bar(left[ok], acc[ok], width=width[ok], align="edge", color="#4c72b0", edgecolor="white")
    over = ok & (conf > acc)
    under = ok & (conf <= acc)
    # the gap from the bar to the diagonal: over-confident bins red, under-confident green
    for mask, bottom, height, color, hatch, edge in (
        (over, acc, conf - acc, "#dd4444", "//", "#aa2222"),
        (under, conf, acc - conf, "#55a868", "\\\\", "#2d7a3e"),
    ):
        ax.bar(
            left[mask],
            height[mask],
            bottom=bottom[mask],
            width=width[mask],
            align="edge",
            color=color,
            alpha=0.35,
            hatch=hatch,
            edgecolor=edge,
        )
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.scatter(conf[ok], acc[ok], s=8, color="black", zorder=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy in bin")
    ax.set_title(title, fontsize=9)
    ax.text(
        0.03,
        0.95,
        f"ECE {100 * ece.value:.2f}%\n{ece.n_bins} {ece.binning.replace('_', '-')} bins\nn = {ece.n}",
        transform=ax.transAxes,
        va="top",
        fontsize=8,
        bbox=dict(boxstyle="round", fc="white", ec="0.8"),
    )
    if ax_hist is not None:
        share = b.count / max(b.count.sum(), 1)
        ax_hist.bar(left[ok], share[ok], width=width[ok], align="edge", color="0.5")
        ax_hist.set_xlim(0, 1)
        ax_hist.set_xlabel("confidence (top-label probability)")
        ax_hist.set_ylabel("share")
    else:
        ax.set_xlabel("confidence")


def _legend_handles() -> list:
    from matplotlib.patches import Patch

    return [
        Patch(color="#4c72b0", label="accuracy"),
        Patch(facecolor="#dd4444", alpha=0.35, hatch="//", edgecolor="#aa2222", label="gap: over-confident"),
        Patch(facecolor="#55a868", alpha=0.35, hatch="\\\\", edgecolor="#2d7a3e", label="gap: under-confident"),
    ]


def reliability_grid(panels: Mapping[str, Mapping[str, CalibrationMetric]], suptitle: str = "") -> plt.Figure:
    """Reliability diagrams side by side: one column per backend, one row per variant (e.g.
    ``{"torch-fp32": {"before": ece, "after T": ece}, "ort-int8-emulated": {...}}``)."""
    backends = list(panels)
    variants = list(dict.fromkeys(v for p in panels.values() for v in p))
    if not backends or not variants:
        raise ValueError("reliability_grid needs at least one backend with one variant")
    fig = plt.figure(figsize=(4.2 * len(backends), 4.6 * len(variants) + 0.5))
    outer = fig.add_gridspec(
        len(variants), len(backends), hspace=0.3, wspace=0.3, top=1 - 0.6 / (4.6 * len(variants) + 0.5), bottom=0.04
    )
    for c, be in enumerate(backends):
        for r, var in enumerate(variants):
            inner = outer[r, c].subgridspec(2, 1, height_ratios=[3, 1], hspace=0.12)
            ax = fig.add_subplot(inner[0])
            axh = fig.add_subplot(inner[1], sharex=ax)
            ax.tick_params(labelbottom=False)
            if var in panels[be]:
                draw_reliability(ax, axh, panels[be][var], f"{be}: {var}")
            else:
                ax.text(0.5, 0.5, "not computed", ha="center", transform=ax.transAxes)
            if r == 0 and c == 0:
                ax.legend(handles=_legend_handles(), loc="lower right", fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, y=0.998, va="top")
    return fig


def set_size_histograms(histograms: Mapping[str, Sequence[int]], title: str = "") -> plt.Figure:
    """Grouped bars: share of test windows by prediction-set size (0 = empty set) per method."""
    names = list(histograms)
    if not names:
        raise ValueError("set_size_histograms needs at least one histogram")
    k = max(len(h) for h in histograms.values())
    fig, ax = plt.subplots(figsize=(max(6, 1.0 * k + 2), 3.4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        h = np.asarray(histograms[name], dtype=float)
        h = np.pad(h, (0, k - len(h)))
        ax.bar(np.arange(k) + (i - (len(names) - 1) / 2) * width, h / max(h.sum(), 1), width=width, label=name)
    ax.set_xticks(np.arange(k))
    ax.set_xlabel("prediction-set size (0 = empty)")
    ax.set_ylabel("share of test windows")
    ax.legend(fontsize=7)
    ax.set_title(title or "prediction-set sizes")
    fig.tight_layout()
    return fig


def subject_coverage(
    per_subject: Mapping[str, Sequence[Mapping[str, Any]]], alpha: float, n_cal: Optional[int] = None, title: str = ""
) -> plt.Figure:
    """Coverage per test subject for each method, against the 1 - alpha target. With ``n_cal`` (the
    marginal methods' calibration size) each subject gets a grey bar: the central 95% range of split
    conformal's empirical coverage for that subject's number of windows, IF its windows were
    exchangeable with the calibration windows. Marginal coverage can hide subjects far below target."""
    from .conformal import coverage_interval

    names = list(per_subject)
    if not names:
        raise ValueError("subject_coverage needs at least one method")
    subjects = sorted({r["subject"] for rows in per_subject.values() for r in rows})
    pos = {s: i for i, s in enumerate(subjects)}
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(subjects) + 2) + 2, 3.6))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        rows = per_subject[name]
        x = np.array([pos[r["subject"]] for r in rows]) + (i - (len(names) - 1) / 2) * width
        ax.bar(x, [r["coverage"] for r in rows], width=width, label=name)
    ax.axhline(1 - alpha, color="black", ls="--", lw=1, label=f"1 - alpha = {1 - alpha:.2f}")
    if n_cal is not None:
        n_of = {r["subject"]: r["n"] for rows in per_subject.values() for r in rows}
        for i, sub in enumerate(subjects):
            iv = coverage_interval(n_cal, alpha, n_test=n_of[sub])
            ax.fill_between(
                [i - 0.45, i + 0.45],
                iv["test_low"],
                iv["test_high"],
                color="grey",
                alpha=0.3,
                zorder=0,
                lw=0,
                label="expected 95% range for its n" if i == 0 else None,
            )
    ax.set_xticks(np.arange(len(subjects)))
    ax.set_xticklabels([str(s) for s in subjects])
    ax.set_xlabel("test subject")
    ax.set_ylabel("coverage")
    lo = min([r["coverage"] for rows in per_subject.values() for r in rows] + [1 - alpha])
    ax.set_ylim(max(0.0, lo - 0.1), 1.02)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title or "coverage per test subject")
    fig.tight_layout()
    return fig


def temperature_cv_plot(cv_by_backend: Mapping[str, Any]) -> plt.Figure:
    """Held-out ECE before/after per leave-subjects-out fold, per backend (TemperatureCV objects)."""
    names = list(cv_by_backend)
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        folds = cv_by_backend[name].folds
        x = np.arange(len(folds))
        ax.bar(x - 0.2, [100 * f["ece_before"] for f in folds], 0.4, label="T = 1")
        ax.bar(x + 0.2, [100 * f["ece_after"] for f in folds], 0.4, label="T from other subjects")
        ax.set_xticks(x)
        ax.set_xticklabels(["+".join(map(str, f["subjects"])) for f in folds], rotation=45, fontsize=7)
        ax.set_xlabel("held-out subject(s)")
        ax.set_ylabel("ECE [%] (15 equal-width bins)")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def subject_coverage_spread(
    per_subject: Mapping[str, Sequence[Mapping[str, Any]]],
    alpha: float,
    set_sizes: Optional[Mapping[str, float]] = None,
    title: str = "",
) -> plt.Figure:
    """Per-subject coverage, one column per method: each dot a test subject (size ~ its windows), a
    box over subjects, the 1 - alpha line, and per method the share of subjects below it (and the mean
    set size when given): what marginal coverage hides and what each method pays for the guarantee."""
    names = list(per_subject)
    if not names:
        raise ValueError("subject_coverage_spread needs at least one method")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.7 * len(names) + 1.5), 4.0))
    target = 1 - alpha
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        cov = np.array([r["coverage"] for r in per_subject[name]], dtype=float)
        n = np.array([r["n"] for r in per_subject[name]], dtype=float)
        ax.boxplot([cov], positions=[i], widths=0.5, showfliers=False, medianprops=dict(color="black"))
        x = i + rng.uniform(-0.15, 0.15, len(cov))
        below = cov < target
        ax.scatter(x[~below], cov[~below], s=12 + 60 * n[~below] / n.max(), color="#4c72b0", alpha=0.8, zorder=3)
        ax.scatter(x[below], cov[below], s=12 + 60 * n[below] / n.max(), color="#dd4444", alpha=0.9, zorder=3)
        label = f"{int(below.sum())}/{len(cov)} below"
        if set_sizes and name in set_sizes:
            label += f"\nset size {set_sizes[name]:.2f}"
        ax.text(i, 1.005, label, ha="center", va="bottom", fontsize=7)
    ax.axhline(target, color="black", ls="--", lw=1)
    ax.text(len(names) - 0.5, target, f" 1 - alpha = {target:.2f}", va="center", fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    lo = min([r["coverage"] for rows in per_subject.values() for r in rows] + [target])
    ax.set_ylim(max(0.0, lo - 0.05), 1.06)
    ax.set_ylabel("coverage of the subject's windows")
    ax.set_title(title or "coverage per test subject (red: below 1 - alpha)", fontsize=9)
    fig.tight_layout()
    return fig


def calibrator_comparison(candidates_by_backend: Mapping[str, Sequence[Mapping[str, Any]]]) -> plt.Figure:
    """Held-out NLL and ECE of each probability calibrator (leave-subjects-out over the non-test pool),
    one row per backend; the chosen calibrator is outlined. Selection data only: no test subject."""
    names = list(candidates_by_backend)
    if not names:
        raise ValueError("calibrator_comparison needs at least one backend")
    fig, axes = plt.subplots(len(names), 2, figsize=(11, 2.9 * len(names)), squeeze=False)
    for row, be in zip(axes, names):
        cands = candidates_by_backend[be]
        labels = [c["name"] for c in cands]
        for ax, key, unit in (
            (row[0], "heldout_nll", "held-out NLL [nats]"),
            (row[1], "heldout_ece", "held-out ECE [%]"),
        ):
            vals = np.array([c[key] for c in cands], dtype=float) * (100 if key == "heldout_ece" else 1)
            bars = ax.bar(range(len(cands)), vals, color=["#55a868" if c["chosen"] else "0.6" for c in cands])
            for bar, c in zip(bars, cands):
                if c["chosen"]:
                    bar.set_edgecolor("black")
                    bar.set_linewidth(1.5)
            ax.set_xticks(range(len(cands)))
            ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
            ax.set_ylabel(unit, fontsize=8)
            ax.set_ylim(vals.min() * 0.9 if key == "heldout_nll" else 0, vals.max() * 1.08)
            ax.set_title(f"{be}: {unit.split(' [')[0]} (green = chosen)", fontsize=9)
    fig.tight_layout()
    return fig


__all__ = [
    "calibrator_comparison",
    "draw_reliability",
    "reliability_grid",
    "set_size_histograms",
    "subject_coverage",
    "subject_coverage_spread",
    "temperature_cv_plot",
]
