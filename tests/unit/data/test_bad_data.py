"""Preflight and `data check` refuse bad data before a run directory exists, with the fix in the message."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from workbench.config import load_params
from workbench.data import DataError, check_dataset, load_npz, make_synthetic
from workbench.data.preflight import preflight

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_data_hapt import RECORDINGS, write_hapt  # noqa: E402  (the HAPT layout fixture)


def _npz(path: Path, n_subjects=6, per_subject=12, classes=3, window=32, **extra) -> Path:
    rng = np.random.default_rng(0)
    n = n_subjects * per_subject
    arrays = dict(
        X=rng.normal(size=(n, 3, 1, window)).astype(np.float32),
        y=np.arange(n) % classes,
        subject=np.repeat(np.arange(n_subjects), per_subject),
    )
    arrays.update(extra)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _params(path: Path, **kw):
    return load_params(
        [],
        {
            "dataset": "npz",
            "data_dir": str(path),
            "window": 32,
            "quant_calib_size": 8,
            "quant_compare_sizes": [4, 8],
            **kw,
        },
    )


# ---- sample rate --------------------------------------------------------------------------------
def test_file_rate_is_used_when_the_parameters_set_none(tmp_path):
    f = _npz(tmp_path / "d.npz", sample_rate_hz=np.array(100.0))
    checked = preflight(_params(f))
    assert checked.params.sample_rate_hz == 100.0
    assert preflight(_params(f, sample_rate_hz=100.0)).params.sample_rate_hz == 100.0


def test_rate_conflict_names_both(tmp_path):
    f = _npz(tmp_path / "d.npz", sample_rate_hz=np.array(100.0))
    with pytest.raises(DataError, match=r"records sample_rate_hz=100 but the parameters set sample_rate_hz=50"):
        preflight(_params(f, sample_rate_hz=50.0))


def test_no_rate_anywhere_is_an_error_not_50_hz(tmp_path):
    f = _npz(tmp_path / "d.npz")
    with pytest.raises(DataError, match=r"records no sample_rate_hz and the parameters set none"):
        preflight(_params(f))
    assert preflight(_params(f, sample_rate_hz=20.0)).params.sample_rate_hz == 20.0


def test_hapt_and_synthetic_rates(tmp_path):
    root = write_hapt(tmp_path)
    with pytest.raises(DataError, match=r"UCI HAPT is recorded at 50 Hz but the parameters set sample_rate_hz=100"):
        preflight(
            load_params(
                [], {"dataset": "hapt", "data_dir": str(root), "window": 20, "hop": 10, "sample_rate_hz": 100.0}
            )
        )
    assert preflight(load_params([], {"quant_calib_size": 64})).params.sample_rate_hz == 50.0


# ---- classes, layout, file type ------------------------------------------------------------------
def test_labels_from_one_without_names(tmp_path):
    f = _npz(tmp_path / "d.npz", y=np.arange(72) % 3 + 1, sample_rate_hz=np.array(50.0))
    with pytest.raises(DataError, match=r"labels start at 1 .*no label_names.*class ids \[0\].*store y - 1"):
        preflight(_params(f))


def test_named_class_without_windows(tmp_path):
    f = _npz(tmp_path / "d.npz", label_names=np.array(["a", "b", "c", "never"]), sample_rate_hz=np.array(50.0))
    with pytest.raises(DataError, match=r"class ids 3 \(never\) have no windows"):
        load_npz(f)


def test_channel_last_hint_is_the_right_transpose(tmp_path):
    ws = make_synthetic(n_subjects=4, windows_per_class=2, channels=3, sites=1, window=40)
    ntc = ws.X[:, :, 0, :].transpose(0, 2, 1)  # what a user holding (N, T, C) data has
    f = tmp_path / "ntc.npz"
    np.savez(f, X=ntc, y=ws.y, subject=ws.subject, sample_rate_hz=50.0)
    with pytest.raises(DataError, match=r"looks like \(N, T, C\)") as err:
        load_npz(f)
    hint = str(err.value).split("use ", 1)[1].split(" (one", 1)[0]
    assert hint == "X.transpose(0, 2, 1)[:, :, None, :]"
    fixed = eval(hint, {"X": ntc})  # the advice, followed literally, restores the layout
    np.testing.assert_array_equal(fixed, ws.X)


def test_time_before_sites_is_caught(tmp_path):
    f = _npz(tmp_path / "d.npz", X=np.zeros((72, 3, 32, 1), np.float32), sample_rate_hz=np.array(50.0))
    with pytest.raises(DataError, match=r"32 sites of 1 samples .*X.transpose\(0, 1, 3, 2\)"):
        check_dataset(f)
    # names that confirm an unusual shape are believed
    ok = _npz(
        tmp_path / "ok.npz",
        X=np.zeros((72, 3, 32, 1), np.float32) + 1.0,
        channel_names=np.array(["a", "b", "c"]),
        site_names=np.array([f"s{i}" for i in range(32)]),
        sample_rate_hz=np.array(50.0),
    )
    assert load_npz(ok).X.shape == (72, 3, 32, 1)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"subject,label\n1,walk\n", "it looks like a text file starting 'subject"),
        (b"", "it is empty"),
        (b"\x93NUMPY\x01\x00", "it is a single .npy array"),
        (b"\x80\x04K\x01.", "it looks like a pickle"),
    ],
)
def test_files_that_are_not_npz(tmp_path, content, message):
    f = tmp_path / "d.npz"
    f.write_bytes(content)
    for call in (lambda: preflight(_params(f)), lambda: check_dataset(f), lambda: load_npz(f)):
        with pytest.raises(DataError, match=rf"is not an \.npz archive \({re.escape(message)}"):
            call()


# ---- subjects and split sizes -------------------------------------------------------------------
def test_too_few_subjects_for_the_split(tmp_path):
    f = _npz(tmp_path / "d.npz", n_subjects=3, sample_rate_hz=np.array(50.0))
    with pytest.raises(DataError, match=r"too few subjects \(3\).*need at least 4"):
        preflight(_params(f))


def test_single_subject_fails_data_check(tmp_path):
    f = _npz(tmp_path / "d.npz", n_subjects=1, per_subject=30, sample_rate_hz=np.array(50.0))
    with pytest.raises(DataError, match=r"1 subject\(s\) with labelled windows \[0\]"):
        check_dataset(f)


def test_data_check_lists_hapt_subjects_without_labels(tmp_path):
    recs = {**RECORDINGS, **{(10 + u, u, 120): [] for u in (3, 4, 5, 6)}}
    root = write_hapt(tmp_path / "a", recs)  # six recorded users, labels for 1 and 2 only
    with pytest.raises(DataError, match=r"2 subject\(s\) with labelled windows \[1, 2\]"):
        check_dataset(root, window=20, hop=10)
    more = {**recs, (20, 7, 120): [(1, 1, 120)], (21, 8, 120): [(4, 1, 120)]}
    text = check_dataset(write_hapt(tmp_path / "b", more), window=20, hop=10)
    assert "WARNING: 4 without any row in labels.txt (no windows): [3, 4, 5, 6]" in text


def test_all_calibration_sizes_in_one_message(tmp_path):
    f = _npz(tmp_path / "d.npz", sample_rate_hz=np.array(50.0))  # 6 subjects x 12 windows
    with pytest.raises(DataError) as err:
        preflight(_params(f, quant_calib_size=500, quant_compare_sizes=[4, 300, 900]))
    msg = str(err.value)
    train = int(msg.split("> ", 1)[1].split(" training")[0])
    assert 0 < train < 72
    assert f"quant_calib_size=500 > {train} training windows" in msg
    assert f"quant_compare_sizes [4, 300, 900]: [300, 900] > {train}" in msg
    # gaussian_noise draws no windows; quant_compare false skips the comparison sizes
    preflight(_params(f, quant_calib_size=500, quant_calib_strategy="gaussian_noise", quant_compare=False))
    # stages without 05 do not judge calibration sizes
    preflight(_params(f, quant_calib_size=500), stages=["01", "02"])


def test_calibration_sizes_checked_against_a_parent_run(tmp_path):
    ws = make_synthetic(n_subjects=4, windows_per_class=1, window=32)
    split = np.array(["train"] * 10 + ["test"] * (ws.n_windows - 10))
    ws.save(tmp_path / "windows.npz", split=split)
    with pytest.raises(DataError, match=r"quant_calib_size=64 > 10 training windows"):
        preflight(
            load_params([], {"quant_calib_size": 64, "quant_compare": False}),
            stages=["05", "06"],
            parent_windows=tmp_path / "windows.npz",
        )
