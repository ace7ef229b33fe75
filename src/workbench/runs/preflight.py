"""Everything knowable about a run's inputs, checked before its run directory exists.

The data side lives in `workbench.data.preflight` (the data package knows nothing of models or
hardware); this module adds the files that other domains own and that parameters name: the
checkpoint of ``mode: load`` (readable with ``weights_only=True``, finite weights, its subject split)
and ``hef_path`` (a file that starts with the HEF magic). The pipeline calls `check_inputs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

from workbench.data.preflight import Preflight, preflight

if TYPE_CHECKING:
    from workbench.config import Params


def check_inputs(
    params: "Params",
    stages: Iterable[str] = ("01", "02", "03", "04", "05", "06", "07", "08"),
    parent_windows: Optional[Path] = None,
    parent_params: Optional[dict] = None,
) -> Preflight:
    """Check HEF, checkpoint and data for `stages`; return the resolved parameters and notes to print.

    Raises the domain error of the input at fault (HefImportError, CheckpointError, DataError), each a
    WorkbenchError whose message names the parameter and the fix. `parent_params`: the parent run's
    parameters when earlier stages are reused (their data-resolved values, e.g. the sample rate, carry over).
    """
    stages = [str(s) for s in stages]
    notes: list[str] = []
    if params.hef_path:
        notes += _check_hef(params.hef_path)
    split_subjects = None
    if params.mode == "load" and "01" in stages and params.checkpoint_path:
        split_subjects = _checkpoint_split(params.checkpoint_path)
    if "01" not in stages and parent_params and params.sample_rate_hz is None:
        # stage 01 is reused: the windows, and so their rate, are the parent's
        params = params.model_copy(update={"sample_rate_hz": parent_params.get("sample_rate_hz")})
    checked = preflight(params, stages, parent_windows=parent_windows, split_subjects=split_subjects)
    checked.notes[:0] = notes
    return checked


def _check_hef(hef_path: str) -> list[str]:
    """A HEF the user named must exist and start with the HEF magic; say when nothing here can run it."""
    from workbench.hailo.hef_import import check_hef_file

    check_hef_file(Path(hef_path).expanduser())
    try:
        import hailo_platform  # noqa: F401
    except ImportError:
        return [
            f"hef_path {hef_path}: HailoRT (hailo_platform) is not installed here, so backend "
            f"hailo8-device cannot run it; stage 07 lists it as unavailable"
        ]
    return []


def _checkpoint_split(checkpoint_path: str) -> Optional[dict[str, list[int]]]:
    """The subject split a checkpoint was trained with; loading it also checks format and finite weights."""
    from workbench.model.checkpoint import load_checkpoint

    _, meta = load_checkpoint(checkpoint_path)
    return (meta.get("provenance") or {}).get("split_subjects")
