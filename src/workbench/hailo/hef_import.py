"""Bring a HEF compiled on another machine into a run (``python -m workbench hailo import-hef``).

A HEF starts with a 32-bit big-endian magic 0x01484546 (bytes ``01 48 45 46``): HailoRT checks
``HEADER_MAGIC == htonl(header.magic)`` in ``Hef::Impl::validate_hef_header`` (hailort, hef.cpp).
The check here reads those four bytes; it does not validate the rest of the file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Union

from workbench.errors import HefImportError

HEF_MAGIC = bytes.fromhex("01484546")
PROVENANCE_FILE = "hef_provenance.json"


def sha256_of(path: Union[str, Path]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_hef_file(path: Union[str, Path]) -> None:
    """Raise HefImportError unless ``path`` is a non-empty file that starts with the HEF magic."""
    p = Path(path)
    if not p.is_file():
        raise HefImportError(f"{p} is not a file; pass the path of a .hef built by the Dataflow Compiler")
    size = p.stat().st_size
    if size == 0:
        raise HefImportError(f"{p} is empty (0 bytes): the compile did not finish; rerun compile.sh")
    with open(p, "rb") as f:
        head = f.read(4)
    if head != HEF_MAGIC:
        raise HefImportError(
            f"{p} does not start with the HEF magic 01 48 45 46 (found {head.hex(' ')}): "
            f"not a HEF; pass the model.hef that `hailo compiler` wrote"
        )


def import_hef(hef_path: Union[str, Path], dest_dir: Path, run_id: str) -> Path:
    """Copy a HEF into a run's stage-06 folder (``dest_dir``) as model.hef and record where it came from."""
    src = Path(hef_path).expanduser()
    check_hef_file(src)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / "model.hef"
    if dest.exists():
        raise HefImportError(
            f"run {run_id} already has {dest}; a run's HEF is never overwritten. "
            f"Start a new run from this one (python -m workbench run --parent {run_id} "
            f"--from 06 -p hef_path {src}) or import into another run"
        )
    tmp = dest.with_suffix(".hef.part")
    shutil.copyfile(src, tmp)
    tmp.replace(dest)
    provenance = {
        "source_path": str(src.resolve()),
        "sha256": sha256_of(dest),
        "size_bytes": dest.stat().st_size,
        "imported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "magic_checked": HEF_MAGIC.hex(),
        "built_by": "external (imported)",
    }
    (dest_dir / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2))
    return dest


def hef_provenance(hef_path: Union[str, Path]) -> dict[str, Any]:
    """What is known about a HEF: size, sha256, modification time, and a provenance record when
    the HEF was imported (hef_provenance.json next to it)."""
    p = Path(hef_path).expanduser()
    check_hef_file(p)
    info: dict[str, Any] = {
        "path": str(p.resolve()),
        "size_bytes": p.stat().st_size,
        "sha256": sha256_of(p),
        "modified": _dt.datetime.fromtimestamp(p.stat().st_mtime).isoformat(timespec="seconds"),
    }
    rec = p.parent / PROVENANCE_FILE
    if rec.is_file():
        info["imported"] = json.loads(rec.read_text())
    return info
