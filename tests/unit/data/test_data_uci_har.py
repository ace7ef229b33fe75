"""UCI HAR windowed loader on a generated fixture in exactly the published layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workbench.data import DataError, check_dataset, load_uci_har

SIGNALS = [f"{kind}_{axis}" for kind in ("body_acc", "body_gyro", "total_acc") for axis in "xyz"]


def write_uci_har(parent: Path, n_train=5, n_test=3) -> Path:
    """Each signal file holds value (channel code + row / 100 + sample / 1e4), so content is traceable."""
    root = parent / "UCI HAR Dataset"
    (root / "activity_labels.txt").parent.mkdir(parents=True)
    (root / "activity_labels.txt").write_text(
        "1 WALKING\n2 WALKING_UPSTAIRS\n3 WALKING_DOWNSTAIRS\n4 SITTING\n5 STANDING\n6 LAYING\n"
    )
    for split, n, subjects in (("train", n_train, [1, 3]), ("test", n_test, [2])):
        sig = root / split / "Inertial Signals"
        sig.mkdir(parents=True)
        for code, name in enumerate(SIGNALS):
            rows = code + np.arange(n)[:, None] / 100 + np.arange(128)[None, :] / 1e4
            np.savetxt(sig / f"{name}_{split}.txt", rows, fmt="%15.7e")  # leading spaces, like the original
        (root / split / f"y_{split}.txt").write_text("".join(f"{(i % 6) + 1}\n" for i in range(n)))
        (root / split / f"subject_{split}.txt").write_text(
            "".join(f"{subjects[i % len(subjects)]}\n" for i in range(n))
        )
    return root


def test_loads_total_acc_and_body_gyro(tmp_path):
    write_uci_har(tmp_path)
    for where in (tmp_path, tmp_path / "UCI HAR Dataset"):
        ws = load_uci_har(where)
        assert ws.X.shape == (8, 6, 1, 128)
        assert ws.channel_names == ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
        # channel 0 = total_acc_x (code 6), channel 3 = body_gyro_x (code 3)
        codes = np.floor(ws.X[:, :, 0, 0]).astype(int)
        np.testing.assert_array_equal(codes[0], [6, 7, 8, 3, 4, 5])
        np.testing.assert_allclose(ws.X[1, 0, 0, 5], 6 + 0.01 + 5e-4, rtol=1e-6)
        np.testing.assert_array_equal(ws.y, [0, 1, 2, 3, 4, 0, 1, 2])  # 1-based files -> 0-based
        np.testing.assert_array_equal(ws.subject, [1, 3, 1, 3, 1, 2, 2, 2])
        assert ws.label_names[5] == "LAYING" and ws.sample_rate_hz == 50.0
        assert ws.provenance["official_test_subjects"] == [2] and ws.provenance["kind"] == "real"


def test_missing_signal_file(tmp_path):
    root = write_uci_har(tmp_path)
    (root / "test" / "Inertial Signals" / "body_gyro_y_test.txt").unlink()
    with pytest.raises(DataError, match="missing .*body_gyro_y_test.txt"):
        load_uci_har(root)


def test_row_mismatch_and_label_range(tmp_path):
    root = write_uci_har(tmp_path)
    (root / "train" / "y_train.txt").write_text("1\n2\n3\n")
    with pytest.raises(DataError, match=r"y_train.txt has 3 rows but the signal files have 5"):
        load_uci_har(root)
    (root / "train" / "y_train.txt").write_text("1\n2\n9\n4\n5\n")
    with pytest.raises(DataError, match=r"y_train.txt:3: label 9 out of range 1..6"):
        load_uci_har(root)


def test_not_the_layout(tmp_path):
    with pytest.raises(DataError, match="Inertial Signals"):
        load_uci_har(tmp_path)


def test_check_dataset_detects_uci_har(tmp_path):
    write_uci_har(tmp_path)  # subjects 1, 2, 3: too few for train / val / conformal / test
    with pytest.raises(DataError, match=r"3 subject\(s\).*too few subjects \(3\)"):
        check_dataset(tmp_path)
    # a fourth subject in the training files makes the split possible
    sub = tmp_path / "UCI HAR Dataset" / "train" / "subject_train.txt"
    sub.write_text(sub.read_text().replace("3\n", "4\n", 1))
    text = check_dataset(tmp_path)
    assert text.startswith("UCI HAR") and "windows: 8 of 128 samples at 50 Hz" in text
    assert "official test subjects: [2]" in text
