"""Checkpoints with non-finite weights or pickled code are refused with a message that names the problem
(and never advises loading the file unsafely); NaN weights surface as such, not as an FSQ error."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from workbench.model import CheckpointError, FSQClassifier, ModelConfig, load_checkpoint, save_checkpoint
from workbench.model.checkpoint import NonFiniteModel, check_model_outputs

CFG = ModelConfig(
    in_channels=3,
    sites=1,
    window=20,
    num_classes=3,
    encoder_channels=[4],
    kernel_time=3,
    fsq_levels=[5, 5, 4],
    head_hidden=0,
    dropout=0.0,
)
NORM = {"mean": np.zeros((3, 1, 1), np.float32), "std": np.ones((3, 1, 1), np.float32)}


def _model(seed=0):
    torch.manual_seed(seed)
    return FSQClassifier(CFG).eval()


def _save_raw(model, path):
    """A checkpoint as save_checkpoint writes it, but with whatever weights the model holds."""
    torch.save(
        {
            "format": "workbench-fsq-checkpoint",
            "format_version": 1,
            "config": CFG.to_dict(),
            "state_dict": model.state_dict(),
            "normalizer": {k: v.tolist() for k, v in NORM.items()},
            "label_names": ["a", "b", "c"],
            "provenance": {},
            "metrics": {},
        },
        path,
    )
    return path


def _poison(model, name, where=(0,), value=float("nan")):
    with torch.no_grad():
        model.state_dict()[name].view(-1)[list(where)] = value
    return model


def test_nan_weights_are_named_at_load(tmp_path):
    m = _model()
    bias = "head.0.bias"  # the classifier head's bias
    _poison(m, bias)
    first = next(k for k in m.state_dict() if m.state_dict()[k].is_floating_point())
    _poison(m, first, where=(0, 1), value=float("inf"))
    path = _save_raw(m, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "non-finite weights" in msg and f"{bias} (1 of" in msg and f"{first} (2 of" in msg


def test_save_refuses_non_finite_weights(tmp_path):
    m = _poison(_model(), next(iter(_model().state_dict())))
    with pytest.raises(CheckpointError, match="refusing to save .*non-finite weights"):
        save_checkpoint(tmp_path / "c.pt", m, CFG, NORM, ["a", "b", "c"], {}, {})
    assert not (tmp_path / "c.pt").exists()


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_pickle_payload_is_refused_without_unsafe_advice(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "workbench-fsq-checkpoint", "x": _Payload()}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "pickled reference to posix.system" in msg and "could run code" in msg
    for unsafe in ("weights_only=False", "weights_only", "safe_globals", "trusted source"):
        assert unsafe not in msg


def test_nan_encoder_weights_surface_as_non_finite_not_as_fsq_levels():
    m = _model()
    enc = next(k for k in m.state_dict() if k.endswith("weight"))
    _poison(m, enc, where=tuple(range(m.state_dict()[enc].numel())))
    with torch.no_grad():
        parts = m.forward_parts(torch.randn(4, 3, 1, 20))
    with pytest.raises(NonFiniteModel, match=rf"NaN/inf outputs .*non-finite weights: {enc}"):
        check_model_outputs(m, parts, "torch-fp32 on the val split")
    with pytest.raises(ValueError, match="FSQ levels hold NaN/inf .*encoder produced non-finite"):
        m.fsq.codes_to_indices(parts["levels"])


def test_finite_weights_with_nan_input_blame_the_input():
    m = _model()
    x = torch.randn(4, 3, 1, 20)
    x[1, 0, 0, 3] = float("nan")
    with torch.no_grad():
        parts = m.forward_parts(x)
    with pytest.raises(NonFiniteModel, match="every weight is finite, so the input windows"):
        check_model_outputs(m, parts, "torch-fp32")
