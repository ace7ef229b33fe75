"""A user's own windows as one ``.npz``: X (N, C, S, T), y, subject, optional label_names, sample_rate_hz."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .windowset import DataError, WindowSet

NPZ_HELP = (
    "an .npz with X (N, C, S, T) float, y (N,) int in 0..K-1, subject (N,) int, optional "
    "label_names (K,) str, channel_names (C,) str, site_names (S,) str and sample_rate_hz (scalar)"
)


_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


def open_npz(path: str | Path, keys: Optional[Sequence[str]] = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (only ``keys`` when given), never unpickling anything.

    An ``.npz`` is a zip of ``.npy`` files; anything else (a text or CSV file renamed to .npz, a bare
    ``.npy``, a pickle) is a DataError that says what the file looks like, not a numpy traceback.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"array file not found: {path}; expected {NPZ_HELP}")
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
        raise DataError(
            f"{path} is not an .npz archive ({_describe_bytes(head)}); an .npz is written by "
            f"np.savez(path, X=..., y=..., subject=...); expected {NPZ_HELP}"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files) if keys is None else [k for k in keys if k in z.files]
            return {k: z[k] for k in names}
    except ValueError as exc:
        raise DataError(
            f"{path}: cannot read without pickles ({exc}); save plain numeric and string "
            f"arrays (np.savez with dtype=str for names)"
        ) from exc
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"{path} is a damaged .npz ({type(exc).__name__}: {exc}); write it again with np.savez"
        ) from exc


def npz_keys(path: str | Path) -> list[str]:
    """Array names in an ``.npz`` without reading the arrays (same checks as :func:`open_npz`)."""
    open_npz(path, keys=[])  # magic and readability
    with np.load(Path(path), allow_pickle=False) as z:
        return list(z.files)


def _describe_bytes(head: bytes) -> str:
    if not head:
        return "it is empty"
    if head.startswith(b"\x93NUMPY"):
        return "it is a single .npy array, not an archive: use np.savez to store X, y and subject together"
    if head[:1] == b"\x80":
        return "it looks like a pickle, which is never loaded"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"it starts with bytes {head[:8].hex(' ')}"
    first = text.splitlines()[0][:60] if text.strip() else ""
    return f"it looks like a text file starting {first!r}"


def check_layout(X_shape: Sequence[int], path: str | Path, names_given: bool = False) -> None:
    """DataError with the right transpose when X is not (N, C, S, T).

    3-D X needs a site axis; which fix is right depends on whether time is the middle or the last
    axis (windows are longer than the number of channels). 4-D X whose last (time) axis is not the
    longest looks channel- or site-last, unless channel_names and site_names confirm the layout.
    """
    shape = tuple(int(v) for v in X_shape)
    if len(shape) == 3:
        n, a, b = shape
        if a > b:
            raise DataError(
                f"{path}: X has shape {shape}, which looks like (N, T, C) = ({n} windows, {a} "
                f"samples, {b} channels); the layout is (N, C, S, T): use "
                f"X.transpose(0, 2, 1)[:, :, None, :] (one sensor site)"
            )
        raise DataError(
            f"{path}: X has shape {shape}, which looks like (N, C, T) = ({n} windows, {a} "
            f"channels, {b} samples); the layout is (N, C, S, T): add a site axis with "
            f"X[:, :, None, :] (one sensor site)"
        )
    if len(shape) != 4:
        raise DataError(f"{path}: X must be 4-D (N, C, S, T), got shape {shape}")
    _n, c, s, t = shape
    if names_given or t >= max(c, s):
        return
    if s > t and s >= c:
        raise DataError(
            f"{path}: X has shape {shape}: {s} sites of {t} samples each looks like (N, C, T, S) "
            f"(time before sites); the layout is (N, C, S, T): use X.transpose(0, 1, 3, 2). If "
            f"the shape is right, store channel_names and site_names to confirm it"
        )
    raise DataError(
        f"{path}: X has shape {shape}: {c} channels of {t} samples each looks like time on axis 1 "
        f"((N, T, C, S) or (N, T, S, C)); the layout is (N, C, S, T): move time last, e.g. "
        f"X.transpose(0, 2, 3, 1) for (N, T, C, S). If the shape is right, store channel_names "
        f"and site_names to confirm it"
    )


def load_npz(path: str | Path, sample_rate_hz: Optional[float] = None) -> WindowSet:
    """Read and validate a generic array file.

    `sample_rate_hz` is used when the file has none; when both exist they must agree (no silent choice);
    when neither has one it is an error (a made-up rate would scale every time axis in the report).
    """
    path = Path(path)
    d = open_npz(path)
    missing = [k for k in ("X", "y", "subject") if k not in d]
    if missing:
        raise DataError(f"{path}: missing array(s) {missing} (found {sorted(d)}); expected {NPZ_HELP}")
    X, y, subject = d["X"], d["y"], d["subject"]
    check_layout(X.shape, path, names_given="channel_names" in d and "site_names" in d)
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
        raise DataError(
            f"{path}: X holds {len(nan)} NaN/inf value(s), first at window {w[0]}, channel "
            f"{w[1]}, site {w[2]}, sample {w[3]}; drop or interpolate them"
        )
    if y.min() < 0:
        raise DataError(f"{path}: labels must be 0..K-1; found {int(y.min())} (window {int(np.argmin(y))})")
    if "label_names" in d:
        label_names = [str(v) for v in np.atleast_1d(d["label_names"]).tolist()]
        if y.max() >= len(label_names):
            raise DataError(
                f"{path}: label {int(y.max())} at window {int(np.argmax(y))} has no name: "
                f"label_names has {len(label_names)} entries (labels must be 0..{len(label_names) - 1})"
            )
    else:
        label_names = [f"class_{i}" for i in range(int(y.max()) + 1)]
    check_classes(y, label_names, path, names_given="label_names" in d)
    c, s = X.shape[1], X.shape[2]
    channel_names = _names(d, "channel_names", c, "ch", path)
    site_names = _names(d, "site_names", s, "site", path)
    file_rate = file_sample_rate(d, path)
    rate = resolve_rate(file_rate, sample_rate_hz, path)
    return WindowSet(
        X=X.astype(np.float32),
        y=y.astype(np.int64),
        subject=subject.astype(np.int64),
        label_names=label_names,
        channel_names=channel_names,
        site_names=site_names,
        sample_rate_hz=rate,
        source="npz",
        provenance=_provenance(d, path, file_rate is not None),
    )


def file_sample_rate(d: dict, path: str | Path) -> Optional[float]:
    """The ``sample_rate_hz`` an array file records (None when absent); DataError when it is not a
    positive finite scalar."""
    if "sample_rate_hz" not in d:
        return None
    raw = np.asarray(d["sample_rate_hz"])
    try:
        rate = float(raw.item()) if raw.size == 1 else float("nan")
    except (TypeError, ValueError):
        rate = float("nan")
    if not np.isfinite(rate) or rate <= 0:
        raise DataError(f"{path}: sample_rate_hz must be one positive number, got {raw.tolist()!r}")
    return rate


def resolve_rate(file_rate: Optional[float], asked: Optional[float], path: str | Path) -> float:
    """The file's rate unless the parameters set one; both set and different is an error naming both."""
    if file_rate is not None and asked is not None and abs(file_rate - asked) > 1e-6:
        raise DataError(
            f"{path} records sample_rate_hz={file_rate:g} but the parameters set "
            f"sample_rate_hz={asked:g}; remove sample_rate_hz from the parameters to use the "
            f"file's {file_rate:g} Hz (resampling is not supported)"
        )
    rate = file_rate if file_rate is not None else asked
    if rate is None:
        raise DataError(
            f"{path} records no sample_rate_hz and the parameters set none; store it in the file "
            f"(np.savez(..., sample_rate_hz=50.0)) or pass -p sample_rate_hz HZ"
        )
    return float(rate)


def check_classes(y: np.ndarray, label_names: Sequence[str], path: str | Path, names_given: bool) -> None:
    """Every class id 0..K-1 needs windows: an empty class would become an untrained model output.

    Labels 1..K without label_names are the usual cause (MATLAB-style ids); the message says how to
    remap them.
    """
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(label_names))
    empty = [int(k) for k in np.flatnonzero(counts == 0)]
    if not empty:
        return
    present = [int(k) for k in np.flatnonzero(counts)]
    if not names_given and empty == list(range(len(empty))):
        raise DataError(
            f"{path}: labels start at {present[0]} and there is no label_names array, so class ids "
            f"{empty} would be classes without a single window; store y - {present[0]} (labels "
            f"0..{len(present) - 1}) or add label_names naming every id from 0"
        )
    shown = ", ".join(f"{k} ({label_names[k]})" for k in empty[:10])
    raise DataError(
        f"{path}: class ids {shown}{' ...' if len(empty) > 10 else ''} have no windows; a model "
        f"would get outputs it never trains. Remap y to the classes present "
        f"(np.unique(y, return_inverse=True)) and drop their names from label_names"
    )


def _provenance(d: dict, path: Path, rate_in_file: bool) -> dict:
    """A file written by WindowSet.save carries its own provenance; keep it, so synthetic stays labelled."""
    prov = {
        "kind": "real",
        "dataset": "user array file",
        "path": str(path.resolve()),
        "sample_rate_from": "file" if rate_in_file else "parameters",
    }
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
