"""Checks on rendered matplotlib figures that a reviewer would otherwise catch by eye."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt


def overlapping_ticklabels(fig: plt.Figure) -> list[tuple[str, str]]:
    """Pairs of neighbouring tick labels (x or y, per axes) whose drawn text overlaps.

    Rotated labels are compared as the parallel strips they are, not by their axis-aligned boxes (which
    overlap for any long label at 45 degrees): neighbours with anchor distance d along the axis clash when
    d·sin(angle to the axis) is below the text height and d·cos(angle) is below its width."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    clashes = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for axis, labels in (("x", ax.get_xticklabels()), ("y", ax.get_yticklabels())):
            shown = [t for t in labels if t.get_visible() and t.get_text()]
            for a, b in zip(shown, shown[1:]):
                # anchors: tick positions in display coordinates
                ia = a.get_transform().transform(a.get_position())
                ib = b.get_transform().transform(b.get_position())
                d = abs(ib[0] - ia[0]) if axis == "x" else abs(ib[1] - ia[1])
                angle = math.radians(a.get_rotation()) if axis == "x" else math.radians(90 - a.get_rotation())
                w, h, _ = renderer.get_text_width_height_descent(a.get_text(), a.get_fontproperties(), ismath=False)
                w = max(w, renderer.get_text_width_height_descent(b.get_text(), b.get_fontproperties(), False)[0])
                if d * abs(math.sin(angle)) < h and d * abs(math.cos(angle)) < w:
                    clashes.append((a.get_text(), b.get_text()))
    return clashes
