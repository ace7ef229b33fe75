"""Models the workbench did not write, as their authors would: for the bring-your-own-model tests.

Nothing here imports ``workbench``: each model is built, trained and exported with plain PyTorch (and
vector-quantize-pytorch's FSQ), the way a researcher arrives with it. ``build_*`` functions are factories
in the ``module:function`` form that ``mode: import`` accepts.

* ``LucidrainsFSQNet`` -- Conv2d encoder, ``vector_quantize_pytorch.FSQ`` (straight-through rounding,
  a second Round for the code indices, reshapes around the codes), classifier head.
* ``PredecessorNet`` -- the predecessor's architecture: Conv2d 9->32->64->128 with BatchNorm, ReLU and
  MaxPool, global average pool, Linear to the FSQ dims, FSQ [8, 6, 5, 5, 4] written by hand (module path
  ``fsq_model.fsq``, as in its ONNX), head dims->64->classes.
* ``TcnEncoder`` -- a 1-D conv encoder on (N, C, T) windows with FSQ and no class output: it emits
  ``latent_embeddings`` and ``code_indices``.
* ``InputRounder`` -- rounds its input to a 0.01 grid (a Round that is not FSQ).
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import torch
from torch import nn


# ---- a hand-written FSQ, as the predecessor had it -----------------------------------------------
class HandFSQ(nn.Module):
    def __init__(self, levels: Sequence[int], eps: float = 1e-3):
        super().__init__()
        lv = torch.tensor(list(levels), dtype=torch.float32)
        self.register_buffer("half_l", (lv - 1) * (1 + eps) / 2)
        self.register_buffer("offset", torch.where(lv % 2 == 0, 0.5, 0.0))
        self.register_buffer("shift", torch.atanh(self.offset / self.half_l))
        self.register_buffer("half_width", torch.floor(lv / 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        bounded = torch.tanh(z + self.shift) * self.half_l - self.offset
        rounded = bounded + (torch.round(bounded) - bounded).detach()  # straight-through, kept in export
        return rounded / self.half_width


class _FsqModel(nn.Module):
    def __init__(self, dims: int, levels: Sequence[int]):
        super().__init__()
        self.fsq = HandFSQ(levels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fsq(z)


class PredecessorNet(nn.Module):
    """Conv2d 9->32->64->128 (BN, ReLU, MaxPool over time), GAP, Linear->len(levels), FSQ, head."""

    def __init__(self, in_channels: int = 9, num_classes: int = 6, levels: Sequence[int] = (8, 6, 5, 5, 4)):
        super().__init__()
        chans = [in_channels, 32, 64, 128]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [
                nn.Conv2d(a, b, kernel_size=(1, 5), padding=(0, 2)),
                nn.BatchNorm2d(b),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=(1, 2)),
            ]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.to_latent = nn.Linear(128, len(levels))
        self.fsq_model = _FsqModel(len(levels), levels)
        self.head = nn.Sequential(nn.Linear(len(levels), 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.features(x)).flatten(1)
        return self.head(self.fsq_model(self.to_latent(h)))


# ---- vector-quantize-pytorch's FSQ ----------------------------------------------------------------
class LucidrainsFSQNet(nn.Module):
    def __init__(self, in_channels: int = 9, num_classes: int = 6, levels: Sequence[int] = (8, 5, 5, 5)):
        super().__init__()
        from vector_quantize_pytorch import FSQ

        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 16, (1, 5), padding=(0, 2)),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, (1, 5), stride=(1, 2), padding=(0, 2)),
            nn.ReLU(),
        )
        self.proj = nn.Linear(16, len(levels))
        self.quantizer = FSQ(levels=list(levels))
        self.classifier = nn.Sequential(nn.Linear(len(levels), 32), nn.ReLU(), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(x).mean(dim=(2, 3))
        codes, indices = self.quantizer(self.proj(h).unsqueeze(1))  # FSQ wants (batch, seq, dim)
        return self.classifier(codes.flatten(1)), indices.squeeze(1)


class TcnEncoder(nn.Module):
    """(N, C, T) windows -> latent_embeddings (N, D) FSQ codes and code_indices (N,); no class output."""

    def __init__(self, in_channels: int = 18, levels: Sequence[int] = (7, 5, 5, 5), time_major: bool = False):
        super().__init__()
        from vector_quantize_pytorch import FSQ

        self.time_major = time_major  # True: (N, T, C) input, as sequence models take it
        self.tcn = nn.Sequential(
            nn.Conv1d(in_channels, 24, 5, padding=4, dilation=2),
            nn.ReLU(),
            nn.Conv1d(24, 24, 3, padding=2, dilation=2),
            nn.ReLU(),
        )
        self.latent = nn.Linear(24, len(levels))
        self.fsq = FSQ(levels=list(levels))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.tcn(x.transpose(1, 2) if self.time_major else x).mean(dim=2)
        codes, indices = self.fsq(self.latent(h).unsqueeze(1))
        return codes.squeeze(1), indices.squeeze(1)


class InputRounder(nn.Module):
    """Rounds raw input to a 0.01 grid, then a linear classifier: a Round that is not FSQ."""

    def __init__(self, in_channels: int = 9, num_classes: int = 6):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.round(x * 100.0) / 100.0
        return self.fc(q.mean(dim=(2, 3)))


# ---- factories (module:function form) -------------------------------------------------------------
def build_predecessor(in_channels: int = 9, num_classes: int = 6) -> nn.Module:
    return PredecessorNet(in_channels, num_classes)


def build_lucidrains(in_channels: int = 9, num_classes: int = 6) -> nn.Module:
    return LucidrainsFSQNet(in_channels, num_classes)


# ---- the author's own training, export and evaluation ---------------------------------------------
def author_normalizer(X: np.ndarray) -> dict:
    """Per-channel-and-site mean/std, the author's own normalisation (C x S)."""
    return {"mean": X.mean(axis=(0, 3)).tolist(), "std": (X.std(axis=(0, 3)) + 1e-6).tolist()}


def _apply(X: np.ndarray, norm: dict) -> np.ndarray:
    mean = np.asarray(norm["mean"], np.float32)[None, :, :, None]
    std = np.asarray(norm["std"], np.float32)[None, :, :, None]
    return ((X - mean) / std).astype(np.float32)


def train_few_steps(
    model: nn.Module, X: np.ndarray, y: np.ndarray, norm: dict, steps: int = 30, seed: int = 0, layout: str = "NCST"
) -> nn.Module:
    """A few Adam steps on the author's normalised windows, so the head is not at chance."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    Xn = to_layout(_apply(X, norm), layout)
    model.train()
    for _ in range(steps):
        idx = rng.choice(len(Xn), size=min(64, len(Xn)), replace=False)
        out = model(torch.from_numpy(Xn[idx]))
        logits = out[0] if isinstance(out, tuple) else out
        if logits.shape[-1] != int(y.max()) + 1 and logits.ndim == 2:
            loss = logits.pow(2).mean()  # an encoder: any objective will do for the tests
        else:
            loss = nn.functional.cross_entropy(logits, torch.from_numpy(y[idx]).long())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def to_layout(Xn: np.ndarray, layout: str) -> np.ndarray:
    """(N, C, S, T) windows in the author's input layout; channel index = c * S + s."""
    n, c, s, t = Xn.shape
    if layout == "NCST":
        return Xn
    flat = Xn.reshape(n, c * s, t)
    if layout == "NCT":
        return np.ascontiguousarray(flat)
    if layout == "NTC":
        return np.ascontiguousarray(flat.transpose(0, 2, 1))
    raise ValueError(layout)


def export(
    model: nn.Module,
    path,
    input_shape: Sequence[int],
    output_names: Sequence[str],
    dynamic: bool = True,
    opset: int = 13,
    fold: bool = True,
) -> None:
    """torch.onnx.export as a researcher calls it (TorchScript exporter, dynamic batch)."""
    import warnings

    model.eval()
    dummy = torch.zeros(tuple(input_shape))
    axes = {"input": {0: "batch"}, **{n: {0: "batch"} for n in output_names}} if dynamic else None
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            buf,
            input_names=["input"],
            output_names=list(output_names),
            opset_version=opset,
            dynamic_axes=axes,
            do_constant_folding=fold,
            dynamo=False,
        )
    with open(path, "wb") as fh:
        fh.write(buf.getvalue())


def author_accuracy(model: nn.Module, X: np.ndarray, y: np.ndarray, norm: dict, layout: str = "NCST") -> float:
    """The author's own evaluation: PyTorch, their normalisation, argmax of the first output."""
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(to_layout(_apply(X, norm), layout)))
    logits = out[0] if isinstance(out, tuple) else out
    return float((logits.argmax(1).numpy() == y).mean())


def fsq_reference_levels(levels: Sequence[int], z: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """Mentzer et al.'s level mapping in float64, for cross-checks."""
    L = np.asarray(levels, np.float64)
    half_l = (L - 1) * (1 + eps) / 2
    offset = np.where(L % 2 == 0, 0.5, 0.0)
    shift = np.arctanh(offset / half_l)
    return np.rint(np.tanh(z + shift) * half_l - offset)


__all__ = [
    "HandFSQ",
    "InputRounder",
    "LucidrainsFSQNet",
    "PredecessorNet",
    "TcnEncoder",
    "author_accuracy",
    "author_normalizer",
    "build_lucidrains",
    "build_predecessor",
    "export",
    "fsq_reference_levels",
    "to_layout",
    "train_few_steps",
]


# ---- files a researcher would bring (for the end-to-end tests) ------------------------------------
def author_files(out_dir, kind: str, X_train: np.ndarray, y_train: np.ndarray, steps: int = 40, seed: int = 0) -> dict:
    """Train a foreign model a few steps on ``X_train`` (raw windows, (N, C, S, T)) and write what its
    author would hand over: ``model.onnx`` (dynamic batch), ``normalizer.json`` (C x S), and for the
    factory form ``weights.pt``. Returns the paths, the layout and the trained model."""
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n, c, s, t = X_train.shape
    k = int(y_train.max()) + 1
    torch.manual_seed(seed)
    norm = author_normalizer(X_train)
    layout, outs = "NCST", ["logits"]
    if kind == "predecessor":
        model = PredecessorNet(c, k)
    elif kind == "lucidrains":
        model, outs = LucidrainsFSQNet(c, k), ["logits", "indices"]
    elif kind == "encoder":
        model, layout, outs = TcnEncoder(c * s, time_major=True), "NTC", ["latent_embeddings", "code_indices"]
    elif kind == "rounder":
        model = InputRounder(c, k)
    else:
        raise ValueError(kind)
    train_few_steps(model, X_train, y_train, norm, steps=steps, seed=seed, layout=layout)
    shape = {"NCST": (1, c, s, t), "NTC": (1, t, c * s)}[layout]
    export(model, out / "model.onnx", shape, outs, dynamic=True)
    (out / "normalizer.json").write_text(__import__("json").dumps(norm))
    torch.save(model.state_dict(), out / "weights.pt")
    return {
        "onnx": out / "model.onnx",
        "normalizer": out / "normalizer.json",
        "weights": out / "weights.pt",
        "layout": layout,
        "model": model,
        "norm": norm,
    }
