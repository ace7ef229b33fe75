"""workbench.graph: ONNX export with proven parity, graph inspection, the split at the FSQ Round,
and the numpy host post-processor that runs next to the NPU.
"""

from __future__ import annotations

from workbench import lazy_exports

# Loaded on first use (PEP 562): the Pi service imports graph.host and graph.session, which must not pull
# onnx (export, inspect and split import it).
_WHERE = {
    "export": (
        "BACKEND_ORT",
        "BACKEND_TORCH",
        "INPUT_NAME",
        "OUTPUT_NAME",
        "ExportError",
        "ParityError",
        "check_and_infer",
        "check_parity",
        "export_onnx",
        "heldout_windows",
        "simplify_onnx",
        "verify_inference_graph",
    ),
    "session": ("ort_session",),
    "host": ("HostError", "HostPostprocessor", "compare_with_host_onnx", "levels_to_indices", "ulp_distance"),
    "inspect": (
        "compat_summary",
        "hailo_compatibility",
        "load_hailo_ops",
        "macs_per_layer",
        "node_table",
        "op_histogram",
        "parameter_count",
    ),
    "split": ("CUT_KINDS", "SplitError", "find_cut", "host_onnx_outputs", "prove_recomposition", "split_model"),
}

__all__ = [name for names in _WHERE.values() for name in names]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
