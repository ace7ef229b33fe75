"""Issue 14 training-time remedies: the FSQ margin term, bound noise, and quantization-aware fine-tuning.

Hand-written math is checked against independent implementations: the margin against
``workbench.quant.analysis.boundary_margin`` (numpy), the fake quantizers against numpy quantize-dequantize.
"""

import numpy as np
import pytest
import torch

from workbench.model import FSQClassifier, ModelConfig
from workbench.model.fsq import FSQ, boundary_margin, margin_penalty
from workbench.model.qat import FakeQuantForward, FakeQuantSpec, fake_quant_activation, fake_quant_weight, qat_finetune
from workbench.model.train import train_model
from workbench.quant.analysis import boundary_margin as np_margin


def test_margin_matches_numpy_and_penalty_pushes_toward_levels():
    b = torch.tensor([-3.5, -2.2, -0.49, 0.0, 0.45, 0.51, 1.25, 2.999], requires_grad=True)
    np.testing.assert_allclose(boundary_margin(b).detach().numpy(), np_margin(b.detach().numpy()), atol=1e-6)
    pen = margin_penalty(b, 0.25)
    want = np.maximum(0.25 - np_margin(b.detach().numpy()), 0).mean() / 0.25
    assert float(pen.detach()) == pytest.approx(want, abs=1e-6)
    pen.backward()
    stepped = b.detach() - 0.01 * b.grad
    before = b.detach().numpy()
    moved = np.abs(stepped.numpy() - np.rint(before)) <= np.abs(before - np.rint(before))
    assert moved.all()
    assert float(margin_penalty(torch.tensor([0.0, 1.0, -2.0]), 0.25)) == 0.0
    with pytest.raises(ValueError, match="margin"):
        margin_penalty(b, 0.0)


def test_bound_noise_only_while_training():
    fsq = FSQ([8, 5], bound_noise=0.2)
    b = torch.full((2000, 2), 0.45)
    fsq.train()
    torch.manual_seed(0)
    lv, _ = fsq.quantize_bound(b)
    assert (lv == 1).any() and (lv == 0).any()  # 0.45 + U(-0.2, 0.2) crosses 0.5 sometimes
    fsq.eval()
    assert (fsq.quantize_bound(b)[0] == 0).all()
    with pytest.raises(ValueError, match="bound_noise"):
        FSQ([8], bound_noise=0.5)


def _qdq(x, lo, hi, bits):
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    q = 2**bits - 1
    scale = (hi - lo) / q
    zp = np.clip(np.round(-lo / scale), 0, q)
    return (np.clip(np.round(x / scale) + zp, 0, q) - zp) * scale


@pytest.mark.parametrize("bits", [8, 16])
def test_fake_quant_activation_matches_numpy(bits):
    x = np.random.default_rng(bits).uniform(-3, 7, 1001).astype(np.float32)  # random: no exact .5 ties
    got = fake_quant_activation(torch.from_numpy(x), -2.0, 5.0, bits).numpy()
    np.testing.assert_allclose(got, _qdq(x.astype(np.float64), -2.0, 5.0, bits), atol=1e-5 if bits == 8 else 2e-4)
    step = 7.0 / (2**bits - 1)
    assert got.max() <= 5.0 + step and got.min() >= -2.0 - step  # saturates outside the range (zero on the grid)


def test_fake_quant_weight_matches_numpy_per_channel():
    w = torch.randn(6, 3, 1, 5)
    got = fake_quant_weight(w, 8).numpy()
    wn = w.numpy().astype(np.float64)
    scale = np.abs(wn).reshape(6, -1).max(1) / 127
    want = np.clip(np.round(wn / scale[:, None, None, None]), -127, 127) * scale[:, None, None, None]
    np.testing.assert_allclose(got, want, atol=1e-6)


def _model(seed=0):
    torch.manual_seed(seed)
    m = FSQClassifier(
        ModelConfig(
            in_channels=4,
            sites=2,
            window=24,
            num_classes=3,
            encoder_channels=[8, 8],
            fsq_levels=[5, 4, 3],
            head_hidden=16,
        )
    )
    # non-trivial BatchNorm statistics, so a wrong fold would show
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
    return m.eval()


def test_fake_quant_forward_folds_batchnorm_like_eval_and_16_bit_is_close():
    m = _model()
    x = torch.randn(64, 4, 2, 24)
    fq = FakeQuantForward(x, FakeQuantSpec(input_bits=16, first_conv_bits=16, body_bits=16, tail_bits=16))
    fq.calibrate(m)
    assert {"input", "conv0", "pool", "projection", "bound"} <= set(fq.ranges)
    with torch.no_grad():
        ref = m.forward_parts(x)
        got16 = fq(m, x)
        fq8 = FakeQuantForward(x, FakeQuantSpec())
        fq8.calibrate(m)
        got8 = fq8(m, x)
    err16 = (got16["bound"] - ref["bound"]).abs().max()
    err8 = (got8["bound"] - ref["bound"]).abs().max()
    assert err16 < 2e-3 and err8 > err16
    with pytest.raises(ValueError, match="8 or 16"):
        FakeQuantSpec(body_bits=4)
    with pytest.raises(RuntimeError, match="calibrate"):
        FakeQuantForward(x)(m, x)


def _data(n, seed):
    g = np.random.default_rng(seed)
    y = g.integers(0, 3, n)
    x = g.normal(0, 1, (n, 4, 2, 24)).astype(np.float32)
    x[:, 0] += y[:, None, None] * 1.5
    return x, y


def test_qat_finetune_changes_weights_keeps_batchnorm_stats():
    m = _model()
    tr, va = _data(96, 1), _data(48, 2)
    bn_before = m.encoder[0].bn.running_mean.clone()
    w_before = m.encoder[1].conv.weight.detach().clone()
    hist = qat_finetune(
        m, tr, va, tr[0][:32], epochs=2, learning_rate=1e-3, batch_size=32, seed=0, margin_weight=0.1, progress=False
    )
    assert hist["fake_quant"]["calibration_windows"] == 32 and hist["epochs_run"] == 2
    assert torch.equal(m.encoder[0].bn.running_mean, bn_before)
    assert not torch.equal(m.encoder[1].conv.weight, w_before)
    assert m.fsq.bound_noise == 0.0 and not m.training


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"margin": 0.7}, "margin"),
        ({"bound_noise": 0.6}, "bound_noise"),
        ({"margin_weight": 0.2, "margin_warmup": 1.5}, "margin_warmup"),
    ],
)
def test_train_model_refuses_out_of_range_margin_arguments(bad, match):
    with pytest.raises(ValueError, match=match):
        _train_one_epoch(_model(), **bad)


def _train_one_epoch(m, **extra):
    tr, va = _data(40, 3), _data(20, 4)
    common = dict(epochs=1, batch_size=20, learning_rate=1e-3, weight_decay=0, patience=1, seed=0, progress=False)
    return train_model(m, tr, va, **common, **extra)


def test_train_model_records_the_margin_arguments():
    m = _model()
    hist = _train_one_epoch(m, margin_weight=0.2, bound_noise=0.1, margin_warmup=0.5)
    assert hist["margin_weight"] == 0.2 and hist["margin_warmup"] == 0.5 and m.fsq.bound_noise == 0.0


def test_margin_warmup_starts_from_plain_training():
    """With the whole schedule as warm-up and one step, the margin weight is 0 at that step: the result
    equals training without the term."""
    tr, va = _data(20, 5), _data(10, 6)
    runs = []
    for kw in ({}, {"margin_weight": 5.0, "margin_warmup": 1.0}):
        m = _model(1).train()
        train_model(
            m,
            tr,
            va,
            epochs=1,
            batch_size=20,
            learning_rate=1e-2,
            weight_decay=0,
            patience=1,
            seed=0,
            progress=False,
            **kw,
        )
        runs.append(m.project.weight.detach().clone())
    assert torch.allclose(runs[0], runs[1])
