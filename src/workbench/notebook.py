"""What every stage notebook needs besides the domain calls: validated parameters from the
notebook's namespace, a figure shown (and saved) in one call, and the table of a stage's artifacts.

Kept small on purpose: notebooks narrate and call; logic lives in the domain packages.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:
    import matplotlib.figure
    import pandas as pd

    from workbench.config import Params


def headless() -> bool:
    """True when nobody watches the notebook (the pipeline, or papermill run by hand), so interactive
    servers and live progress bars are skipped."""
    if os.environ.get("WORKBENCH_HEADLESS") == "1":
        return True
    from workbench.runs.doors import current_door
    return current_door() != "interactive"


def stage_params(namespace: Mapping[str, Any]) -> "Params":
    """The notebook's parameters (the names its ``parameters`` cell declared, as papermill may have
    overridden them), validated against the same schema as ``workbench run``."""
    from workbench.config import Params, validate_params
    from workbench.runs.doors import remember_notebook_params
    params = validate_params({k: v for k, v in namespace.items() if not k.startswith("_")},
                             origin="notebook parameters", only_known=True)
    # open_stage records these in the manifest of the run (or child run) the notebook writes into
    dumped = params.model_dump()
    remember_notebook_params({k: dumped[k] for k in namespace if k in Params.model_fields})
    return params


def show(fig: "matplotlib.figure.Figure", path: Optional[Path] = None, dpi: int = 100) -> Optional[Path]:
    """Display a figure (inline in Jupyter and in the rendered page), save it when ``path`` is given,
    then close it so it is not drawn twice."""
    import matplotlib.pyplot as plt
    from IPython.display import display
    if path is not None:
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    display(fig)
    plt.close(fig)
    return path


def artifact_table(folder: Path) -> "pd.DataFrame":
    """Files a stage wrote, with their sizes, for the last cell of a notebook."""
    import pandas as pd
    rows = [(p.name, f"{p.stat().st_size / 1024:.1f} KiB") for p in sorted(Path(folder).iterdir()) if p.is_file()]
    return pd.DataFrame(rows, columns=["artifact", "size"])
