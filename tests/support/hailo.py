"""Install the fake Hailo packages for one test: ``with installed_fakes() as core:`` or the
``hailo_fakes`` fixture (defined in tests/conftest.py).

The fakes live in tests/fakes; this puts that folder first on sys.path and its ``bin`` (the fake
``hailortcli``) first on PATH, drops any cached ``hailo_*`` modules so the fakes load fresh, and undoes
all of it afterwards (a fake device a test left open is released).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

FAKES_DIR = Path(__file__).resolve().parents[1] / "fakes"
FAKES_BIN = FAKES_DIR / "bin"
_PREFIXES = ("hailo_sdk_client", "hailo_platform", "_hailo_fake_core")


def _drop_cached() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in _PREFIXES:
            del sys.modules[name]


@contextlib.contextmanager
def installed_fakes() -> Iterator[object]:
    """Yield the shared fake core module (``.CALLS``, ``.calls(name)``, ``.reset()``)."""
    _drop_cached()
    sys.path.insert(0, str(FAKES_DIR))
    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([str(FAKES_BIN), old_path])
    try:
        import _hailo_fake_core as core

        core.reset()
        yield core
    finally:
        import _hailo_fake_core as core

        core.release_device()
        os.environ["PATH"] = old_path
        with contextlib.suppress(ValueError):
            sys.path.remove(str(FAKES_DIR))
        _drop_cached()


def fakes_env() -> dict:
    """Environment for a subprocess (e.g. a papermill kernel) that should see the fakes."""
    env = dict(os.environ)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(FAKES_DIR), *rest])
    env["PATH"] = os.pathsep.join([str(FAKES_BIN), env.get("PATH", "")])
    return env


# ---- a tiny NPU graph for tests: conv -> relu -> pool -> gemm -> FSQ bound (no Round) ------------
TINY = {"C": 3, "S": 2, "T": 16, "D": 4, "input": "imu", "end_node": "fsq_bound_sub"}


def make_tiny_npu_onnx(path: Path, seed: int = 0, shape: tuple = ()) -> dict:
    """Write a static-batch-1 ONNX like stage 04's npu.onnx (non-square C, S, T on purpose) and
    return a split.json-style dict for it."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    c, s, t = shape or (TINY["C"], TINY["S"], TINY["T"])
    d = TINY["D"]
    rng = np.random.default_rng(seed)
    k = 5
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (k, c, 1, 3)).astype(np.float32), "w_conv"),
        numpy_helper.from_array(rng.normal(0, 0.1, (k,)).astype(np.float32), "b_conv"),
        numpy_helper.from_array(rng.normal(0, 0.7, (d, k)).astype(np.float32), "w_proj"),
        numpy_helper.from_array(rng.normal(0, 0.1, (d,)).astype(np.float32), "b_proj"),
        numpy_helper.from_array(np.array([0.1, -0.2, 0.0, 0.05], np.float32), "shift"),
        numpy_helper.from_array(np.array([3.5, 2.5, 2.0, 1.5], np.float32), "half_l"),
        numpy_helper.from_array(np.array([0.5, 0.5, 0.0, 0.5], np.float32), "offset"),
    ]
    nodes = [
        helper.make_node("Conv", ["imu", "w_conv", "b_conv"], ["c1"], name="conv1", pads=[0, 1, 0, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("GlobalAveragePool", ["r1"], ["p1"], name="pool1"),
        helper.make_node("Flatten", ["p1"], ["f1"], name="flatten1"),
        helper.make_node("Gemm", ["f1", "w_proj", "b_proj"], ["z"], name="project", transB=1),
        helper.make_node("Add", ["z", "shift"], ["zs"], name="fsq_add"),
        helper.make_node("Tanh", ["zs"], ["th"], name="fsq_tanh"),
        helper.make_node("Mul", ["th", "half_l"], ["m"], name="fsq_mul"),
        helper.make_node("Sub", ["m", "offset"], ["bound"], name=TINY["end_node"]),
    ]
    graph = helper.make_graph(
        nodes,
        "npu",
        [helper.make_tensor_value_info("imu", TensorProto.FLOAT, [1, c, s, t])],
        [helper.make_tensor_value_info("bound", TensorProto.FLOAT, [1, d])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return {
        "cut": "after_bound",
        "round_nodes": ["fsq_round"],
        "npu_output_tensor": "bound",
        "npu_end_nodes": [TINY["end_node"]],
        "npu_input_name": "imu",
        "npu_input_shape": [1, c, s, t],
        "npu_output_shape": [1, d],
        "host_input_name": "bound",
        "host_output_names": ["logits"],
        "fsq_levels": [8, 6, 5, 4],
    }


def ort_reference(onnx_path: Path, x_nchw):
    """Independent reference: the ONNX under onnxruntime on NCHW windows, one at a time."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate(
        [sess.run(None, {name: x_nchw[i : i + 1].astype(np.float32)})[0] for i in range(len(x_nchw))]
    ).reshape(len(x_nchw), -1)


def make_tiny_hef(tmp_path: Path, bits16: bool = False) -> Path:
    """A fake HEF of the tiny NPU graph, compiled by the fake DFC (the fakes must be installed)."""
    import numpy as np

    from workbench.data.layout import nchw_to_nhwc
    from workbench.hailo.alls import make_model_script
    from workbench.hailo.compile import compile_with_dfc

    split = make_tiny_npu_onnx(tmp_path / "npu.onnx")
    calib = np.random.default_rng(3).normal(0, 1, (32, TINY["C"], TINY["S"], TINY["T"])).astype(np.float32)
    script = make_model_script(
        calibset_size=32,
        calib_batch_size=8,
        optimization_level=0,
        compression_level=0,
        output_layer="output_layer1" if bits16 else None,
        input_is_normalized=True,
    )
    return compile_with_dfc(
        tmp_path / "npu.onnx", split, nchw_to_nhwc(calib), script, tmp_path / "06", "hailo8", "fsq"
    ).hef_path
