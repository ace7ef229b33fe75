"""Training loop: learns a separable toy problem, is deterministic, stops early, restores the best."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.model import FSQClassifier, ModelConfig, predict_logits, resolve_device, train_model

torch.set_num_threads(1)

CFG = dict(
    in_channels=3,
    sites=2,
    window=16,
    num_classes=3,
    encoder_channels=[8],
    kernel_time=3,
    fsq_levels=[8, 5, 5],
    head_hidden=16,
    dropout=0.1,
)
FIT = dict(batch_size=32, learning_rate=1e-2, weight_decay=1e-4, seed=0, progress=False)


def _toy(n: int, seed: int, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Class k has a positive offset on channel k, all sites: separable by construction."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(0, 0.5, (n, 3, 2, 16)).astype(np.float32)
    X[np.arange(n), y] += 1.5
    if flip:  # validation labels that contradict the training rule
        y = (y + 1) % 3
    return X, y.astype(np.int64)


def _model(seed: int = 0) -> FSQClassifier:
    torch.manual_seed(seed)
    return FSQClassifier(ModelConfig(**CFG))


def test_learns_a_separable_problem():
    m = _model()
    hist = train_model(m, _toy(480, 0), _toy(150, 1), epochs=8, patience=8, **FIT)
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    assert hist["best_val_acc"] >= 0.95
    X, y = _toy(200, 2)
    acc = float((predict_logits(m, X).argmax(1) == y).mean())
    assert acc >= 0.95
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"):
        assert len(hist[key]) == hist["epochs_run"]
    assert hist["backend"] == "torch-fp32" and hist["windows_per_s"] > 0 and hist["train_windows"] == 480
    assert hist["lr"][0] != hist["lr"][-1]  # the schedule moves the learning rate


def test_same_seed_gives_identical_weights_and_different_seed_does_not():
    runs = []
    for seed in (0, 0, 1):
        m = _model(0)
        train_model(m, _toy(200, 0), _toy(60, 1), epochs=2, patience=5, **{**FIT, "seed": seed})
        runs.append(m.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_early_stopping_restores_the_best_epoch():
    # Validation labels follow the opposite rule: the better the fit, the worse validation gets,
    # so the best epoch is early and the last one is worse.
    m = _model()
    Xv, yv = _toy(150, 1, flip=True)
    hist = train_model(m, _toy(480, 0), (Xv, yv), epochs=20, patience=3, **FIT)
    assert hist["epochs_run"] < 20 and hist["stop_reason"].startswith("early stop")
    assert hist["epochs_run"] == hist["best_epoch"] + 3
    assert hist["val_acc"][-1] < hist["best_val_acc"]  # the test means something
    restored = float((predict_logits(m, Xv).argmax(1) == yv).mean())
    assert restored == pytest.approx(hist["best_val_acc"])
    assert hist["best_val_acc"] == max(hist["val_acc"])


def test_time_limit_stops_after_one_epoch():
    hist = train_model(_model(), _toy(100, 0), _toy(30, 1), epochs=10, patience=10, max_seconds=1e-9, **FIT)
    assert hist["epochs_run"] == 1 and hist["stop_reason"].startswith("time limit")


def test_bad_inputs_are_rejected_with_the_reason():
    X, y = _toy(50, 0)
    with pytest.raises(ValueError, match=r"labels must lie in 0..2"):
        train_model(_model(), (X, y + 1), (X, y), epochs=1, patience=1, **FIT)
    with pytest.raises(ValueError, match=r"\(N, C, S, T\)"):
        train_model(_model(), (X[:, 0], y), (X, y), epochs=1, patience=1, **FIT)
    bad = X.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train_model(_model(), (bad, y), (X, y), epochs=1, patience=1, **FIT)
    with pytest.raises(ValueError, match="val is empty"):
        train_model(_model(), (X, y), (X[:0], y[:0]), epochs=1, patience=1, **FIT)


def test_predict_logits_matches_eval_forward_and_keeps_mode():
    m = _model()
    m.train()
    X, _ = _toy(70, 3)
    out = predict_logits(m, X, batch_size=16)
    assert m.training
    m.eval()
    with torch.no_grad():
        ref = m(torch.from_numpy(X)).numpy()
    assert out.shape == (70, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu")
