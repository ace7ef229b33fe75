"""Run ``hailortcli`` on a HEF and parse what it prints.

Output formats from the HailoRT sources (branch hailo8, ``hailort/hailortcli``):
``run`` prints, per network group, ``FPS: x``, ``HW Latency: x ms``, ``Overall Latency: x ms`` and
with ``--measure-power`` ``Average power consumption: x W`` (infer_stats_printer.cpp);
``benchmark`` prints ``FPS     (hw_only)                 = x``, ``        (streaming)               = x``,
``Latency (hw)                      = x ms``, ``        (overall)                 = x ms`` and
``  Power in streaming mode (average) = x W`` (benchmark_command.cpp). A field the tool did not print
is None here: nothing is filled in. Every number is tagged ``hailo8-device``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional, Union

from workbench.config import HAILO8_DEVICE

BACKEND = HAILO8_DEVICE
_NUM = r"(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"


def hailortcli_available() -> tuple[bool, str]:
    """(True, version text) when ``hailortcli`` is on PATH and answers ``--version``."""
    exe = shutil.which("hailortcli")
    if not exe:
        return False, "hailortcli not on PATH (install HailoRT; on a Raspberry Pi 5: sudo apt install hailo-all)"
    try:
        proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"hailortcli --version failed: {exc}"
    text = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        return False, f"hailortcli --version exited {proc.returncode}: {text[-300:]}"
    return True, text.splitlines()[-1] if text else "unknown"


def _power_in_watts(value: float, unit: str) -> Optional[float]:
    unit = unit.strip().lower()
    if unit in ("w", "watt", "watts"):
        return value
    if unit in ("mw", "milliwatt", "milliwatts"):
        return value / 1000.0
    return None  # e.g. current in A/mA is not power


def _last(pattern: str, text: str, flags: int = re.MULTILINE) -> Optional[re.Match]:
    hits = list(re.finditer(pattern, text, flags))
    return hits[-1] if hits else None


def _extract(text: str, fields: list[tuple[str, str, bool]], out: dict[str, Any]) -> dict[str, Any]:
    """Fill `out` from (key, regex, is_power) rows; the last match wins, missing fields stay None.
    Power patterns capture (value, unit) and are converted to watts."""
    for key, pattern, is_power in fields:
        m = _last(pattern, text)
        if m:
            out[key] = _power_in_watts(float(m.group(1)), m.group(2)) if is_power else float(m.group(1))
    return out


_RUN_FIELDS = [
    ("fps", rf"^\s*FPS:\s*{_NUM}", False),
    ("hw_latency_ms", rf"^\s*HW Latency:\s*{_NUM}\s*ms", False),
    ("overall_latency_ms", rf"^\s*Overall Latency:\s*{_NUM}\s*ms", False),
] + [
    (key, rf"^\s*{word} power consumption:\s*{_NUM}\s*([A-Za-z]+)", True)
    for key, word in (("power_min_w", "Minimum"), ("power_avg_w", "Average"), ("power_max_w", "Maximum"))
]

_BENCHMARK_FIELDS = [
    ("fps_hw_only", rf"^\s*FPS\s*\(hw_only\)\s*=\s*{_NUM}", False),
    ("fps", rf"^\s*(?:FPS\s*)?\(streaming\)\s*=\s*{_NUM}", False),
    ("hw_latency_ms", rf"^\s*Latency\s*\(hw\)\s*=\s*{_NUM}\s*ms", False),
    ("overall_latency_ms", rf"^\s*(?:Latency\s*)?\(overall\)\s*=\s*{_NUM}\s*ms", False),
    ("power_avg_w", rf"Power in streaming mode \(average\)\s*=\s*{_NUM}\s*([A-Za-z]+)", True),
    ("power_max_w", rf"^\s*\(max\)\s*=\s*{_NUM}\s*([A-Za-z]+)", True),
]


def parse_run_output(text: str) -> dict[str, Any]:
    """Parse ``hailortcli run --measure-latency --measure-overall-latency [--measure-power]``.
    Keys: fps, hw_latency_ms, overall_latency_ms, power_avg_w, power_max_w, power_min_w, backend."""
    out: dict[str, Any] = {
        "fps": None,
        "hw_latency_ms": None,
        "overall_latency_ms": None,
        "power_avg_w": None,
        "power_min_w": None,
        "power_max_w": None,
        "backend": BACKEND,
    }
    return _extract(text, _RUN_FIELDS, out)


def parse_benchmark_output(text: str) -> dict[str, Any]:
    """Parse ``hailortcli benchmark``'s summary. Keys: fps_hw_only, fps (streaming), hw_latency_ms,
    overall_latency_ms, power_avg_w, power_max_w, backend."""
    out: dict[str, Any] = {
        "fps_hw_only": None,
        "fps": None,
        "hw_latency_ms": None,
        "overall_latency_ms": None,
        "power_avg_w": None,
        "power_max_w": None,
        "backend": BACKEND,
    }
    summary = text.split("Summary", 1)[1] if "Summary" in text else text
    return _extract(summary, _BENCHMARK_FIELDS, out)


def _run(cmd: list[str], timeout: float) -> str:
    ok, why = hailortcli_available()
    if not ok:
        raise RuntimeError(why)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    text = proc.stdout + ("\n" + proc.stderr if proc.stderr else "")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{text[-2000:]}")
    return text


def run_measure_latency(
    hef: Union[str, Path],
    seconds: int,
    batch_size: int = 1,
    measure_power: bool = True,
    multi_process_service: bool = False,
) -> dict[str, Any]:
    """``hailortcli run <hef> --measure-latency --measure-overall-latency [--measure-power] -t S``.
    Power is not measurable on every board (e.g. M.2 modules); when the run with --measure-power fails,
    it is retried once without and ``power_error`` says why. With ``multi_process_service`` the device is
    reached through HailoRT's service (``--multi-process-service``), which excludes ``--measure-power``
    (hailortcli run_command.cpp)."""
    hef = str(Path(hef))
    base = [
        "hailortcli",
        "run",
        hef,
        "--measure-latency",
        "--measure-overall-latency",
        "-t",
        str(int(seconds)),
        "--batch-size",
        str(int(batch_size)),
    ]
    power_error = None
    if multi_process_service:
        base.append("--multi-process-service")
        if measure_power:
            power_error = "not measured: hailortcli run --multi-process-service excludes --measure-power"
        measure_power = False
    if measure_power:
        try:
            text = _run(base + ["--measure-power"], timeout=seconds * 4 + 60)
        except RuntimeError as exc:
            power_error = str(exc).splitlines()[-1][:300]
            text = _run(base, timeout=seconds * 4 + 60)
    else:
        text = _run(base, timeout=seconds * 4 + 60)
    res = parse_run_output(text)
    res.update(
        command=" ".join(base + (["--measure-power"] if measure_power and power_error is None else [])),
        power_error=power_error,
        raw=text,
    )
    return res


def benchmark(hef: Union[str, Path], seconds: int, multi_process_service: bool = False) -> dict[str, Any]:
    """``hailortcli benchmark <hef> -t S [--multi-process-service]`` (three measurements of S seconds each)."""
    cmd = ["hailortcli", "benchmark", str(Path(hef)), "-t", str(int(seconds))]
    if multi_process_service:
        cmd.append("--multi-process-service")
    text = _run(cmd, timeout=seconds * 6 + 120)
    res = parse_benchmark_output(text)
    res.update(command=" ".join(cmd), raw=text)
    return res
