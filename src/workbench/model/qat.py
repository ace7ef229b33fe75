"""Quantization-aware fine-tuning (QAT) of a trained FSQClassifier.

The forward pass below mirrors what stage 05 emulates with ONNX Runtime QDQ (and what the Hailo
quantizer does): BatchNorm folded into each convolution, per-output-channel symmetric weights,
per-tensor asymmetric activations whose range is the min/max over a quantization calibration set
(zero always inside the range), and every activation of the NPU part quantized, including the FSQ
bound chain Add -> Tanh -> Mul -> Sub when it runs on the NPU (cut ``after_bound``). Gradients pass
straight through the rounding (fake quantization, Jacob et al. 2018, arXiv 1712.05877;
Krishnamoorthi 2018, arXiv 1806.08342). BatchNorm statistics stay frozen during fine-tuning, since
their folded weights are what gets quantized.

Ranges are re-measured on the calibration windows before every epoch (the weights move, and the
emulation calibrates the final weights with MinMax), so the fine-tuned model sees the same grid it
will be deployed on. The exported graph is unchanged: fake quantization exists only in this forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

BITS = (8, 16)


@dataclass
class FakeQuantSpec:
    """Bit widths of the parts of the NPU graph; 16 marks a layer kept at a16_w16."""

    input_bits: int = 8  # the network input tensor
    first_conv_bits: int = 8  # first convolution's weights and output
    body_bits: int = 8  # every other convolution, the pooling
    tail_bits: int = 8  # projection (weights and output) and the FSQ bound chain
    bound_on_npu: bool = True  # cut after_bound: the bound chain is quantized too

    def __post_init__(self) -> None:
        for name in ("input_bits", "first_conv_bits", "body_bits", "tail_bits"):
            if getattr(self, name) not in BITS:
                raise ValueError(f"FakeQuantSpec.{name} must be 8 or 16 (got {getattr(self, name)})")


def fake_quant_activation(x: Tensor, lo: float, hi: float, bits: int) -> Tensor:
    """Asymmetric per-tensor fake quantization over [min(lo, 0), max(hi, 0)] with 2**bits levels."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    qmax = 2**bits - 1
    if hi - lo <= 0:
        return x
    scale = (hi - lo) / qmax
    zero_point = int(round(-lo / scale))
    zero_point = min(max(zero_point, 0), qmax)
    return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, qmax)


def fake_quant_weight(w: Tensor, bits: int) -> Tensor:
    """Symmetric per-output-channel fake quantization to [-(2**(bits-1) - 1), 2**(bits-1) - 1]."""
    qmax = 2 ** (bits - 1) - 1
    amax = w.detach().abs().reshape(w.shape[0], -1).amax(dim=1).clamp_min(1e-12)
    scale = (amax / qmax).float()
    zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -qmax, qmax)


def _folded(block: nn.Module) -> tuple[Tensor, Tensor]:
    """Conv weight and bias with the (frozen) BatchNorm folded in, as the ONNX export folds it."""
    conv, bn = block.conv, block.bn
    inv = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = conv.weight * inv.reshape(-1, 1, 1, 1)
    b = bn.bias - bn.running_mean * inv
    if conv.bias is not None:
        b = b + conv.bias * inv
    return w, b


@dataclass
class FakeQuantForward:
    """Callable ``(model, x) -> parts`` with fake quantization; ``calibrate`` sets the ranges.

    ``calib_x`` is the quantization calibration set (normalised NCHW training windows).
    """

    calib_x: Tensor
    spec: FakeQuantSpec = field(default_factory=FakeQuantSpec)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    batch_size: int = 512
    _observing: bool = field(default=False, repr=False)

    def _act(self, name: str, x: Tensor, bits: int) -> Tensor:
        if self._observing:
            lo, hi = float(x.min()), float(x.max())
            old = self.ranges.get(name)
            self.ranges[name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
            return x
        if name not in self.ranges:
            raise RuntimeError(f"no range for {name!r}: call FakeQuantForward.calibrate(model) first")
        lo, hi = self.ranges[name]
        return fake_quant_activation(x, lo, hi, bits)

    def _weight(self, w: Tensor, bits: int) -> Tensor:
        return w if self._observing else fake_quant_weight(w, bits)

    @torch.no_grad()
    def calibrate(self, model: nn.Module) -> None:
        """Global min/max of every quantized tensor over the calibration windows (eval mode)."""
        was_training = model.training
        model.eval()
        self.ranges = {}
        self._observing = True
        try:
            dev = next(model.parameters()).device
            for i in range(0, self.calib_x.shape[0], self.batch_size):
                self(model, self.calib_x[i : i + self.batch_size].to(dev))
        finally:
            self._observing = False
            model.train(was_training)

    def __call__(self, model: nn.Module, x: Tensor) -> dict[str, Tensor]:
        s = self.spec
        h = self._act("input", x, s.input_bits)
        for i, block in enumerate(model.encoder):
            bits = s.first_conv_bits if i == 0 else s.body_bits
            w, b = _folded(block)
            h = F.conv2d(h, self._weight(w, bits), b, stride=block.conv.stride, padding=block.conv.padding)
            h = self._act(f"conv{i}", F.relu(h), bits)
        h = self._act("pool", model.pool(h), s.body_bits)
        h = model.flatten(h)
        z = F.linear(h, self._weight(model.project.weight, s.tail_bits), model.project.bias)
        z = self._act("projection", z, s.tail_bits)
        fsq = model.fsq
        if s.bound_on_npu:
            a = self._act("shifted", z + fsq.shift, s.tail_bits)
            t = self._act("tanh", torch.tanh(a), s.tail_bits)
            m = self._act("scaled", t * fsq.half_l, s.tail_bits)
            bound = self._act("bound", m - fsq.offset, s.tail_bits)
        else:
            bound = fsq.bound(z)
        levels, codes = fsq.quantize_bound(bound)
        return {"projection": z, "bound": bound, "levels": levels, "codes": codes, "logits": model.head(codes)}


def qat_finetune(
    model: nn.Module,
    train: tuple,
    val: tuple,
    calib_x: Any,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
    spec: Optional[FakeQuantSpec] = None,
    margin_weight: float = 0.0,
    margin: float = 0.25,
    bound_noise: float = 0.0,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Fine-tune ``model`` in place with fake quantization; returns the training history.

    Early stopping and best-epoch restore watch validation accuracy *under fake quantization*, i.e.
    the accuracy of the model as it will be deployed.
    """
    import numpy as np

    from .train import train_model

    fq = FakeQuantForward(torch.from_numpy(np.asarray(calib_x, dtype=np.float32)), spec or FakeQuantSpec())
    hist = train_model(
        model,
        train,
        val,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=0.0,
        patience=epochs,
        seed=seed,
        device=device,
        progress=progress,
        margin_weight=margin_weight,
        margin=margin,
        bound_noise=bound_noise,
        forward=fq,
        freeze_batchnorm=True,
        before_epoch=fq.calibrate,
    )
    hist["fake_quant"] = {
        "input_bits": fq.spec.input_bits,
        "first_conv_bits": fq.spec.first_conv_bits,
        "body_bits": fq.spec.body_bits,
        "tail_bits": fq.spec.tail_bits,
        "bound_on_npu": fq.spec.bound_on_npu,
        "calibration_windows": int(fq.calib_x.shape[0]),
    }
    hist["backend"] = "torch-fp32 (fake-quant fine-tuning)"
    return hist
