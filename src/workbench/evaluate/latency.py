"""Batch-1 latency per backend, end to end (input -> logits, host post-processing included).

Each iteration times two spans with one clock: the backend's NPU part (``npu_output``: the
pre-Round tensor) and the whole prediction (NPU part + the shared numpy host post-processor). For
the CPU backends the "core" span is CPU time of the NPU subgraph, labelled CPU, never NPU latency.
The DFC emulator is a numerical simulation: its timing means nothing and is not reported.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

PERCENTILES = (50, 95, 99)


@dataclass
class LatencyStats:
    """Timing summary of one backend; every field is tagged with that backend's name."""

    backend: str
    hardware: str  # what actually ran, e.g. "CPU (onnxruntime)", "Hailo-8 NPU"
    iterations: int = 0
    warmup: int = 0
    e2e_p50_ms: Optional[float] = None
    e2e_p95_ms: Optional[float] = None
    e2e_p99_ms: Optional[float] = None
    e2e_mean_ms: Optional[float] = None
    core_p50_ms: Optional[float] = None
    core_p95_ms: Optional[float] = None
    core_p99_ms: Optional[float] = None
    host_p50_ms: Optional[float] = None
    throughput_fps: Optional[float] = None  # sequential batch-1 windows per second, end to end
    note: str = ""

    @property
    def measured(self) -> bool:
        return self.e2e_p50_ms is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentiles_ms(samples_s: Sequence[float], qs: Sequence[float] = PERCENTILES) -> dict[int, float]:
    """Percentiles (linear interpolation between order statistics) of durations in seconds, in ms."""
    arr = np.asarray(samples_s, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"need a non-empty 1-D list of durations, got shape {arr.shape}")
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise ValueError("durations must be finite and >= 0; check the clock passed to the timer")
    vals = np.percentile(arr * 1e3, list(qs))
    return {int(q): float(v) for q, v in zip(qs, vals)}


def summarize(
    backend: str,
    hardware: str,
    e2e_s: Sequence[float],
    core_s: Optional[Sequence[float]] = None,
    warmup: int = 0,
    note: str = "",
) -> LatencyStats:
    """Build :class:`LatencyStats` from per-iteration durations (seconds)."""
    e2e = percentiles_ms(e2e_s)
    total = float(np.sum(e2e_s))
    stats = LatencyStats(
        backend=backend,
        hardware=hardware,
        iterations=len(e2e_s),
        warmup=warmup,
        e2e_p50_ms=e2e[50],
        e2e_p95_ms=e2e[95],
        e2e_p99_ms=e2e[99],
        e2e_mean_ms=total / len(e2e_s) * 1e3,
        throughput_fps=(len(e2e_s) / total) if total > 0 else None,
        note=note,
    )
    if core_s is not None:
        if len(core_s) != len(e2e_s):
            raise ValueError("core and end-to-end timings must come from the same iterations")
        core = percentiles_ms(core_s)
        stats.core_p50_ms, stats.core_p95_ms, stats.core_p99_ms = core[50], core[95], core[99]
        host = np.asarray(e2e_s, dtype=np.float64) - np.asarray(core_s, dtype=np.float64)
        stats.host_p50_ms = float(np.percentile(host * 1e3, 50))
    return stats


def time_split_pipeline(
    core: Callable[[np.ndarray], Any],
    host: Callable[[Any], Any],
    inputs: np.ndarray,
    iterations: int,
    warmup: int,
    clock: Callable[[], float] = time.perf_counter,
    desc: str = "latency",
) -> tuple[list[float], list[float]]:
    """Call ``host(core(x))`` on batch-1 slices of ``inputs`` (cycled), ``warmup`` untimed times and
    then ``iterations`` timed times. Returns (end-to-end, core) durations in seconds."""
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if inputs.ndim < 2 or inputs.shape[0] == 0:
        raise ValueError(f"inputs must be a non-empty batch (N, ...), got shape {inputs.shape}")
    n = inputs.shape[0]
    for i in range(warmup):
        host(core(inputs[i % n : i % n + 1]))
    e2e, core_t = [], []
    for i in tqdm(range(iterations), desc=desc, leave=False):
        x = inputs[i % n : i % n + 1]
        t0 = clock()
        mid = core(x)
        t1 = clock()
        host(mid)
        t2 = clock()
        core_t.append(t1 - t0)
        e2e.append(t2 - t0)
    return e2e, core_t


def measure_backend(
    backend: Any, inputs: np.ndarray, iterations: int, warmup: int, clock: Callable[[], float] = time.perf_counter
) -> LatencyStats:
    """End-to-end batch-1 latency of one evaluation backend (see ``workbench.evaluate.backends``)."""
    if not getattr(backend, "timing_meaningful", True):
        return LatencyStats(
            backend=backend.name,
            hardware=backend.hardware,
            note=getattr(backend, "timing_note", "timing not meaningful; not reported"),
        )
    e2e, core = time_split_pipeline(
        backend.npu_output, backend.host, inputs, iterations, warmup, clock=clock, desc=f"latency {backend.name}"
    )
    note = getattr(backend, "timing_note", "")
    return summarize(backend.name, backend.hardware, e2e, core, warmup=warmup, note=note)


def latency_table(stats: Sequence[LatencyStats]) -> pd.DataFrame:
    """One row per backend (not-measured backends keep their row, with the reason in ``note``)."""
    return pd.DataFrame([s.to_dict() for s in stats])


# ---- targets --------------------------------------------------------------------------------------
def target_table(
    stats: Sequence[LatencyStats],
    target_core_ms: float,
    target_e2e_p95_ms: float,
    device_cli: Optional[dict[str, Any]] = None,
) -> pd.DataFrame:
    """Pass/fail of each measured number against the targets, with the backend and hardware it comes
    from. ``passed`` is None when nothing was measured. CPU rows are CPU numbers, not NPU latency.

    ``device_cli``: {"measure_latency": dict|None, "benchmark": dict|None} from hailortcli on the device.
    """
    rows: list[dict[str, Any]] = []

    def add(
        target: str, limit: float, value: Optional[float], backend: str, hardware: str, statistic: str, note: str = ""
    ) -> None:
        passed = None if value is None else bool(value < limit)
        rows.append(
            {
                "target": target,
                "limit_ms": limit,
                "measured_ms": value,
                "passed": passed,
                "backend": backend,
                "hardware": hardware,
                "statistic": statistic,
                "note": note,
            }
        )

    for s in stats:
        if not s.measured:
            add("core inference", target_core_ms, None, s.backend, s.hardware, "-", s.note)
            add("end-to-end p95", target_e2e_p95_ms, None, s.backend, s.hardware, "-", s.note)
            continue
        cpu = not s.hardware.lower().startswith("hailo")
        where = "CPU time of the NPU subgraph (not NPU latency)" if cpu else "HailoRT infer() incl. host I/O"
        add("core inference", target_core_ms, s.core_p95_ms, s.backend, s.hardware, "p95 of npu_output()", where)
        add(
            "end-to-end p95",
            target_e2e_p95_ms,
            s.e2e_p95_ms,
            s.backend,
            s.hardware,
            "p95 input->logits, batch 1",
            "CPU end to end" if cpu else "NPU + host post-processing",
        )
    if device_cli:
        ml = device_cli.get("measure_latency") or {}
        bm = device_cli.get("benchmark") or {}
        hw = _first(ml, "hw_latency_ms") or _first(bm, "hw_latency_ms")
        if hw is not None:
            src = (
                "hailortcli run --measure-latency"
                if _first(ml, "hw_latency_ms") is not None
                else "hailortcli benchmark"
            )
            add("core inference", target_core_ms, hw, "hailo8-device", "Hailo-8 NPU", f"HW latency ({src})")
        overall = _first(ml, "overall_latency_ms")
        if overall is not None:
            # a mean is not a p95: shown for reference, never judged against the p95 target
            rows.append(
                {
                    "target": "overall latency (reference, not the p95 target)",
                    "limit_ms": target_e2e_p95_ms,
                    "measured_ms": overall,
                    "passed": None,
                    "backend": "hailo8-device",
                    "hardware": "Hailo-8 NPU",
                    "statistic": "mean (hailortcli run --measure-overall-latency)",
                    "note": "no host post-processing; judge the p95 target on the end-to-end row",
                }
            )
    return pd.DataFrame(
        rows, columns=["target", "limit_ms", "measured_ms", "passed", "backend", "hardware", "statistic", "note"]
    )


def _first(d: dict[str, Any], key: str) -> Optional[float]:
    v = d.get(key) if d else None
    return None if v is None else float(v)


# ---- hailortcli on the device ----------------------------------------------------------------------
def device_cli_measurements(hef: Any, seconds: int, multi_process_service: bool = False) -> dict[str, Any]:
    """``hailortcli run --measure-latency --measure-overall-latency [--measure-power]`` and
    ``hailortcli benchmark`` on the HEF, parsed (workbench.hailo.cli_tools). Every entry is tagged
    ``hailo8-device``; a measurement that could not run is None with its reason in ``errors``.

    hailortcli is a second process: the caller must not hold the device meanwhile (release it with
    ``Hailo8Device.released()``), unless both go through the multi-process service."""
    from workbench.hailo.cli_tools import benchmark, hailortcli_available, run_measure_latency

    out: dict[str, Any] = {
        "backend": "hailo8-device",
        "hef": str(hef),
        "measure_latency": None,
        "benchmark": None,
        "errors": {},
    }
    ok, why = hailortcli_available()
    out["hailortcli"] = why
    if not ok:
        out["errors"]["hailortcli"] = why
        return out
    mps = bool(multi_process_service)
    out["multi_process_service"] = mps
    for key, fn in (
        ("measure_latency", lambda: run_measure_latency(hef, seconds, multi_process_service=mps)),
        ("benchmark", lambda: benchmark(hef, seconds, multi_process_service=mps)),
    ):
        try:
            res = fn()
            res.pop("raw", None)
            out[key] = res
        except Exception as exc:  # the table says which measurement failed and why; nothing is filled in
            out["errors"][key] = f"{type(exc).__name__}: {exc}"
    return out


def device_cli_table(cli: dict[str, Any]) -> pd.DataFrame:
    """The hailortcli numbers as rows (source, quantity, value, unit, note), all tagged hailo8-device."""
    rows = []
    for source in ("measure_latency", "benchmark"):
        res = cli.get(source) or {}
        for key, value in res.items():
            if key in ("backend", "command", "power_error") or value is None:
                continue
            unit = "ms" if key.endswith("_ms") else "W" if key.endswith("_w") else "fps" if "fps" in key else ""
            rows.append(
                {
                    "backend": "hailo8-device",
                    "source": f"hailortcli {source.replace('_', ' ')}",
                    "quantity": key,
                    "value": value,
                    "unit": unit,
                    "note": res.get("command", ""),
                }
            )
        if res.get("power_error"):
            rows.append(
                {
                    "backend": "hailo8-device",
                    "source": f"hailortcli {source.replace('_', ' ')}",
                    "quantity": "power",
                    "value": None,
                    "unit": "W",
                    "note": f"not measurable: {res['power_error']}",
                }
            )
    for source, why in (cli.get("errors") or {}).items():
        label = "hailortcli" if source == "hailortcli" else f"hailortcli {source.replace('_', ' ')}"
        rows.append(
            {
                "backend": "hailo8-device",
                "source": label,
                "quantity": "not measured",
                "value": None,
                "unit": "",
                "note": why,
            }
        )
    return pd.DataFrame(rows, columns=["backend", "source", "quantity", "value", "unit", "note"])
