"""Training-time augmentation: rotation in physical units, identity when off, seeded, wired into training."""

import numpy as np
import pytest
import torch

from workbench.model import Augmenter, FSQClassifier, ModelConfig, random_rotations, train_model


def _stats(c: int = 6, s: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Deliberately unequal stds: a rotation applied to normalised data would be wrong here.
    return rng.normal(0, 2, (c, s, 1)).astype(np.float32), rng.uniform(0.2, 5.0, (c, s, 1)).astype(np.float32)


def _batch(n: int = 5, c: int = 6, s: int = 2, t: int = 7, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, c, s, t)).astype(np.float32))


def test_random_rotations_are_proper_and_bounded() -> None:
    R = random_rotations(200, 20.0, torch.Generator().manual_seed(0)).double()
    eye = torch.eye(3, dtype=torch.float64).expand(200, 3, 3)
    assert torch.allclose(R @ R.transpose(1, 2), eye, atol=1e-6)
    assert torch.allclose(torch.linalg.det(R), torch.ones(200, dtype=torch.float64), atol=1e-6)
    # rotation angle from the trace: cos(a) = (tr R - 1) / 2
    angle = torch.rad2deg(torch.arccos(((R.diagonal(dim1=1, dim2=2).sum(1) - 1) / 2).clamp(-1, 1)))
    assert float(angle.max()) <= 20.0 + 1e-3
    assert float(angle.max()) > 10.0  # angles really are spread over the range


def test_rotation_preserves_triplet_norms_in_physical_units_and_mixes_channels() -> None:
    mean, std = _stats()
    aug = Augmenter(mean, std, rotation_deg=30.0)
    xn = _batch()
    out = aug(xn, torch.Generator().manual_seed(3))
    assert out.shape == xn.shape and out.dtype == xn.dtype
    phys_in = (xn.numpy() * std + mean).reshape(5, 2, 3, 2, 7)
    phys_out = (out.numpy() * std + mean).reshape(5, 2, 3, 2, 7)
    np.testing.assert_allclose(np.linalg.norm(phys_out, axis=2), np.linalg.norm(phys_in, axis=2), rtol=1e-4)
    assert not np.allclose(phys_out, phys_in, atol=1e-3)

    # acc and gyro of one window and site share one rotation: the angle between the triplets is kept
    def cos(p):  # (n, s, t)
        return (p[:, 0] * p[:, 1]).sum(1) / (np.linalg.norm(p[:, 0], axis=1) * np.linalg.norm(p[:, 1], axis=1))

    np.testing.assert_allclose(cos(phys_out), cos(phys_in), atol=1e-4)
    assert not torch.equal(out, xn) and torch.equal(xn, _batch())  # input untouched


def test_scale_multiplies_each_triplet_by_one_bounded_factor() -> None:
    mean, std = _stats()
    out = Augmenter(mean, std, scale=0.2)(_batch(), torch.Generator().manual_seed(0))
    phys_in = (_batch().numpy() * std + mean).reshape(5, 2, 3, 2, 7)
    ratio = (out.numpy() * std + mean).reshape(5, 2, 3, 2, 7) / phys_in
    f = ratio[:, :, :1, :, :1]
    np.testing.assert_allclose(ratio, np.broadcast_to(f, ratio.shape), rtol=1e-3)
    assert f.min() >= 0.8 - 1e-4 and f.max() <= 1.2 + 1e-4 and f.std() > 0.01


def test_disabled_is_identity_and_seeded_is_deterministic() -> None:
    mean, std = _stats()
    xn = _batch()
    off = Augmenter(mean, std)
    assert not off.enabled and off(xn, torch.Generator().manual_seed(0)) is xn
    on = Augmenter(mean, std, rotation_deg=10.0, scale=0.1)
    a = on(xn, torch.Generator().manual_seed(7))
    b = on(xn, torch.Generator().manual_seed(7))
    c = on(xn, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_input_is_rejected_with_a_clear_message() -> None:
    mean, std = _stats(c=4)
    with pytest.raises(ValueError, match="not a multiple of 3"):
        Augmenter(mean, std, rotation_deg=5.0)
    Augmenter(mean, std)  # disabled: any channel count is fine
    mean, std = _stats()
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Augmenter(mean, std, scale=1.0)
    with pytest.raises(ValueError, match="shape"):
        Augmenter(mean[..., 0], std[..., 0])
    with pytest.raises(ValueError, match="built for"):
        Augmenter(mean, std, rotation_deg=5.0)(_batch(s=3), torch.Generator().manual_seed(0))


def _train(augment) -> tuple[dict, dict]:
    torch.manual_seed(0)
    cfg = ModelConfig(
        in_channels=6, sites=1, window=16, num_classes=3, encoder_channels=[4], head_hidden=0, fsq_levels=[3, 3]
    )
    model = FSQClassifier(cfg)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6, 1, 16)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    hist = train_model(
        model,
        (X, y),
        (X[:10], y[:10]),
        epochs=2,
        batch_size=16,
        learning_rate=1e-2,
        weight_decay=0.0,
        patience=5,
        seed=0,
        progress=False,
        augment=augment,
    )
    return hist, {k: v.clone() for k, v in model.state_dict().items()}


def test_train_model_applies_the_augmenter_and_stays_deterministic() -> None:
    torch.set_num_threads(1)
    mean, std = _stats(c=6, s=1)
    aug = Augmenter(mean, std, rotation_deg=20.0, scale=0.1)
    _, w_plain = _train(None)
    _, w_off = _train(Augmenter(mean, std))
    _, w_aug1 = _train(aug)
    _, w_aug2 = _train(aug)

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    assert same(w_aug1, w_aug2)
    assert not same(w_plain, w_aug1)
    assert same(w_plain, w_off)  # a disabled Augmenter is an exact no-op
