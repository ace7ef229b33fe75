"""Parse a Dataflow Compiler log for the messages that change what a HEF means.

The DFC reports some decisions only as log lines (REFERENCE.md §2, §7): it lowers the optimization
level when no GPU is present and when the calibration set has fewer than the recommended 1024 entries
("... because there's less data than the recommended amount (1024), and there's no available GPU"),
and the explanation must name each reason with its own fix; it uses only as many calibration entries
as ``calibset_size`` allows, and at compression levels > 0 it may move weights to 4 bit. Each is easy
to miss in a long log, so the
notebook lifts them into warnings. Patterns match the phrases, not the exact line prefixes
(``[info]``/``[warning]`` and timestamps differ between DFC versions).
"""

from __future__ import annotations

import re
from typing import Any, Optional

_OPT_REDUCED = re.compile(r"Reducing optimization level to (\d+)(.*)", re.IGNORECASE)
_CALIB_ENTRIES = re.compile(r"Using dataset with (\d+) entries for calibration", re.IGNORECASE)
_FOURBIT = re.compile(r"(?<![0-9])4[- ]?bit|a8_w4", re.IGNORECASE)
_FOURBIT_RATIO = re.compile(r"Ratio of weights in 4[- ]?bit is ([0-9.]+)", re.IGNORECASE)
# e.g. "net/output_layer1 SNR: 23.41 dB" (tabs or spaces between the parts)
_SNR = re.compile(r"([A-Za-z0-9_./-]+)\s+SNR:?\s*(-?[0-9.]+|inf)\s*dB", re.IGNORECASE)
_LEVEL = re.compile(r"^\s*(?:\S+\s+)?\[(info|warning|error|critical)\]", re.IGNORECASE)
_NO_GPU = re.compile(r"no (?:available )?GPU|GPU (?:is )?not (?:available|found)", re.IGNORECASE)
_LESS_DATA = re.compile(r"less data than the recommended amount\s*\((\d+)\)", re.IGNORECASE)


def parse_dfc_log(text: str, *, calibset_size: Optional[int] = None) -> dict[str, Any]:
    """Facts from a DFC log. Missing facts are None or empty, never guessed.

    Returns keys: ``optimization_level_reduced_to`` (int or None), ``optimization_reduced_reason``,
    ``no_gpu`` (bool), ``calibration_entries`` (int or None), ``four_bit_lines`` (list[str]),
    ``four_bit_ratio`` (float or None), ``snr_db`` ({layer: dB}), ``warning_lines``, ``error_lines``
    and ``warnings``: human-readable sentences for the notebook (with ``calibset_size`` the expected
    entry count, a mismatch becomes a warning too).
    """
    reduced: Optional[int] = None
    reason = ""
    entries: Optional[int] = None
    four_bit: list[str] = []
    ratio: Optional[float] = None
    snr: dict[str, float] = {}
    warn_lines: list[str] = []
    err_lines: list[str] = []
    no_gpu = False
    recommended: Optional[int] = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _LEVEL.match(line)
        if m and m.group(1).lower() == "warning":
            warn_lines.append(line)
        elif m and m.group(1).lower() in ("error", "critical"):
            err_lines.append(line)
        if _NO_GPU.search(line):
            no_gpu = True
        m = _OPT_REDUCED.search(line)
        if m:
            reduced = int(m.group(1))
            reason = m.group(2).strip(" .:")
            less = _LESS_DATA.search(line)
            if less:
                recommended = int(less.group(1))
        m = _CALIB_ENTRIES.search(line)
        if m:
            entries = int(m.group(1))
        m = _FOURBIT_RATIO.search(line)
        if m:
            ratio = float(m.group(1))
        if _FOURBIT.search(line):
            four_bit.append(line)
        m = _SNR.search(line)
        if m:
            snr[m.group(1)] = float(m.group(2))

    warnings: list[str] = []
    too_few = recommended is not None
    gpu_reason = reduced is not None and bool(_NO_GPU.search(reason))
    if reduced is not None:
        warnings.append(_reduction_explained(reduced, reason, too_few, recommended, entries, gpu_reason))
    if entries is not None:
        if calibset_size is not None and entries != calibset_size:
            warnings.append(
                f"DFC used {entries} calibration entries, but the calibration set has "
                f"{calibset_size}: check calibset_size in model.alls."
            )
        elif calibset_size is None and entries == 64:
            warnings.append(
                "DFC used 64 calibration entries, its default: set calibset_size in "
                "model.alls to use the whole calibration set."
            )
    elif text.strip():
        warnings.append("the DFC log does not say how many calibration entries were used.")
    if ratio is not None and ratio > 0:
        warnings.append(
            f"DFC stored {ratio:.0%} of the weights in 4 bit (compression_level > 0); "
            f"expect lower accuracy than 8-bit weights."
        )
    elif four_bit and ratio is None:
        warnings.append(f"DFC mentions 4-bit weights ({len(four_bit)} line(s)); see dfc.log.")
    low = {k: v for k, v in snr.items() if v < 10.0}
    if low:
        warnings.append(
            "low output SNR (< 10 dB, Hailo's rule of thumb): " + ", ".join(f"{k} {v:.1f} dB" for k, v in low.items())
        )
    return {
        "optimization_level_reduced_to": reduced,
        "optimization_reduced_reason": reason or None,
        "reduced_for_too_few_entries": too_few,
        "recommended_calibration_entries": recommended,
        "reduced_for_no_gpu": gpu_reason,
        "no_gpu": no_gpu,
        "calibration_entries": entries,
        "four_bit_lines": four_bit,
        "four_bit_ratio": ratio,
        "snr_db": snr,
        "warning_lines": warn_lines,
        "error_lines": err_lines,
        "warnings": warnings,
    }


def _reduction_explained(
    level: int, reason: str, too_few: bool, recommended: Optional[int], entries: Optional[int], no_gpu: bool
) -> str:
    """One sentence per reason the DFC gave, each with its own fix (both can apply at once)."""
    causes = []
    if too_few:
        used = f" (it used {entries})" if entries is not None else ""
        causes.append(
            f"the calibration set has fewer than the recommended {recommended} entries{used}: build a "
            f"larger one in stage 05 (quant_calib_size >= {recommended}; model.alls calibset_size "
            f"follows it)"
        )
    if no_gpu:
        causes.append("no GPU was available to the DFC: compile on a machine whose GPU the DFC sees")
    if not causes:
        causes.append(f"the log says: {reason}" if reason else "the log gives no reason")
    return (
        f"DFC lowered the optimization level to {level} because " + "; and ".join(causes) + ". The HEF is "
        "quantized without the higher-level optimization algorithms until every listed cause is fixed."
    )
