"""Stage-07 task metrics on constructed inputs with known answers, cross-checked against torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.evaluate.metrics import (
    BackendResult,
    accuracy,
    backend_table,
    code_agreement,
    compare_to_reference,
    confusion_matrix,
    level_agreement,
    load_predictions,
    macro_f1,
    per_subject_accuracy,
    per_subject_table,
    prediction_flips,
)

Y = np.array([0, 0, 1, 1, 2])
P = np.array([0, 1, 1, 1, 0])


def test_confusion_matrix_known_counts_rows_are_truth():
    cm = confusion_matrix(Y, P, num_classes=4)
    expected = np.array([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(cm, expected)
    assert cm.sum() == len(Y)


@pytest.mark.torch
def test_confusion_matrix_matches_torchmetrics_on_random_labels():
    import torch
    from torchmetrics.classification import MulticlassConfusionMatrix

    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 6, 300), rng.integers(0, 6, 300)
    ref = MulticlassConfusionMatrix(num_classes=6)(torch.from_numpy(p), torch.from_numpy(y)).numpy()
    np.testing.assert_array_equal(confusion_matrix(y, p, 6), ref)


def test_macro_f1_known_value_leaves_out_absent_classes():
    # per class F1: 0 -> 2/(2+1+1)=0.5, 1 -> 4/(4+1)=0.8, 2 -> 0; classes 3, 4 never occur -> left out
    assert macro_f1(Y, P, num_classes=5) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


@pytest.mark.torch
@pytest.mark.parametrize("seed,k,n", [(0, 6, 400), (1, 3, 17), (2, 7, 50)])
def test_macro_f1_matches_torchmetrics(seed, k, n):
    import torch
    from torchmetrics.classification import MulticlassF1Score

    rng = np.random.default_rng(seed)
    y = rng.integers(0, k - 1, n)  # class k-1 never in the labels
    p = np.where(rng.random(n) < 0.6, y, rng.integers(0, k, n))
    ref = float(MulticlassF1Score(num_classes=k, average="macro")(torch.from_numpy(p), torch.from_numpy(y)))
    assert macro_f1(y, p, k) == pytest.approx(ref, abs=1e-6)


def test_accuracy_and_label_errors():
    assert accuracy(Y, P) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="5 entries but y_pred has 4"):
        accuracy(Y, P[:4])
    with pytest.raises(ValueError, match="argmax"):
        accuracy(Y, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion_matrix(Y, np.array([0, 1, 1, 3, 0]), num_classes=3)
    with pytest.raises(ValueError, match="empty"):
        accuracy(np.array([], dtype=int), np.array([], dtype=int))


def test_per_subject_accuracy():
    subject = np.array([7, 3, 7, 3, 3])
    df = per_subject_accuracy(Y, P, subject)
    assert df["subject"].tolist() == [3, 7]
    assert df["n"].tolist() == [3, 2]
    # subject 3: windows 1, 3, 4 -> (0 vs 1 wrong), (1 vs 1 ok), (2 vs 0 wrong) -> 1/3
    # subject 7: windows 0, 2 -> both right
    assert df["accuracy"].tolist() == pytest.approx([1 / 3, 1.0])
    with pytest.raises(ValueError, match="one subject id per window"):
        per_subject_accuracy(Y, P, subject[:3])


def test_prediction_flips_categories():
    y = np.array([0, 1, 2, 0, 1, 2])
    ref = np.array([0, 1, 0, 0, 2, 1])  # right, right, wrong, right, wrong, wrong
    new = np.array([0, 2, 2, 0, 0, 1])  # same, broken, fixed, same, wrong->other wrong, same
    f = prediction_flips(y, new, ref)
    assert f == {"flips": 3, "flip_rate": 0.5, "broken": 1, "fixed": 1, "other": 1}


def test_level_and_code_agreement():
    ref = np.array([[1, -2, 0], [3, 0, 1], [0, 0, 0], [-4, 2, 1]], dtype=np.float32)
    lv = ref.copy()
    lv[1, 2] = 0  # one level differs in window 1
    lv[3, 0] = -3
    lv[3, 1] = 1  # two differ in window 3
    assert level_agreement(lv, ref) == pytest.approx(9 / 12)
    assert code_agreement(lv, ref) == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="same shape"):
        code_agreement(lv[:, :2], ref)


def _result(name, index, y, pred, levels, subject=None, k=3):
    logits = np.full((len(pred), k), -1.0, dtype=np.float32)
    logits[np.arange(len(pred)), pred] = 1.0
    subject = np.zeros(len(y), dtype=np.int64) if subject is None else subject
    return BackendResult(
        backend=name,
        index=np.asarray(index),
        y=np.asarray(y),
        subject=subject,
        levels=np.asarray(levels, dtype=np.float32),
        logits=logits,
        num_classes=k,
    )


def test_backend_table_aligns_a_subset_in_other_order_with_the_reference():
    index = np.array([10, 11, 12, 13])
    y = np.array([0, 1, 2, 1])
    ref_lv = np.array([[0, 1], [1, 1], [2, 0], [1, -1]])
    ref = _result("torch-fp32", index, y, pred=[0, 1, 1, 1], levels=ref_lv)
    # replay backend covering windows 13, 11, 12 only (different order); window 13 flips 1 -> 2
    sub = _result("hailo-emulator", [13, 11, 12], y[[3, 1, 2]], pred=[2, 1, 2], levels=[[1, 0], [1, 1], [2, 0]])
    table = backend_table([ref, sub]).set_index("backend")
    assert table.loc["torch-fp32", "reference"] == "self"
    assert np.isnan(table.loc["torch-fp32", "code_agreement"])
    row = table.loc["hailo-emulator"]
    assert row["reference"] == "torch-fp32"
    assert row["n_compared"] == 3
    assert row["n_windows"] == 3
    assert row["code_agreement"] == pytest.approx(2 / 3)
    assert row["level_agreement"] == pytest.approx(5 / 6)
    assert row["flips"] == 2  # 13: 1->2 (broken), 12: 1->2 (fixed)
    assert row["broken"] == 1 and row["fixed"] == 1
    assert row["accuracy"] == pytest.approx(2 / 3)


def test_no_reference_gives_nan_agreement():
    r = _result("ort-int8-emulated", [0, 1], [0, 1], [0, 1], [[0], [1]])
    cmp = compare_to_reference(r, None)
    assert cmp["reference"] is None and np.isnan(cmp["code_agreement"])
    assert backend_table([r]).loc[0, "reference"] is None


def test_per_subject_table_is_tagged_with_backend():
    a = _result("ort-fp32", [0, 1, 2], [0, 1, 2], [0, 1, 1], [[0], [0], [0]], subject=np.array([4, 4, 9]))
    b = _result("ort-int8-emulated", [0, 1, 2], [0, 1, 2], [0, 0, 2], [[0], [0], [0]], subject=np.array([4, 4, 9]))
    df = per_subject_table([a, b])
    assert set(df["backend"]) == {"ort-fp32", "ort-int8-emulated"}
    got = df.set_index(["backend", "subject"])["accuracy"]
    assert got[("ort-fp32", 9)] == 0.0 and got[("ort-int8-emulated", 4)] == 0.5


def test_predictions_round_trip(tmp_path):
    r = _result(
        "hailo8-device", [5, 2, 9], [0, 2, 1], [0, 2, 2], [[1, 0], [0, 0], [-1, 2]], subject=np.array([1, 2, 3])
    )
    path = r.save(tmp_path / "predictions_hailo8-device.npz")
    back = load_predictions(path)
    assert back.backend == "hailo8-device"
    np.testing.assert_array_equal(back.index, [5, 2, 9])
    np.testing.assert_array_equal(back.pred, [0, 2, 2])
    np.testing.assert_array_equal(back.levels, r.levels)
    with np.load(path) as z:
        assert {"logits", "levels", "y", "subject", "index"} <= set(z.files)
    with pytest.raises(FileNotFoundError, match="stage 07"):
        load_predictions(tmp_path / "predictions_nope.npz")
