"""What every stage notebook needs besides the domain calls: validated parameters from the
notebook's namespace, a figure shown (and saved) in one call, the table of a stage's artifacts, and
safe display of text that comes from data.

Names in a report come from data (label, channel and site names of a user's .npz, ONNX node names,
paths): they are text, never markup. pandas' Styler does not escape cell values or index labels by
default and Markdown passes raw HTML through, so notebooks render such text with `escape_markdown`
and tables with `styled`.

Kept small on purpose: notebooks narrate and call; logic lives in the domain packages.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:
    import matplotlib.figure
    import pandas as pd

    from workbench.config import Params


# Markdown punctuation that could start emphasis, code, links, headings, tables or math;
# < > & " ' are left to html.escape (escaping them twice would show the entities).
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~$-])")


def _names_are_not_tex() -> None:
    """Label, channel and site names are data: a name like ``$\\frac$`` must be drawn as written, not
    parsed as TeX (matplotlib raises on malformed math and the stage would crash). No workbench figure
    uses math text, so it is switched off for every figure made after a notebook imports this module."""
    import matplotlib

    matplotlib.rcParams["text.parse_math"] = False


_names_are_not_tex()


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

    params = validate_params(
        {k: v for k, v in namespace.items() if not k.startswith("_")}, origin="notebook parameters", only_known=True
    )
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


def escape_markdown(value: Any) -> str:
    """``value`` as literal text inside a Markdown string: Markdown punctuation is backslash-escaped and
    HTML special characters become entities, so a name like ``<img onerror=...>`` or ``*x*`` shows as
    written. Lists and tuples are joined with ", "."""
    if isinstance(value, (list, tuple)):
        return ", ".join(escape_markdown(v) for v in value)
    return html.escape(_MD_SPECIAL.sub(r"\\\1", str(value)), quote=True)


def styled(frame: "pd.DataFrame", formatter: Optional[Any] = None, **format_kwargs: Any) -> Any:
    """``frame.style`` with HTML escaping of every cell, index label, column label and index name.

    Pass what you would give ``Styler.format`` here (a later ``.format`` call would replace the
    escaping); chain ``.map`` / ``.apply`` for colours as usual.
    """
    sty = frame.style.format(formatter, escape="html", **format_kwargs)
    sty = sty.format_index(escape="html", axis=0).format_index(escape="html", axis=1)
    if hasattr(sty, "format_index_names"):  # pandas >= 3
        sty = sty.format_index_names(escape="html", axis=0).format_index_names(escape="html", axis=1)
    return sty
