"""A user's own windows as one ``.npz``: X (N, C, S, T), y, subject, optional label_names, sample_rate_hz."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from .windowset import DataError, WindowSet

NPZ_HELP = ("an .npz with X (N, C, S, T) float, y (N,) int in 0..K-1, subject (N,) int, optional "
            "label_names (K,) str, channel_names (C,) str, site_names (S,) str and sample_rate_hz (scalar)")


def load_npz(path: str | Path, sample_rate_hz: Optional[float] = None) -> WindowSet:
    """Read and validate a generic array file.

    `sample_rate_hz` is used when the file has none; when both exist they must agree (no silent choice).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"array file not found: {path}; expected {NPZ_HELP}")
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except ValueError as exc:
        raise DataError(f"{path}: cannot read without pickles ({exc}); save plain numeric and string "
                        f"arrays (np.savez with dtype=str for names)") from exc
    except OSError as exc:
        raise DataError(f"{path} is not an .npz file ({exc}); expected {NPZ_HELP}") from exc
    missing = [k for k in ("X", "y", "subject") if k not in d]
    if missing:
        raise DataError(f"{path}: missing array(s) {missing} (found {sorted(d)}); expected {NPZ_HELP}")
    X, y, subject = d["X"], d["y"], d["subject"]
    if X.ndim == 3:
        raise DataError(f"{path}: X has shape {X.shape} (3-D); the layout is (N, C, S, T) -- add a site "
                        f"axis, e.g. X[:, :, None, :] for one sensor site")
    if X.ndim != 4:
        raise DataError(f"{path}: X must be 4-D (N, C, S, T), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.floating):
        raise DataError(f"{path}: X must be float, got dtype {X.dtype}")
    n = X.shape[0]
    if n == 0:
        raise DataError(f"{path}: X holds no windows")
    for name, arr in (("y", y), ("subject", subject)):
        if arr.shape != (n,):
            raise DataError(f"{path}: {name} must have shape ({n},) to match X {X.shape}; got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"{path}: {name} must be integers, got dtype {arr.dtype}")
    nan = np.argwhere(~np.isfinite(X))
    if len(nan):
        w = nan[0]
        raise DataError(f"{path}: X holds {len(nan)} NaN/inf value(s), first at window {w[0]}, channel "
                        f"{w[1]}, site {w[2]}, sample {w[3]}; drop or interpolate them")
    if y.min() < 0:
        raise DataError(f"{path}: labels must be 0..K-1; found {int(y.min())} (window "
                        f"{int(np.argmin(y))})")
    if "label_names" in d:
        label_names = [str(v) for v in d["label_names"].tolist()]
        if y.max() >= len(label_names):
            raise DataError(f"{path}: label {int(y.max())} at window {int(np.argmax(y))} has no name: "
                            f"label_names has {len(label_names)} entries (labels must be 0..{len(label_names) - 1})")
    else:
        label_names = [f"class_{i}" for i in range(int(y.max()) + 1)]
    c, s = X.shape[1], X.shape[2]
    channel_names = _names(d, "channel_names", c, "ch", path)
    site_names = _names(d, "site_names", s, "site", path)
    file_rate = float(d["sample_rate_hz"]) if "sample_rate_hz" in d else None
    if file_rate is not None and (not np.isfinite(file_rate) or file_rate <= 0):
        raise DataError(f"{path}: sample_rate_hz must be a positive number, got {file_rate}")
    if file_rate is not None and sample_rate_hz is not None and abs(file_rate - sample_rate_hz) > 1e-6:
        raise DataError(f"{path}: the file says sample_rate_hz={file_rate:g} but the parameters say "
                        f"{sample_rate_hz:g}; set sample_rate_hz: {file_rate:g}")
    rate = file_rate if file_rate is not None else sample_rate_hz
    if rate is None:
        raise DataError(f"{path}: no sample_rate_hz in the file; store it there or pass sample_rate_hz")
    return WindowSet(X=X.astype(np.float32), y=y.astype(np.int64), subject=subject.astype(np.int64),
                     label_names=label_names, channel_names=channel_names, site_names=site_names,
                     sample_rate_hz=rate, source="npz",
                     provenance=_provenance(d, path, file_rate is not None))


def _provenance(d: dict, path: Path, rate_in_file: bool) -> dict:
    """A file written by WindowSet.save carries its own provenance; keep it, so synthetic stays labelled."""
    prov = {"kind": "real", "dataset": "user array file", "path": str(path.resolve()),
            "sample_rate_from": "file" if rate_in_file else "parameters"}
    if "provenance" in d:
        try:
            origin = json.loads(str(d["provenance"]))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: 'provenance' is not JSON ({exc})") from exc
        if isinstance(origin, dict):
            prov["kind"] = str(origin.get("kind", "real"))
            prov["origin"] = origin
    return prov


def _names(d: dict, key: str, count: int, stem: str, path: Path) -> list[str]:
    if key not in d:
        return [f"{stem}{i}" for i in range(count)]
    names = [str(v) for v in np.atleast_1d(d[key]).tolist()]
    if len(names) != count:
        raise DataError(f"{path}: {key} has {len(names)} entries for {count} in X")
    return names
