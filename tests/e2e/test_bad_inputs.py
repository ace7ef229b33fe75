"""Bad inputs through the real pipeline (papermill, real kernels): hostile names in a user's .npz never
reach a rendered page as markup, and inputs that can be judged before a run starts are refused before a
run directory exists (perfectly separable data: tests/e2e/test_separable_pipeline.py).

The fast refusals (CLI exit code, no run directory) run in the quick suite; the pipeline run is slow.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from workbench.cli import main
from workbench.config import load_params
from workbench.data import make_synthetic
from workbench.runs.pipeline import run_pipeline

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "params" / "smoke.yaml"

# What a hostile or careless data file can hold in its names: script, an event handler, quotes and
# ampersands (each string carries an & or <, so finding it verbatim in a page means it was not escaped).
HOSTILE_LABELS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(2)>",
    "\"walk\" & 'run'",
    "<b>bold</b>&amp;",
    "sit<!--",
    "a&b",
]
HOSTILE_CHANNELS = [
    "<script>alert(3)</script>",
    "<img src=x onerror=alert(4)>",
    "acc_z\"'&x",
    "gyro<x>",
    "gyro&y",
    "</td></tr></table><script>alert(5)</script>",
]
HOSTILE_SITES = ["<svg onload=alert(6)>", "wrist\"'&<"]
HOSTILE = HOSTILE_LABELS + HOSTILE_CHANNELS + HOSTILE_SITES
# markup that must never appear as a tag in any page (matched case-insensitively)
# the file is generated here: the provenance keeps every report labelling them synthetic
SYNTHETIC = json.dumps({"kind": "synthetic", "generator": "tests/e2e/test_bad_inputs.py"})
FORBIDDEN = [r"<script>alert\(", r"<img src=x onerror", r"<svg onload", r"<b>bold</b>"]


def _hostile_npz(path: Path) -> Path:
    ws = make_synthetic(n_subjects=10, windows_per_class=3, channels=6, sites=2, window=100, seed=0)
    np.savez(
        path,
        X=ws.X,
        y=ws.y,
        subject=ws.subject,
        label_names=np.array(HOSTILE_LABELS),
        channel_names=np.array(HOSTILE_CHANNELS),
        site_names=np.array(HOSTILE_SITES),
        sample_rate_hz=np.array(50.0),
        provenance=np.array(SYNTHETIC),
    )
    return path


def _pages(run_path: Path) -> list[Path]:
    pages = sorted((run_path / "html").glob("*.html"))
    assert (run_path / "html" / "index.html") in pages
    return pages


@pytest.mark.slow
def test_hostile_names_are_escaped_in_every_page(tmp_path):
    data = _hostile_npz(tmp_path / "hostile.npz")
    params = load_params([SMOKE], {"dataset": "npz", "data_dir": str(data), "run_label": "hostile"})
    run = run_pipeline(params, root=tmp_path / "out", progress=False, log=lambda *_: None)
    assert run.manifest()["status"] == "succeeded"
    pages = _pages(run.path)
    assert len(pages) >= 17, [p.name for p in pages]  # 8 stages x (full, results) + index
    seen_escaped = set()
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for pattern in FORBIDDEN:
            hit = re.search(pattern, text, flags=re.I)
            near = text[max(0, hit.start() - 200) : hit.end() + 80] if hit else ""
            assert hit is None, f"{page.name}: unescaped markup near {near!r}"
        for name in HOSTILE:
            assert name not in text, f"{page.name} holds {name!r} verbatim"
            if html.escape(name, quote=False) in text or html.escape(name) in text:
                seen_escaped.add(name)
    # generated data stays labelled synthetic although it arrived as an .npz
    assert 'class="badge synthetic"' in (run.path / "html" / "index.html").read_text()
    assert "SYNTHETIC (generated" in (run.path / "html" / "01_train_or_load.results.html").read_text()
    # the names are shown (escaped), not dropped: the labels and channels appear in the stage-01 page
    assert set(HOSTILE_LABELS[:2]) <= seen_escaped and HOSTILE_CHANNELS[0] in seen_escaped, seen_escaped


# ---- refused before a run directory exists (fast) -------------------------------------------------
def _run_cli(tmp_path: Path, *args: str) -> int:
    return main(["run", "-f", str(SMOKE), "--outputs", str(tmp_path / "out"), "--no-progress", *args])


def _no_run_dir(tmp_path: Path) -> bool:
    out = tmp_path / "out"
    return not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "args,message",
    [
        (["-p", "epochs", "true"], r"epochs: Input should be a valid integer.*got True"),
        (["-p", "epochs", "3.5"], r"epochs: Input should be a valid integer"),
        (["-p", "label_set", "[1, 2]"], r"label_set applies only to dataset 'hapt'"),
        (["-p", "hef_path", "{missing}"], r"is not a file"),
        (["-p", "hef_path", "{text}"], r"does not start with the HEF magic"),
        (
            ["-p", "quant_calib_size", "100000", "-p", "quant_compare_sizes", "[16, 90000]"],
            r"quant_calib_size=100000 > \d+ training windows(.|\n)*quant_compare_sizes \[16, 90000\]: \[90000\]",
        ),
        (["-p", "dataset", "npz", "-p", "data_dir", "{text}"], r"is not an \.npz archive \(it looks like a text file"),
    ],
)
def test_refused_before_a_run_directory_exists(tmp_path, capsys, args, message):
    text = tmp_path / "notes.txt"
    text.write_text("subject,label\n1,walk\n")
    (tmp_path / "notes.npz").write_text("subject,label\n1,walk\n")
    args = [
        a.format(missing=tmp_path / "nope.hef", text=tmp_path / "notes.npz" if "npz" in args else text) for a in args
    ]
    assert _run_cli(tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err
    assert _no_run_dir(tmp_path)


def test_npz_rate_conflict_names_both_before_a_run(tmp_path, capsys):
    ws = make_synthetic(n_subjects=10, windows_per_class=3, channels=3, sites=1, window=100, seed=0)
    f = tmp_path / "rate100.npz"
    np.savez(f, X=ws.X, y=ws.y, subject=ws.subject, sample_rate_hz=np.array(100.0))
    assert _run_cli(tmp_path, "-p", "dataset", "npz", "-p", "data_dir", str(f), "-p", "sample_rate_hz", "50") == 2
    err = capsys.readouterr().err
    assert "records sample_rate_hz=100" in err and "sample_rate_hz=50" in err and _no_run_dir(tmp_path)


def test_nan_checkpoint_refused_before_a_run(tmp_path, capsys):
    import torch

    from workbench.model import FSQClassifier, ModelConfig

    cfg = ModelConfig(
        in_channels=9,
        sites=2,
        window=100,
        num_classes=6,
        encoder_channels=[8, 16],
        kernel_time=5,
        fsq_levels=[8, 6, 5, 5, 4],
        head_hidden=16,
        dropout=0.1,
    )
    model = FSQClassifier(cfg)
    state = model.state_dict()
    state["head.0.bias"][0] = float("nan")
    ckpt = tmp_path / "checkpoint.pt"
    torch.save(
        {
            "format": "workbench-fsq-checkpoint",
            "format_version": 1,
            "config": cfg.to_dict(),
            "state_dict": state,
            "normalizer": {"mean": [0.0], "std": [1.0]},
            "label_names": list("abcdef"),
            "provenance": {},
            "metrics": {},
        },
        ckpt,
    )
    assert _run_cli(tmp_path, "-p", "mode", "load", "-p", "checkpoint_path", str(ckpt)) == 2
    err = capsys.readouterr().err
    assert "non-finite weights (NaN or inf) in head.0.bias (1 of" in err and "Traceback" not in err
    assert _no_run_dir(tmp_path)
