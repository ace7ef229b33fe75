"""The one ONNX Runtime session factory: CPU, one intra-op thread (the models are tiny, so one thread
is fastest and keeps timings stable on a shared machine), quiet logs. Needs neither torch nor onnx."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Union


def ort_session(model: Union[str, Path, Any], threads: int = 1) -> Any:
    """An ``onnxruntime.InferenceSession`` for a path or an in-memory ``onnx.ModelProto``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    data = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
