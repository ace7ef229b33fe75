"""The one ONNX Runtime session factory: CPU, one intra-op thread (the models are tiny, so one thread
is fastest and keeps timings stable on a shared machine), quiet logs. Needs neither torch nor onnx."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

from workbench.errors import SplitError


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


def npu_io(session: Any, output_tensor: Optional[str]) -> tuple[str, str, Optional[int]]:
    """(input name, output name, static batch or None) of an NPU-part session. The output is split.json's
    ``npu_output_tensor`` (or the only output); anything else means the files come from different runs."""
    inp = session.get_inputs()[0]
    outs = [o.name for o in session.get_outputs()]
    if output_tensor in outs:
        out = output_tensor
    elif len(outs) == 1:
        out = outs[0]
    else:
        raise SplitError(
            f"the NPU model has outputs {outs} and none is split.json's npu_output_tensor "
            f"{output_tensor!r}; the files come from different runs: re-run stages 04/05"
        )
    return inp.name, str(out), inp.shape[0] if isinstance(inp.shape[0], int) else None
