"""The HTML index of a run, opened from disk in headless Chromium, renders its metrics and figures.

Skips (with the reason) where Chromium is not installed; .ci/run installs it.
"""

import subprocess

import numpy as np
import pytest

from workbench.runs import Run, Stage
from workbench.runs.index_page import CHROMIUM_FLAGS, find_chromium, write_index

CHROMIUM = find_chromium()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture()
def small_run(tmp_path) -> Run:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Run.create("shot", tmp_path)
    run.write_json(
        "manifest.json",
        {
            "run_id": run.run_id,
            "status": "succeeded",
            "params": {"dataset": "synthetic"},
            "stages": {"01_train_or_load": {"status": "succeeded", "duration_s": 1.0}},
        },
    )
    st = Stage(run, "01")
    st.record_metric("accuracy", 0.8125, backend="ort-int8-emulated")
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(np.linspace(0, 1, 10), np.linspace(0, 1, 10), color="red", lw=8)
    fig.savefig(st.path("headline_line.png"))
    return run


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_index_renders_in_headless_chromium(small_run, tmp_path):
    index = write_index(small_run)
    shot = tmp_path / "index.png"
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600"]
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", index.as_uri()], check=True, capture_output=True, timeout=120
    )
    rendered = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", index.as_uri()], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    assert "0.8125" in rendered and "ort-int8-emulated" in rendered
    assert _png_size(shot.read_bytes()) == (1200, 1600)
    # the embedded figure was decoded and painted: the screenshot holds strongly red pixels
    from matplotlib.image import imread

    img = imread(str(shot))[..., :3]
    red = (img[..., 0] > 0.8) & (img[..., 1] < 0.3) & (img[..., 2] < 0.3)
    assert red.sum() > 500, "the embedded figure did not render"
