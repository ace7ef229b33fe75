"""Training loop: AdamW + OneCycle, early stopping on validation accuracy, seeded, tqdm over epochs.

Inputs are already-normalised float32 arrays (N, C, S, T). The loop keeps whole arrays as tensors
and shuffles indices with its own seeded generator (no DataLoader workers): on a 2-core CPU this is
faster and makes two runs with the same seed give identical weights.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from workbench.config import TORCH_FP32

BACKEND = TORCH_FP32


def resolve_device(device: str) -> torch.device:
    """'cpu', 'cuda' or 'auto' (CUDA when available, else CPU)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device; use device: cpu or auto")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto' (got {device!r})")
    return torch.device(device)


def _check_xy(name: str, xy: tuple[np.ndarray, np.ndarray], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(xy, (tuple, list)) and len(xy) == 2):
        raise ValueError(f"{name} must be a tuple (X, y); got {type(xy).__name__}")
    X, y = np.asarray(xy[0]), np.asarray(xy[1])
    if X.ndim != 4:
        raise ValueError(f"{name} X must be (N, C, S, T); got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"{name} y must have shape ({X.shape[0]},) to match X; got {y.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty: no windows (check the split fractions and the data)")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} X has NaN or inf values; clean or impute the data before training")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"{name} labels must lie in 0..{num_classes - 1} (got {y.min()}..{y.max()})")
    return X.astype(np.float32, copy=False), y.astype(np.int64, copy=False)


Forward = Callable[[nn.Module, torch.Tensor], dict]


def plain_forward(model: nn.Module, x: torch.Tensor) -> dict:
    """The model's own forward, with the FSQ bound exposed for the margin term."""
    return model.forward_parts(x)


@torch.no_grad()
def _evaluate(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int, forward: Forward = plain_forward
) -> tuple[float, float]:
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, X.shape[0], batch_size):
        logits = forward(model, X[i : i + batch_size])["logits"]
        loss_sum += float(nn.functional.cross_entropy(logits, y[i : i + batch_size], reduction="sum"))
        correct += int((logits.argmax(1) == y[i : i + batch_size]).sum())
    return loss_sum / X.shape[0], correct / X.shape[0]


def train_model(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    patience: int,
    seed: int,
    device: str = "cpu",
    max_seconds: Optional[float] = None,
    progress: bool = True,
    augment: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None,
    margin_weight: float = 0.0,
    margin: float = 0.25,
    bound_noise: float = 0.0,
    margin_warmup: float = 0.0,
    forward: Forward = plain_forward,
    freeze_batchnorm: bool = False,
    before_epoch: Optional[Callable[[nn.Module], None]] = None,
) -> dict[str, Any]:
    """Train in place and return a JSON-ready history.

    Early stopping watches validation accuracy (ties go to the lower validation loss); the weights of
    the best epoch are restored at the end. ``max_seconds`` stops after the epoch that crosses it.
    The model's initial weights are the caller's business (seed before building it); this function
    seeds dropout and the shuffling. ``augment(batch, generator)`` (e.g. an ``Augmenter``) transforms
    each training batch; it draws from its own seeded CPU generator so shuffling is unchanged by it.

    FSQ robustness to INT8 (issue 14): ``margin_weight`` adds ``margin_weight * margin_penalty(bound,
    margin)`` (pre-Round values pulled at least ``margin`` code units from the .5 thresholds), its weight
    ramped linearly from 0 over the first ``margin_warmup`` share of the steps (codes form first: a full
    weight from the start collapsed the codebook on some HAPT splits);
    ``bound_noise`` adds U(-a, a) to the bound before rounding while training. ``forward`` replaces the
    model's forward (quantization-aware fine-tuning passes a fake-quant one, ``before_epoch`` then
    refreshes its ranges); ``freeze_batchnorm`` keeps BatchNorm statistics fixed (their folded weights
    are what gets quantized).
    """
    from .fsq import margin_penalty

    if epochs < 1 or batch_size < 1 or patience < 1:
        raise ValueError(f"epochs, batch_size and patience must be >= 1 (got {epochs}, {batch_size}, {patience})")
    if learning_rate <= 0 or weight_decay < 0:
        raise ValueError(f"learning_rate must be > 0 and weight_decay >= 0 (got {learning_rate}, {weight_decay})")
    num_classes = model.config.num_classes if hasattr(model, "config") else None
    if num_classes is None:
        raise ValueError("train_model expects an FSQClassifier (a model with .config.num_classes)")
    Xtr, ytr = _check_xy("train", train, num_classes)
    Xva, yva = _check_xy("val", val, num_classes)

    dev = resolve_device(device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator().manual_seed(seed + 1)
    model.to(dev)
    Xtr_t, ytr_t = torch.from_numpy(Xtr).to(dev), torch.from_numpy(ytr).to(dev)
    Xva_t, yva_t = torch.from_numpy(Xva).to(dev), torch.from_numpy(yva).to(dev)
    if not (0.0 <= margin_warmup <= 1.0):
        raise ValueError(f"margin_warmup must be a fraction of the schedule in [0, 1] (got {margin_warmup})")
    if margin_weight < 0 or not (0.0 < margin <= 0.5):
        raise ValueError(f"margin_weight must be >= 0 and margin in (0, 0.5] (got {margin_weight}, {margin})")
    if not (0.0 <= bound_noise < 0.5):
        raise ValueError(f"bound_noise must be in [0, 0.5) code units (got {bound_noise})")
    model.fsq.bound_noise = float(bound_noise)

    n = Xtr_t.shape[0]
    # BatchNorm cannot train on a batch of one: fold a trailing single window into the skip.
    steps_per_epoch = n // batch_size + (1 if n % batch_size >= 2 else 0)
    if steps_per_epoch == 0:
        raise ValueError(f"need at least 2 training windows for BatchNorm (got {n})")
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    total_steps = epochs * steps_per_epoch
    # OneCycle needs a warm-up phase of at least one step on each side; a handful of steps (tiny
    # smoke runs) trains at the constant base rate instead.
    sched = (
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=learning_rate, total_steps=total_steps, pct_start=0.25)
        if total_steps >= 8
        else torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    )
    loss_fn = nn.CrossEntropyLoss()

    hist: dict[str, Any] = {
        "epoch": [],
        "train_loss": [],
        "train_acc": [],
        "val_loss": [],
        "val_acc": [],
        "lr": [],
        "seconds": [],
    }
    best_key = (-math.inf, -math.inf)
    best_state = copy.deepcopy(model.state_dict())
    best_epoch, since_best = 0, 0
    stop_reason = "completed all epochs"
    windows_seen, train_seconds = 0, 0.0
    t_start = time.perf_counter()

    bar = tqdm(range(1, epochs + 1), desc="train", unit="epoch", disable=not progress)
    for epoch in bar:
        t0 = time.perf_counter()
        if before_epoch is not None:
            before_epoch(model)
        model.train()
        if freeze_batchnorm:
            for mod in model.modules():
                if isinstance(mod, nn.BatchNorm2d):
                    mod.eval()
        perm = torch.randperm(n, generator=gen).to(dev)
        loss_sum, correct, seen = 0.0, 0, 0
        for step in range(steps_per_epoch):
            idx = perm[step * batch_size : (step + 1) * batch_size]
            xb, yb = Xtr_t[idx], ytr_t[idx]
            if augment is not None:
                xb = augment(xb, aug_gen)
            parts = forward(model, xb)
            logits = parts["logits"]
            loss = loss_fn(logits, yb)
            if margin_weight > 0:
                done = ((epoch - 1) * steps_per_epoch + step) / max(margin_warmup * total_steps, 1e-12)
                ramp = 1.0 if margin_warmup == 0 else min(1.0, done)
                loss = loss + margin_weight * ramp * margin_penalty(parts["bound"], margin)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.detach().argmax(1) == yb).sum())
            seen += len(idx)
        t_train = time.perf_counter() - t0
        windows_seen += seen
        train_seconds += t_train
        val_loss, val_acc = _evaluate(model, Xva_t, yva_t, max(batch_size, 256), forward)
        seconds = time.perf_counter() - t0
        for key, value in (
            ("epoch", epoch),
            ("train_loss", loss_sum / seen),
            ("train_acc", correct / seen),
            ("val_loss", val_loss),
            ("val_acc", val_acc),
            ("lr", opt.param_groups[0]["lr"]),
            ("seconds", seconds),
        ):
            hist[key].append(value)
        key = (val_acc, -val_loss)
        if key > best_key:
            best_key, best_epoch, since_best = key, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", val_acc=f"{val_acc:.3f}", best=best_epoch)
        if since_best >= patience:
            stop_reason = f"early stop: no validation gain for {patience} epochs"
            break
        if max_seconds is not None and time.perf_counter() - t_start > max_seconds:
            stop_reason = f"time limit: max_seconds={max_seconds} reached"
            break
    bar.close()

    model.load_state_dict(best_state)
    model.fsq.bound_noise = 0.0
    model.eval()
    hist.update(
        {
            "best_epoch": best_epoch,
            "best_val_acc": best_key[0],
            "best_val_loss": -best_key[1],
            "epochs_run": len(hist["epoch"]),
            "stop_reason": stop_reason,
            "total_seconds": time.perf_counter() - t_start,
            "train_seconds": train_seconds,
            "windows_per_s": windows_seen / train_seconds if train_seconds > 0 else float("nan"),
            "train_windows": int(n),
            "val_windows": int(Xva.shape[0]),
            "device": str(dev),
            "torch_threads": torch.get_num_threads(),
            "backend": BACKEND,
            "margin_weight": margin_weight,
            "margin": margin,
            "bound_noise": bound_noise,
            "margin_warmup": margin_warmup,
        }
    )
    return hist


@torch.no_grad()
def predict_logits(model: nn.Module, X: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Eval-mode logits (float32 numpy, backend torch-fp32) for normalised windows (N, C, S, T)."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 4:
        raise ValueError(f"X must be (N, C, S, T); got shape {X.shape}")
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for i in range(0, X.shape[0], batch_size):
        out.append(model(torch.from_numpy(X[i : i + batch_size]).to(dev)).float().cpu().numpy())
    model.train(was_training)
    if not out:
        n_cls = model.config.num_classes if hasattr(model, "config") else 0
        return np.zeros((0, n_cls), np.float32)
    return np.concatenate(out, axis=0)
