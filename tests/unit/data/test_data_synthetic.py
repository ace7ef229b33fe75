"""Synthetic IMU generator: determinism, shapes, physics, and that it is not trivially separable."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from workbench.data import DataError, make_synthetic, split_by_subject
from workbench.data.synthetic import LABEL_NAMES, MAG_WORLD_UT, _sensors, euler_to_matrix, subject_profiles


def test_same_seed_same_arrays_other_seed_differs():
    a = make_synthetic(5, 3, seed=7)
    b = make_synthetic(5, 3, seed=7)
    c = make_synthetic(5, 3, seed=8)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.subject, b.subject)
    assert a.provenance == b.provenance
    assert not np.allclose(a.X, c.X)


@pytest.mark.parametrize("channels,sites,window", [(3, 1, 37), (6, 2, 100), (9, 1, 64), (9, 2, 128)])
def test_shapes_names_and_labels(channels, sites, window):
    ws = make_synthetic(4, 3, channels=channels, sites=sites, window=window, sample_rate_hz=40.0, seed=1)
    assert ws.X.shape == (4 * 6 * 3, channels, sites, window)
    assert ws.X.dtype == np.float32 and ws.y.dtype == np.int64
    assert ws.label_names == ["rest", "walk", "trot", "turn", "jump", "shake"]
    assert len(ws.channel_names) == channels and ws.channel_names[0] == "acc_x"
    assert ws.site_names == ["back", "leg"][:sites]
    assert ws.class_counts() == {name: 4 * 3 for name in LABEL_NAMES}
    assert sorted(set(ws.subject.tolist())) == [0, 1, 2, 3]
    assert ws.sample_rate_hz == 40.0
    assert ws.provenance["kind"] == "synthetic"
    assert ws.provenance["generator"] == "workbench.data.synthetic"
    assert ws.provenance["seed"] == 1
    assert np.isfinite(ws.X).all()


@pytest.mark.parametrize("bad", [dict(channels=4), dict(sites=3), dict(window=2), dict(n_subjects=0)])
def test_bad_arguments_are_rejected(bad):
    kwargs = dict(n_subjects=2, windows_per_class=1)
    kwargs.update(bad)
    with pytest.raises(DataError, match=list(bad)[0].split("_")[-1]):
        make_synthetic(**kwargs)


def test_euler_matrix_matches_scipy():
    rng = np.random.default_rng(0)
    ang = rng.uniform(-3, 3, (20, 3))
    ours = euler_to_matrix(ang[:, 0], ang[:, 1], ang[:, 2])
    ref = Rotation.from_euler("ZYX", ang).as_matrix()  # intrinsic z-y'-x'' = Rz @ Ry @ Rx
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_sensor_model_constant_turn_and_tilt():
    fs, t_n = 50.0, 60
    tau = (np.arange(t_n + 2) - 1) / fs
    rate = 1.3
    yaw = (rate * tau)[None, :]
    pitch = np.full_like(yaw, 0.4)  # nose up 0.4 rad, no roll
    roll = np.zeros_like(yaw)
    acc = np.zeros((1, 3, t_n + 2))
    sig = _sensors(yaw, pitch, roll, acc, np.eye(3)[None], fs, 9)[0]
    # gravity in a body pitched by +0.4 rad about y: f_body = Ry(0.4)^T [0, 0, 1]
    np.testing.assert_allclose(sig[0:3].mean(1), [-np.sin(0.4), 0, np.cos(0.4)], atol=1e-9)
    # world yaw rate seen in the pitched body frame: Ry(0.4)^T [0, 0, rate]
    np.testing.assert_allclose(sig[3:6].mean(1), [-np.sin(0.4) * rate, 0, np.cos(0.4) * rate], atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(sig[6:9], axis=0), np.linalg.norm(MAG_WORLD_UT), atol=1e-9)


def test_rest_reads_one_g_and_no_rotation():
    ws = make_synthetic(6, 8, seed=3)
    rest = ws.X[ws.y == 0]
    acc_norm = np.linalg.norm(rest[:, 0:3], axis=1)  # (n, sites, T)
    assert abs(np.median(acc_norm) - 1.0) < 0.05
    assert np.median(np.abs(rest[:, 3:6])) < 0.05  # rad/s
    mag_norm = np.linalg.norm(rest[:, 6:9], axis=1)
    assert abs(np.median(mag_norm) - np.linalg.norm(MAG_WORLD_UT)) < 8.0
    # moving classes are not at rest
    trot = ws.X[ws.y == 2]
    assert np.median(np.linalg.norm(trot[:, 0:3], axis=1).std(-1)) > 3 * np.median(acc_norm.std(-1))


def test_walk_dominant_frequency_is_the_subjects_gait_frequency():
    fs, window = 50.0, 500  # 10 s windows: 0.1 Hz bins
    ws = make_synthetic(4, 12, channels=3, sites=1, window=window, sample_rate_hz=fs, seed=5)
    prof = subject_profiles(4, seed=5)
    freqs = np.fft.rfftfreq(window, 1 / fs)
    for s in range(4):
        w = ws.X[(ws.y == 1) & (ws.subject == s), :, 0]  # walk, back site
        mag = np.linalg.norm(w, axis=1)
        spec = np.abs(np.fft.rfft(mag - mag.mean(-1, keepdims=True), axis=-1))
        peaks = freqs[np.argmax(spec[:, 1:], axis=1) + 1]  # per window (each has a 6% jitter)
        assert abs(np.median(peaks) - prof[s]["walk_hz"]) <= 0.12, (s, peaks, prof[s]["walk_hz"])
        # nearer this subject's walk than its (faster) trot
        assert abs(np.median(peaks) - prof[s]["walk_hz"]) < abs(np.median(peaks) - prof[s]["trot_hz"])
        assert ws.provenance["subjects"][s]["walk_hz"] == pytest.approx(prof[s]["walk_hz"])


def _features(X: np.ndarray) -> np.ndarray:
    n, c, s, t = X.shape
    z = X.reshape(n, c * s, t).astype(np.float64)
    acc = np.linalg.norm(X[:, 0:3], axis=1)
    return np.concatenate(
        [
            z.mean(-1),
            z.std(-1),
            z.min(-1),
            z.max(-1),
            np.abs(np.diff(z, axis=-1)).mean(-1),
            acc.mean(-1),
            acc.std(-1),
            acc.min(-1),
            acc.max(-1),
        ],
        axis=1,
    )


def test_not_trivially_separable_on_held_out_subjects():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    ws = make_synthetic(16, 12, seed=11)
    sp = split_by_subject(ws.subject, 0.1, 0.1, 0.25, seed=0)
    tr = np.concatenate([sp.train, sp.val, sp.conformal])
    f = _features(ws.X)
    mu, sd = f[tr].mean(0), f[tr].std(0) + 1e-9
    a = torch.tensor((f[tr] - mu) / sd, dtype=torch.float32)
    b = torch.tensor((f[sp.test] - mu) / sd, dtype=torch.float32)
    model = torch.nn.Linear(a.shape[1], 6)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    target = torch.tensor(ws.y[tr])
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(a), target).backward()
        opt.step()
    train_acc = float((model(a).argmax(1).numpy() == ws.y[tr]).mean())
    test_acc = float((model(b).argmax(1).numpy() == ws.y[sp.test]).mean())
    assert test_acc > 0.6, "the classes must still be learnable"
    assert test_acc < 0.97, f"held-out accuracy {test_acc:.3f}: synthetic data is trivially separable"
    assert train_acc < 0.99
