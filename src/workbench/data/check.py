"""`check_dataset(path)`: validate a dataset before a run and summarise it (`workbench data check PATH`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .splits import split_by_subject
from .windowset import DataError, WindowSet


def detect_layout(path: str | Path) -> str:
    """'hapt', 'uci_har' or 'npz'; DataError naming the layouts it looked for."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p} does not exist")
    if p.is_file():
        if p.suffix == ".npz":
            return "npz"
        raise DataError(
            f"{p} is a file but not an .npz; expected a .npz array file, a HAPT folder (with "
            f"RawData/) or a UCI HAR folder (with train/Inertial Signals/)"
        )
    if (p / "RawData").is_dir() or ((p / "labels.txt").is_file() and any(p.glob("acc_exp*_user*.txt"))):
        return "hapt"
    for cand in (p, p / "UCI HAR Dataset"):
        if (cand / "train" / "Inertial Signals").is_dir() or (cand / "test" / "Inertial Signals").is_dir():
            return "uci_har"
    raise DataError(
        f"{p}: unknown layout; expected a HAPT folder (RawData/ with acc_expXX_userYY.txt, "
        f"gyro_expXX_userYY.txt and labels.txt), a UCI HAR folder (train/Inertial Signals/) or "
        f"a .npz file"
    )


def check_dataset(path: str | Path, window: int = 100, hop: int = 50) -> str:
    """Validate layout, file pairs, row counts, label ranges, sample rate and NaNs; return a summary.

    `window` / `hop` are used for the HAPT window counts. Raises DataError saying what is wrong and where.
    """
    layout = detect_layout(path)
    if layout == "hapt":
        return _check_hapt(Path(path), window, hop)
    if layout == "uci_har":
        from .uci_har import load_uci_har

        ws = load_uci_har(path)
        head = [
            f"UCI HAR windowed layout: {ws.provenance['path']}",
            f"  splits: {', '.join(ws.provenance['splits'])}; official test subjects: "
            f"{ws.provenance['official_test_subjects']}",
        ]
        check_subjects_for_split(ws.subjects, str(path))
        return "\n".join(head + _summary(ws))
    from .arrays import load_npz

    has_rate = _has_rate(path)
    # without a stored rate, validate with a placeholder and say so instead of printing a made-up rate
    ws = load_npz(path, sample_rate_hz=None if has_rate else 1.0)
    check_subjects_for_split(ws.subjects, str(path))
    return "\n".join(
        [f"array file: {Path(path).resolve()}", f"  provenance kind: {ws.provenance['kind']}"]
        + _summary(ws, rate_known=has_rate)
    )


def _has_rate(path: str | Path) -> bool:
    from .arrays import npz_keys

    return "sample_rate_hz" in npz_keys(path)


def check_subjects_for_split(subjects: list[int], where: str) -> None:
    """DataError when the default subject-wise split (train / val / conformal / test) cannot be made."""
    from workbench.config import Params

    fractions = {k: Params.model_fields[k].default for k in ("val_fraction", "conformal_fraction", "test_fraction")}
    try:
        split_by_subject(np.asarray(subjects, dtype=np.int64), **fractions)
    except DataError as exc:
        raise DataError(
            f"{where}: {len(subjects)} subject(s) with labelled windows {subjects}; {exc}. "
            f"Runs split by subject (train, val, conformal, test), so each needs its own "
            f"people"
        ) from None


def _summary(ws: WindowSet, rate_known: bool = True) -> list[str]:
    n, c, s, t = ws.X.shape
    per_class = ws.class_counts()
    subj = ws.subjects
    if rate_known:
        dur_h = n * t / ws.sample_rate_hz / 3600.0
        timing = (
            f"at {ws.sample_rate_hz:g} Hz ({t / ws.sample_rate_hz:.2f} s); {dur_h:.2f} h of windows (overlap counted)"
        )
    else:
        timing = "-- WARNING: no sample_rate_hz in the file; runs will use the sample_rate_hz parameter"
    lines = [
        f"  windows: {n} of {t} samples {timing}",
        f"  channels ({c}): {', '.join(ws.channel_names)}; sites ({s}): {', '.join(ws.site_names)}",
        f"  subjects: {len(subj)} ({subj[0]}..{subj[-1]})",
        "  windows per class: " + ", ".join(f"{k}={v}" for k, v in per_class.items()),
    ]
    empty = [k for k, v in per_class.items() if v == 0]
    if empty:
        lines.append(f"  WARNING: classes without windows: {empty}")
    for i, ch in enumerate(ws.channel_names):
        x = ws.X[:, i]
        lines.append(f"  {ch:>8}: min {x.min():9.3f}  mean {x.mean():9.3f}  max {x.max():9.3f}")
    lines.append("  OK")
    return lines


def _check_hapt(path: Path, window: int, hop: int) -> str:
    from .hapt import SAMPLE_RATE_HZ, _check_segments, expected_window_count, read_xyz, segment_table

    raw, known, labels, pairs = segment_table(path)
    by_exp = {e: (u, a, g) for e, u, a, g in pairs}
    for row_i, exp in enumerate(labels[:, 0]):
        if int(exp) not in by_exp:
            raise DataError(f"{raw / 'labels.txt'}:{row_i + 1}: experiment {exp} has no acc/gyro files")
    total = 0
    for exp, (user, acc_f, gyro_f) in sorted(by_exp.items()):
        acc, gyro = read_xyz(acc_f), read_xyz(gyro_f)
        if len(acc) != len(gyro):
            raise DataError(f"{acc_f.name} has {len(acc)} rows but {gyro_f.name} has {len(gyro)}")
        _check_segments(raw, exp, user, labels[labels[:, 0] == exp], len(acc), labels)
        total += len(acc)
    acts = sorted(known)
    seg_counts = {a: int(np.sum(labels[:, 2] == a)) for a in acts}
    wins = expected_window_count(labels, window, hop, acts)
    labelled = int(np.sum(labels[:, 4] - labels[:, 3] + 1))
    users = sorted({u for _e, u, _a, _g in pairs})
    labelled_users = sorted({int(u) for u in labels[:, 1]})
    unlabelled = [u for u in users if u not in labelled_users]
    check_subjects_for_split(labelled_users, str(raw / "labels.txt"))
    subject_line = f"  subjects: {len(users)} with recordings ({users[0]}..{users[-1]})"
    if unlabelled:
        subject_line += (
            f"; WARNING: {len(unlabelled)} without any row in labels.txt (no windows): "
            f"{unlabelled}; {len(labelled_users)} labelled: {labelled_users}"
        )
    lines = [
        f"UCI HAPT raw layout: {raw}",
        f"  recordings: {len(pairs)} acc/gyro pairs, rows match in every pair; {len(labels)} label rows",
        subject_line,
        f"  sample rate: {SAMPLE_RATE_HZ:g} Hz (dataset README); {total} samples = "
        f"{total / SAMPLE_RATE_HZ / 3600:.2f} h, {labelled} labelled "
        f"({labelled / SAMPLE_RATE_HZ / 3600:.2f} h)",
        f"  segments / windows (window={window}, hop={hop}) per activity:",
    ]
    for a in acts:
        lines.append(f"    {a:>2} {known[a]:<20} segments {seg_counts[a]:4d}  windows {wins[a]:5d}")
    lines.append("  labels.txt read as 1-based inclusive start/end; all ends within their files")
    lines.append("  OK")
    return "\n".join(lines)
