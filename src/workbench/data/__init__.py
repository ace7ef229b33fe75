"""workbench.data: IMU windows from synthetic, UCI HAPT raw, UCI HAR and user .npz sources.

Every loader returns a `WindowSet` (X as (N, C, S, T) in physical units); `load_dataset(params)`
picks the loader from `params.dataset`.
"""

from __future__ import annotations

from workbench import lazy_exports

# Loaded on first use (PEP 562): the Pi service imports data.normalize, which must not pull pandas (hapt)
# or the other loaders.
_WHERE = {
    "arrays": ("load_npz",),
    "check": ("check_dataset",),
    "hapt": ("load_hapt",),
    "loaders": ("load_dataset",),
    "normalize": ("Normalizer",),
    "splits": ("Splits", "split_by_subject"),
    "synthetic": ("make_synthetic",),
    "uci_har": ("load_uci_har",),
    "windowset": ("DataError", "WindowSet"),
}

__all__ = [name for names in _WHERE.values() for name in names]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
