"""Which Dataflow Compiler builds HEFs for which HailoRT (Hailo-8), in one place.

Source: hailo_model_zoo ``docs/CHANGELOG.rst`` (REFERENCE.md §2). The README's table, the bundle's
README.txt, notebook 06 and ``workbench doctor`` all read this list; a test keeps the README in step.
"""

from __future__ import annotations

import re
from typing import Optional

# (DFC version, HailoRT version) as the model zoo lists them; "x" = any patch release.
VERSION_PAIRS: list[tuple[str, str]] = [("3.30", "4.20"), ("3.31", "4.21"), ("3.32", "4.22"), ("3.33.x", "4.23")]


def major_minor(version: Optional[str]) -> Optional[str]:
    """'4.20.0' -> '4.20', 'HailoRT-CLI version 4.21.0' -> '4.21', '3.33.x' -> '3.33'; None if none."""
    if not version:
        return None
    m = re.search(r"(\d+)\.(\d+)", str(version))
    return f"{m.group(1)}.{m.group(2)}" if m else None


def hailort_for_dfc(dfc_version: Optional[str]) -> Optional[str]:
    """The HailoRT major.minor a HEF from this DFC pairs with, or None when the table has no row."""
    mm = major_minor(dfc_version)
    return next((major_minor(rt) for dfc, rt in VERSION_PAIRS if major_minor(dfc) == mm), None)


def dfc_for_hailort(hailort_version: Optional[str]) -> Optional[str]:
    """The DFC major.minor that builds HEFs for this HailoRT, or None when the table has no row."""
    mm = major_minor(hailort_version)
    return next((major_minor(dfc) for dfc, rt in VERSION_PAIRS if major_minor(rt) == mm), None)


def pairing_verdict(dfc_version: Optional[str], hailort_version: Optional[str]) -> tuple[Optional[bool], str]:
    """(True/False, why) when both versions are known and the table has a row; (None, why) otherwise."""
    if not dfc_version or not hailort_version:
        missing = "DFC version of the HEF" if not dfc_version else "HailoRT version here"
        return None, f"unknown: the {missing} is not known"
    want = hailort_for_dfc(dfc_version)
    if want is None:
        return None, f"DFC {dfc_version} is not in the table {pairs_text()}"
    have = major_minor(hailort_version)
    if have == want:
        return True, f"DFC {dfc_version} pairs with HailoRT {want}: HailoRT here is {hailort_version}"
    return False, (
        f"DFC {dfc_version} builds HEFs for HailoRT {want}, but HailoRT here is {hailort_version}; "
        f"recompile with DFC {dfc_for_hailort(hailort_version) or '(no listed pair)'} or install "
        f"HailoRT {want}"
    )


def pairs_text() -> str:
    return ", ".join(f"DFC {d} <-> HailoRT {r}" for d, r in VERSION_PAIRS)
