"""workbench.data: IMU windows from synthetic, UCI HAPT raw, UCI HAR and user .npz sources.

Every loader returns a `WindowSet` (X as (N, C, S, T) in physical units); `load_dataset(params)`
picks the loader from `params.dataset`.
"""
from __future__ import annotations

from .arrays import load_npz
from .check import check_dataset
from .hapt import load_hapt
from .loaders import load_dataset
from .normalize import Normalizer
from .splits import Splits, split_by_subject
from .synthetic import make_synthetic
from .uci_har import load_uci_har
from .windowset import DataError, WindowSet

__all__ = ["DataError", "WindowSet", "Normalizer", "Splits", "split_by_subject", "make_synthetic",
           "load_hapt", "load_uci_har", "load_npz", "load_dataset", "check_dataset"]
