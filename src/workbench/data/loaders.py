"""`load_dataset(params)`: the one place that maps `params.dataset` to a loader."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from workbench.data.arrays import load_npz
from workbench.data.hapt import load_hapt
from workbench.data.synthetic import SYNTHETIC_RATE_HZ, make_synthetic
from workbench.data.uci_har import load_uci_har
from workbench.data.windowset import DataError, WindowSet

if TYPE_CHECKING:
    from workbench.config import Params


def load_dataset(params: "Params") -> WindowSet:
    """The WindowSet named by params.dataset, checked against params.window and params.sample_rate_hz."""
    kind = params.dataset
    if kind == "synthetic":
        return make_synthetic(
            n_subjects=params.synthetic_subjects,
            windows_per_class=params.synthetic_windows_per_class,
            channels=params.synthetic_channels,
            sites=params.synthetic_sites,
            window=params.window,
            sample_rate_hz=params.sample_rate_hz or SYNTHETIC_RATE_HZ,
            seed=params.seed,
        )
    if not params.data_dir:
        raise DataError(f"dataset '{kind}' needs data_dir (pass -p data_dir PATH)")
    if kind == "hapt":
        from workbench.data.hapt import SAMPLE_RATE_HZ

        _same_rate(params.sample_rate_hz, SAMPLE_RATE_HZ, "UCI HAPT")
        label_set = params.label_set if params.label_set else [1, 2, 3, 4, 5, 6]
        return load_hapt(params.data_dir, window=params.window, hop=params.hop, label_set=label_set)
    if kind == "uci_har":
        from workbench.data.uci_har import SAMPLE_RATE_HZ, WINDOW

        _same_rate(params.sample_rate_hz, SAMPLE_RATE_HZ, "UCI HAR")
        if params.window != WINDOW:
            raise DataError(
                f"UCI HAR windows are fixed at {WINDOW} samples; set window: {WINDOW} (got window={params.window})"
            )
        return load_uci_har(params.data_dir)
    if kind == "npz":
        ws = load_npz(params.data_dir, sample_rate_hz=params.sample_rate_hz)
        if ws.window != params.window:
            raise DataError(
                f"{params.data_dir} holds windows of {ws.window} samples but window={params.window}; "
                f"set window: {ws.window} (the maximum this file allows)"
            )
        return ws
    raise DataError(f"unknown dataset {kind!r}; choose synthetic, hapt, uci_har or npz")


def _same_rate(asked: Optional[float], actual: float, name: str) -> None:
    """A dataset with a documented rate: None takes it, another value is an error naming both."""
    if asked is not None and abs(float(asked) - actual) > 1e-6:
        raise DataError(
            f"{name} is recorded at {actual:g} Hz but sample_rate_hz={asked:g}; set "
            f"sample_rate_hz: {actual:g} (resampling is not supported)"
        )
