"""Compile the NPU part of the graph with the Hailo Dataflow Compiler's Python API (ClientRunner).

Runs only where ``hailo_sdk_client`` imports (x86_64 Linux with the DFC wheel). The calls follow
REFERENCE.md §2 (hailo_model_zoo's own use of ClientRunner): translate with the end nodes from
split.json and a static NCHW input shape, load the generated model script, optimize with the real
calibration set (NHWC, keyed by the parsed HN input layer), emulate in SDK_FP_OPTIMIZED and
SDK_QUANTIZED on the test windows, compile to a HEF and save the HAR. Every DFC log line is kept in
``dfc.log`` and parsed, so decisions the DFC takes silently (optimization level lowered without a
GPU, calibration entries used) reach the notebook.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from workbench.errors import CompileError
from workbench.hailo.alls import script_calibset_size, script_layers
from workbench.hailo.dfc_log import parse_dfc_log
from workbench.hailo.resolve16 import resolved_script

HW_ARCHS = ("hailo8", "hailo8l", "hailo8r")
RESOLVED_ALLS = "model_resolved.alls"  # model.alls + the a16_w16 lines resolved after parsing
EMULATOR_FILES = {
    "fp_optimized": "emulator_fp_optimized_test.npy",
    "quantized": "emulator_quantized_test.npy",
    "indices": "emulator_test_indices.npy",
    "info": "emulator_info.json",
}


def dfc_available() -> tuple[bool, str]:
    """(True, version) when ``hailo_sdk_client`` imports, else (False, why not)."""
    try:
        import hailo_sdk_client  # noqa: F401
    except ImportError as exc:
        return False, f"hailo_sdk_client does not import ({exc}); the Hailo Dataflow Compiler is not installed"
    except Exception as exc:  # a broken install (e.g. a missing native library) is also "not available"
        return False, f"hailo_sdk_client failed to import: {type(exc).__name__}: {exc}"
    return True, _dfc_version()


def _dfc_version() -> str:
    from importlib import metadata

    for dist in ("hailo-dataflow-compiler", "hailo_dataflow_compiler"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    import hailo_sdk_client

    return str(getattr(hailo_sdk_client, "__version__", "unknown"))


@dataclass
class CompileResult:
    """What a DFC run produced. ``hef_path`` is None when compilation did not get that far."""

    dfc_version: str
    hw_arch: str
    net_name: str
    hn_input_layer: str
    hn_input_shape: list
    hn_output_layers: list
    calib_entries_passed: int
    log_path: Path
    log_facts: dict
    hef_path: Optional[Path] = None
    har_path: Optional[Path] = None
    hef_bytes: int = 0
    emulator: Optional[dict] = None
    timings_s: dict = field(default_factory=dict)
    backend: str = "hailo-dataflow-compiler"

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("log_path", "hef_path", "har_path"):
            d[k] = str(d[k]) if d[k] is not None else None
        return d


# ------------------------------------------------------------------------------------------------
# log capture
class _Tee(io.TextIOBase):
    def __init__(self, stream: Any, sink: io.StringIO):
        self._stream, self._sink = stream, sink

    def write(self, s: str) -> int:
        self._sink.write(s)
        try:
            self._stream.write(s)
        except Exception:  # pragma: no cover - a closed notebook stream must not stop the compile
            pass
        return len(s)

    def flush(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.flush()


@contextlib.contextmanager
def capture_dfc_log(log_path: Path) -> Iterator[io.StringIO]:
    """Collect Python log records of the ``hailo*`` loggers and everything printed to sys.stdout /
    sys.stderr (still shown) into ``log_path``. Output that native code writes straight to file
    descriptor 1/2 is not seen here; the DFC also keeps its own log file (hailo_sdk.client.log) in
    the working directory."""
    buf = io.StringIO()
    fmt = logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    attached: list[logging.Logger] = []

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            with contextlib.suppress(Exception):
                buf.write(fmt.format(record) + "\n")

    direct = _Handler(level=logging.DEBUG)
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0].startswith("hailo")]
    levels: dict[str, int] = {}
    for name in sorted(set(names) | {"hailo_sdk_client", "hailo_sdk_common", "hailo_model_optimization"}):
        lg = logging.getLogger(name)
        lg.addHandler(direct)
        attached.append(lg)
        if lg.getEffectiveLevel() > logging.INFO:  # the facts we parse are INFO lines
            levels[name] = lg.level
            lg.setLevel(logging.INFO)
    direct_names = {lg.name for lg in attached}
    via_root = _Handler(level=logging.INFO)
    # records that reach the root from loggers not handled directly (created later, other names)
    via_root.addFilter(lambda r: not any(r.name == n or r.name.startswith(n + ".") for n in direct_names))
    logging.root.addHandler(via_root)
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(old_out, buf), _Tee(old_err, buf)
    try:
        yield buf
    finally:
        sys.stdout, sys.stderr = old_out, old_err
        logging.root.removeHandler(via_root)
        for lg in attached:
            lg.removeHandler(direct)
            if lg.name in levels:
                lg.setLevel(levels[lg.name])
        Path(log_path).write_text(buf.getvalue())


SDK_LOG_NAME = "hailo_sdk.client.log"  # the DFC's own log file, in its working directory (REFERENCE.md §7)


@contextlib.contextmanager
def _working_dir(path: Path) -> Iterator[None]:
    """Run the DFC inside the stage folder, so the log files it writes there belong to this run
    (contextlib.chdir is Python >= 3.11; the DFC machine runs 3.10)."""
    import os

    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _sdk_log_marks(folders: Sequence[Path]) -> dict[Path, int]:
    """Where hailo_sdk.client.log may grow during this compile, and its size now."""
    marks = {}
    for folder in folders:
        p = (folder / SDK_LOG_NAME).resolve()
        marks[p] = p.stat().st_size if p.is_file() else 0
    return marks


def _sdk_log_since(marks: dict[Path, int]) -> str:
    """What the DFC appended to its own log files since ``_sdk_log_marks``."""
    parts = []
    for p, offset in marks.items():
        if p.is_file() and p.stat().st_size > offset:
            with open(p, "rb") as fh:
                fh.seek(offset)
                parts.append(fh.read().decode("utf-8", errors="replace"))
    return "".join(parts)


def _log_facts(log_path: Path, sdk_marks: dict[Path, int], calib_size: int) -> dict:
    """DFC facts from the captured log; when the capture holds none of them (the DFC's log records never
    reached Python logging here), from what the DFC wrote to hailo_sdk.client.log during this compile,
    which is then appended to dfc.log so the log the facts come from is kept with the run."""
    captured = log_path.read_text()
    facts = parse_dfc_log(captured, calibset_size=calib_size)
    if facts["calibration_entries"] is None and facts["optimization_level_reduced_to"] is None:
        sdk_text = _sdk_log_since(sdk_marks)
        if sdk_text.strip():
            with open(log_path, "a") as fh:
                fh.write(f"\n# ---- {SDK_LOG_NAME} (the DFC's own log file, lines of this compile) ----\n")
                fh.write(sdk_text)
            facts = parse_dfc_log(sdk_text, calibset_size=calib_size)
            facts["source"] = SDK_LOG_NAME
            return facts
    facts["source"] = "captured log records"
    return facts


# ------------------------------------------------------------------------------------------------
def hn_input_layers(hn: dict) -> dict[str, list]:
    """{HN input layer name: its input shape} from ``runner.get_hn_dict()``."""
    layers = hn.get("layers", {}) if isinstance(hn, dict) else {}
    out = {}
    for name, layer in layers.items():
        if layer.get("type") == "input_layer":
            shapes = layer.get("input_shapes") or layer.get("output_shapes") or [[]]
            out[name] = list(shapes[0])
    return out


def hn_output_layers(hn: dict) -> list[str]:
    layers = hn.get("layers", {}) if isinstance(hn, dict) else {}
    return [n for n, layer in layers.items() if layer.get("type") == "output_layer"]


def _short(name: str) -> str:
    return name.split("/", 1)[1] if "/" in name else name


def _as_array(calib: Union[np.ndarray, str, Path]) -> np.ndarray:
    arr = np.load(calib) if isinstance(calib, (str, Path)) else calib
    arr = np.asarray(arr)
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    return np.ascontiguousarray(arr)


def _batch_for(n: int, cap: int = 64) -> int:
    """Largest divisor of n not above cap, so the emulator never sees a ragged last batch."""
    for b in range(min(cap, n), 0, -1):
        if n % b == 0:
            return b
    return 1


def check_calibration(calib: np.ndarray, hn_shape: Sequence[int], model_script: str) -> None:
    """The calibration set must be NHWC as the HN input and as large as calibset_size says."""
    want = tuple(int(d) for d in hn_shape[1:])
    if calib.ndim != 4 or tuple(calib.shape[1:]) != want:
        hint = ""
        if calib.ndim == 4 and tuple(calib.shape[1:]) == (want[2], want[0], want[1]):
            hint = " It looks NCHW: convert with workbench.layout.nchw_to_nhwc."
        raise CompileError(
            f"calibration set has shape {calib.shape}, the parsed HN input expects "
            f"(N, {', '.join(map(str, want))}) channels-last.{hint}"
        )
    if not np.isfinite(calib).all():
        raise CompileError("calibration set holds NaN or inf values; rebuild it in stage 05")
    size = script_calibset_size(model_script)
    if size is None:
        raise CompileError(
            "the model script has no calibset_size: the DFC would use only 64 entries. "
            "Generate it with make_model_script(calibset_size=len(calibset), ...)"
        )
    if size != len(calib):
        raise CompileError(
            f"model script calibset_size={size} but the calibration set has {len(calib)} "
            f"windows; regenerate model.alls with calibset_size={len(calib)}"
        )


def compile_with_dfc(
    npu_onnx: Union[str, Path],
    split_info: dict,
    calibset_nhwc: Union[np.ndarray, str, Path],
    model_script: str,
    out_dir: Union[str, Path],
    hw_arch: str,
    net_name: str,
    emulate_inputs_nhwc: Optional[np.ndarray] = None,
    emulate_indices: Optional[np.ndarray] = None,
    start_node_names: Optional[Sequence[str]] = None,
    sixteen_bit_onnx_nodes: Sequence[str] = (),
    sixteen_bit_inputs: Sequence[str] = (),
) -> CompileResult:
    """Translate, optimize, emulate, compile. Writes model.hef, model.har, dfc.log (and the emulator
    outputs) into ``out_dir``. Raises CompileError for bad inputs and lets DFC errors through after
    the log is written.

    ``sixteen_bit_onnx_nodes`` / ``sixteen_bit_inputs``: ONNX node / graph-input names stage 05 keeps
    at 16 bits; after parsing they are resolved to HN layers through ``original_names`` and appended
    to the model script as ``precision_mode=a16_w16`` lines (written to ``model_resolved.alls``)."""
    if hw_arch not in HW_ARCHS:
        raise CompileError(f"hw_arch {hw_arch!r} is not one of {', '.join(HW_ARCHS)}")
    ok, version = dfc_available()
    if not ok:
        raise CompileError(f"{version}. Use the bundle (compile.sh) on a machine with the DFC.")
    from hailo_sdk_client import ClientRunner, InferenceContext

    npu_onnx = Path(npu_onnx).resolve()  # absolute: the DFC runs with the stage folder as working dir
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not npu_onnx.is_file():
        raise CompileError(f"{npu_onnx} not found: stage 04 writes npu.onnx")
    end_nodes = list(split_info.get("npu_end_nodes") or [])
    input_name = split_info.get("npu_input_name")
    input_shape = [int(d) for d in split_info.get("npu_input_shape") or []]
    if not end_nodes or not input_name or len(input_shape) != 4:
        raise CompileError(
            "split.json needs npu_end_nodes, npu_input_name and a 4-D npu_input_shape "
            f"(N, C, S, T); got {end_nodes!r}, {input_name!r}, {input_shape!r}"
        )
    if input_shape[0] != 1:
        input_shape[0] = 1  # the DFC wants a static batch of 1 in net_input_shapes
    calib = _as_array(calibset_nhwc)
    log_path = out / "dfc.log"
    timings: dict[str, float] = {}
    hef_path = har_path = None
    hef_len = 0
    emulator = None
    hn_in_name, hn_in_shape, outs = "", [], []
    sdk_logs = _sdk_log_marks([Path.cwd(), out])
    with capture_dfc_log(log_path), _working_dir(out):
        t = time.perf_counter()
        runner = ClientRunner(hw_arch=hw_arch)
        kwargs: dict[str, Any] = dict(end_node_names=end_nodes, net_input_shapes={input_name: input_shape})
        if start_node_names:
            kwargs["start_node_names"] = list(start_node_names)
        runner.translate_onnx_model(str(npu_onnx), net_name, **kwargs)
        timings["translate"] = time.perf_counter() - t
        hn = runner.get_hn_dict()
        inputs = hn_input_layers(hn)
        if len(inputs) != 1:
            raise CompileError(f"expected one HN input layer after translation, found {list(inputs)}")
        hn_in_name, hn_in_shape = next(iter(inputs.items()))
        outs = hn_output_layers(hn)
        check_calibration(calib, hn_in_shape, model_script)
        known = {_short(n) for n in hn.get("layers", {})} | set(hn.get("layers", {}))
        missing = [n for n in script_layers(model_script) if n not in known]
        if missing:
            raise CompileError(
                f"model script names layers the parsed net does not have: {missing}; "
                f"HN layers: {sorted(_short(n) for n in hn.get('layers', {}))}"
            )
        if sixteen_bit_onnx_nodes or sixteen_bit_inputs:
            try:
                model_script, _ = resolved_script(
                    model_script, hn, {"onnx_nodes": list(sixteen_bit_onnx_nodes), "inputs": list(sixteen_bit_inputs)}
                )
            except ValueError as exc:
                raise CompileError(str(exc)) from None
            (out / RESOLVED_ALLS).write_text(model_script)
        runner.load_model_script(model_script)
        t = time.perf_counter()
        runner.optimize({hn_in_name: calib})
        timings["optimize"] = time.perf_counter() - t
        if emulate_inputs_nhwc is not None:
            t = time.perf_counter()
            emulator = _run_emulator(
                runner, InferenceContext, _as_array(emulate_inputs_nhwc), hn_in_shape, emulate_indices, split_info, out
            )
            timings["emulate"] = time.perf_counter() - t
        t = time.perf_counter()
        hef = runner.compile()
        timings["compile"] = time.perf_counter() - t
        if not isinstance(hef, (bytes, bytearray)) or not hef:
            raise CompileError(f"runner.compile() returned {type(hef).__name__}, not the HEF bytes")
        hef_path = out / "model.hef"
        hef_path.write_bytes(bytes(hef))
        hef_len = len(hef)
        har_path = out / "model.har"
        runner.save_har(str(har_path))
    facts = _log_facts(log_path, sdk_logs, len(calib))
    result = CompileResult(
        dfc_version=version,
        hw_arch=hw_arch,
        net_name=net_name,
        hn_input_layer=hn_in_name,
        hn_input_shape=hn_in_shape,
        hn_output_layers=outs,
        calib_entries_passed=len(calib),
        log_path=log_path,
        log_facts=facts,
        hef_path=hef_path,
        har_path=har_path,
        hef_bytes=hef_len,
        emulator=emulator,
        timings_s=timings,
    )
    (out / "compile_result.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


def _run_emulator(
    runner: Any,
    InferenceContext: Any,
    x: np.ndarray,
    hn_shape: Sequence[int],
    indices: Optional[np.ndarray],
    split_info: dict,
    out: Path,
) -> dict:
    """SDK_FP_OPTIMIZED and SDK_QUANTIZED outputs on the given NHWC windows, flattened to (N, D)."""
    want = tuple(int(d) for d in hn_shape[1:])
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
        raise CompileError(
            f"emulator inputs have shape {x.shape}; expected NHWC (N, {', '.join(map(str, want))})."
            " Convert test windows with workbench.layout.nchw_to_nhwc after normalising."
        )
    n = len(x)
    idx = np.arange(n) if indices is None else np.asarray(indices)
    if len(idx) != n:
        raise CompileError(f"{len(idx)} indices for {n} emulator windows")
    d = int(np.prod(split_info.get("npu_output_shape", [1, -1])[1:])) if split_info.get("npu_output_shape") else None
    outputs = {}
    for key, ctx_name in (("fp_optimized", "SDK_FP_OPTIMIZED"), ("quantized", "SDK_QUANTIZED")):
        with runner.infer_context(getattr(InferenceContext, ctx_name)) as ctx:
            y = runner.infer(context=ctx, dataset=x, batch_size=_batch_for(n))
        if isinstance(y, (list, tuple)):
            if len(y) != 1:
                raise CompileError(f"emulator returned {len(y)} outputs; the NPU part must have exactly one")
            y = y[0]
        y = np.asarray(y, dtype=np.float32).reshape(n, -1)
        if d is not None and y.shape[1] != d:
            raise CompileError(f"emulator output has {y.shape[1]} values per window, split.json says {d}")
        np.save(out / EMULATOR_FILES[key], y)
        outputs[key] = str(out / EMULATOR_FILES[key])
    np.save(out / EMULATOR_FILES["indices"], idx)
    info = {
        "backend": "hailo-emulator",
        "contexts": ["SDK_FP_OPTIMIZED", "SDK_QUANTIZED"],
        "windows": n,
        "input_layout": "NHWC",
        "files": {k: EMULATOR_FILES[k] for k in ("fp_optimized", "quantized", "indices")},
    }
    (out / EMULATOR_FILES["info"]).write_text(json.dumps(info, indent=2))
    return {**info, "paths": outputs}
