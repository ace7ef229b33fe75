"""Every backend's outputs are checked for NaN/inf before a metric is computed from them."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.evaluate.backends import Backend, EvalContext, EvalData, NonFiniteOutput, evaluate_backend
from workbench.evaluate.metrics import BackendResult, load_predictions

C, S, T, D, K = 2, 1, 4, 3, 3


class _Host:
    def __init__(self, poison_logits=False):
        self.poison = poison_logits

    def __call__(self, npu_out):
        levels = np.round(npu_out).astype(np.float32)
        logits = levels @ np.eye(D, K, dtype=np.float32)
        if self.poison:
            logits[-1, 0] = np.inf
        return levels, logits


class _Fixed(Backend):
    """A backend that returns a prepared NPU output (standing in for any real one)."""

    name = "ort-fp32"
    hardware = "test"

    def __init__(self, ctx, out):
        super().__init__(ctx)
        self.out = out

    def _availability(self):
        return True, "test"

    def _npu_output(self, x, index):
        return self.out[: len(x)]


def _ctx(tmp_path, host):
    split = {"cut": "after_bound", "npu_input_shape": [1, C, S, T], "npu_output_shape": [1, D], "fsq_levels": [3, 3, 3]}
    return EvalContext(
        run_dir=tmp_path,
        split=split,
        host=host,
        checkpoint=tmp_path / "c.pt",
        npu_dynamic_onnx=tmp_path / "a.onnx",
        npu_int8_onnx=tmp_path / "b.onnx",
        compile_dir=tmp_path,
    )


def _data(n=5):
    return EvalData(
        X=np.zeros((n, C, S, T), np.float32),
        y=np.zeros(n, np.int64),
        subject=np.arange(n),
        index=np.arange(n),
        label_names=["a", "b", "c"],
    )


def test_nan_npu_output_stops_evaluation(tmp_path):
    out = np.ones((5, D), np.float32)
    out[3, 1] = np.nan
    with pytest.raises(NonFiniteOutput, match=r"ort-fp32 produced NaN/inf in its NPU output .* 1 of 5 windows"):
        evaluate_backend(_Fixed(_ctx(tmp_path, _Host()), out), _data())


def test_inf_logits_from_the_host_stop_evaluation(tmp_path):
    b = _Fixed(_ctx(tmp_path, _Host(poison_logits=True)), np.ones((5, D), np.float32))
    with pytest.raises(NonFiniteOutput, match="logits"):
        evaluate_backend(b, _data())


def test_results_and_saved_predictions_refuse_nan(tmp_path):
    good = dict(
        backend="x",
        index=np.arange(2),
        y=np.zeros(2, np.int64),
        subject=np.zeros(2, np.int64),
        levels=np.zeros((2, D), np.float32),
        num_classes=K,
    )
    with pytest.raises(ValueError, match="NaN/inf logits"):
        BackendResult(logits=np.array([[0, np.nan, 1], [1, 2, 3]], np.float32), **good)
    path = tmp_path / "predictions_x.npz"
    np.savez(
        path,
        logits=np.array([[0, np.nan, 1], [1, 2, 3]], np.float32),
        levels=good["levels"],
        y=good["y"],
        subject=good["subject"],
        index=good["index"],
        backend=np.array("x"),
    )
    with pytest.raises(ValueError, match=rf"{path}: logits hold 1 NaN/inf"):
        load_predictions(path)
