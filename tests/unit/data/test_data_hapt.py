"""HAPT raw loader: a tiny generated fixture in the same layout (always) and the real folder (if present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workbench.data import DataError, check_dataset, load_hapt
from workbench.data.hapt import expected_window_count

REAL = Path(__file__).resolve().parents[4] / "shared" / "datasets" / "hapt-rawdata" / "HAPT Data Set"

# exp, user, rows; segments (activity, start, end) 1-based inclusive
RECORDINGS = {
    (1, 1, 200): [(5, 3, 60), (1, 61, 130), (4, 131, 160), (7, 161, 175)],
    (2, 1, 120): [(1, 1, 45), (5, 50, 120)],
    (3, 2, 150): [(4, 10, 150)],
    (4, 2, 200): [(2, 1, 50), (3, 51, 110), (6, 111, 200)],
}


def write_hapt(root: Path, recordings=RECORDINGS, with_names: bool = True) -> Path:
    """acc_x holds the 1-based sample index and acc_y the experiment, so windows reveal where they came from."""
    raw = root / "RawData"
    raw.mkdir(parents=True)
    lines = []
    for (exp, user, rows), segs in recordings.items():
        idx = np.arange(1, rows + 1)
        acc = np.stack([idx, np.full(rows, exp), np.ones(rows)], 1)
        gyro = np.stack([-idx, np.zeros(rows), np.full(rows, 0.5)], 1) * 0.01
        np.savetxt(raw / f"acc_exp{exp:02d}_user{user:02d}.txt", acc, fmt="%.8f")
        np.savetxt(raw / f"gyro_exp{exp:02d}_user{user:02d}.txt", gyro, fmt="%.8f")
        lines += [f"{exp} {user} {a} {s} {e}" for a, s, e in segs]
    (raw / "labels.txt").write_text("\n".join(lines) + "\n")
    if with_names:
        names = [
            "WALKING",
            "WALKING_UPSTAIRS",
            "WALKING_DOWNSTAIRS",
            "SITTING",
            "STANDING",
            "LAYING",
            "STAND_TO_SIT",
            "SIT_TO_STAND",
            "SIT_TO_LIE",
            "LIE_TO_SIT",
            "STAND_TO_LIE",
            "LIE_TO_STAND",
        ]
        (root / "activity_labels.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(names, 1)))
    return root


def test_fixture_windows_counts_labels_and_boundaries(tmp_path):
    root = write_hapt(tmp_path)
    ws = load_hapt(root, window=20, hop=10, label_set=[4, 1, 5])
    assert ws.X.shape[1:] == (6, 1, 20)
    assert ws.label_names == ["SITTING", "WALKING", "STANDING"]
    assert ws.site_names == ["waist"] and ws.channel_names[:3] == ["acc_x", "acc_y", "acc_z"]
    # count by hand: floor((L - 20) / 10) + 1 per segment of the kept activities
    expect = {
        0: (30 - 20) // 10 + 1 + (141 - 20) // 10 + 1,  # SITTING: exp1 131..160, exp3 10..150
        1: (70 - 20) // 10 + 1 + (45 - 20) // 10 + 1,  # WALKING: exp1 61..130, exp2 1..45
        2: (58 - 20) // 10 + 1 + (71 - 20) // 10 + 1,
    }  # STANDING: exp1 3..60, exp2 50..120
    assert {k: int(v) for k, v in zip(*np.unique(ws.y, return_counts=True))} == expect
    # every window is contiguous and inside one segment of its label
    seg = {(e, s, t): a for (e, _u, _r), ss in RECORDINGS.items() for a, s, t in ss}
    label_set = [4, 1, 5]
    for x, y in zip(ws.X[:, :, 0, :], ws.y):
        idx, exp = x[0].astype(int), int(x[1, 0])
        np.testing.assert_array_equal(np.diff(idx), 1)
        hits = [a for (e, s, t), a in seg.items() if e == exp and s <= idx[0] and idx[-1] <= t]
        assert hits == [label_set[y]]
    np.testing.assert_allclose(ws.X[:, 3, 0, :], -ws.X[:, 0, 0, :] * 0.01, rtol=1e-6)
    assert sorted(set(ws.subject.tolist())) == [1, 2]
    assert ws.provenance["kind"] == "real" and ws.provenance["n_files"] == 9


def test_first_window_starts_at_the_one_based_start(tmp_path):
    ws = load_hapt(write_hapt(tmp_path), window=20, hop=10, label_set=[5])
    starts = sorted(int(x) for x in ws.X[:, 0, 0, 0])
    assert starts[0] == 3  # labels.txt "5 3 60": the first labelled sample is line 3
    assert max(int(x) for x in ws.X[:, 0, 0, -1]) <= 120


def test_data_dir_may_be_rawdata_itself_and_names_default(tmp_path):
    root = write_hapt(tmp_path, with_names=False)
    a = load_hapt(root / "RawData", window=20, hop=10)
    b = load_hapt(root, window=20, hop=10)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.label_names[0] == "WALKING" and a.n_classes == 6


def test_window_too_long_names_the_maximum(tmp_path):
    root = write_hapt(tmp_path)
    with pytest.raises(DataError, match=r"window=80 .*use window <= 70"):
        load_hapt(root, window=80, hop=10, label_set=[1, 5])
    with pytest.raises(DataError, match="label_set"):
        load_hapt(root, label_set=[1, 13])


def test_error_missing_folder_and_no_rawdata(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_hapt(tmp_path / "nope")
    with pytest.raises(DataError, match="no RawData"):
        load_hapt(tmp_path)


def test_error_acc_without_gyro(tmp_path):
    root = write_hapt(tmp_path)
    (root / "RawData" / "gyro_exp02_user01.txt").unlink()
    with pytest.raises(DataError, match=r"acc_exp02_user01.txt has no gyro partner"):
        load_hapt(root, window=20, hop=10)


def test_error_row_count_mismatch(tmp_path):
    root = write_hapt(tmp_path)
    f = root / "RawData" / "gyro_exp03_user02.txt"
    f.write_text("\n".join(f.read_text().splitlines()[:-5]) + "\n")
    with pytest.raises(DataError, match=r"acc_exp03_user02.txt has 150 rows but gyro_exp03_user02.txt has 145"):
        load_hapt(root, window=20, hop=10)


def test_error_labels_out_of_range(tmp_path):
    root = write_hapt(tmp_path)
    lab = root / "RawData" / "labels.txt"
    lab.write_text(lab.read_text() + "3 2 13 1 5\n")
    with pytest.raises(DataError, match=r"labels.txt:11: activity id 13 is out of range"):
        load_hapt(root, window=20, hop=10)
    lab.write_text("1 1 1 10 300\n")
    with pytest.raises(DataError, match=r"labels.txt:1: segment ends at sample 300 .* only 200 rows"):
        load_hapt(root, window=20, hop=10, label_set=[1])
    lab.write_text("1 1 1 ten 30\n")
    with pytest.raises(DataError, match=r"labels.txt:1: expected 5 integers"):
        load_hapt(root, window=20, hop=10)


def test_error_nan_in_signal_names_line(tmp_path):
    root = write_hapt(tmp_path)
    f = root / "RawData" / "acc_exp01_user01.txt"
    lines = f.read_text().splitlines()
    lines[41] = "1.0 nan 1.0"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"acc_exp01_user01.txt:42: NaN"):
        load_hapt(root, window=20, hop=10)
    with pytest.raises(DataError, match=r"acc_exp01_user01.txt:42"):
        check_dataset(root)


# four labelled subjects: the fewest a subject-wise train / val / conformal / test split can use
FOUR_SUBJECTS = {**RECORDINGS, (5, 3, 120): [(1, 1, 60), (4, 61, 120)], (6, 4, 120): [(5, 1, 120)]}


def test_check_dataset_summary_on_fixture(tmp_path):
    root = write_hapt(tmp_path, FOUR_SUBJECTS)
    text = check_dataset(root, window=20, hop=10)
    assert "6 acc/gyro pairs" in text and "subjects: 4 with recordings (1..4)" in text
    assert "SITTING" in text and text.strip().endswith("OK") and "WARNING" not in text


def test_check_dataset_fails_two_subjects(tmp_path):
    root = write_hapt(tmp_path)  # users 1 and 2 only
    with pytest.raises(DataError, match=r"2 subject\(s\) with labelled windows \[1, 2\].*too few subjects"):
        check_dataset(root, window=20, hop=10)


@pytest.mark.hapt
@pytest.mark.skipif(not (REAL / "RawData").is_dir(), reason="real HAPT data not present")
def test_real_hapt_counts_match_labels():
    ws = load_hapt(REAL)
    lab = np.loadtxt(REAL / "RawData" / "labels.txt", dtype=np.int64)  # independent parse
    lengths = lab[:, 4] - lab[:, 3] + 1
    for k, act in enumerate(range(1, 7)):
        m = (lab[:, 2] == act) & (lengths >= 100)
        assert int(np.sum(ws.y == k)) == int(np.sum((lengths[m] - 100) // 50 + 1))
    assert ws.X.shape[1:] == (6, 1, 100)
    assert len(ws.subjects) == 30 and ws.subjects == list(range(1, 31))
    assert ws.label_names == ["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING"]
    expected = expected_window_count(lab, 100, 50, range(1, 7))
    assert list(expected.values()) == list(ws.class_counts().values())
    acc_norm = np.linalg.norm(ws.X[ws.y == 5, 0:3, 0], axis=1)  # LAYING: gravity only
    assert abs(np.median(acc_norm) - 1.0) < 0.1
    assert ws.provenance["n_files"] == 123 and ws.provenance["dataset"] == "UCI HAPT v2.1 raw"
