"""Small helpers notebooks share: headless detection and display of tables."""
from __future__ import annotations

import os


def headless() -> bool:
    """True when the pipeline (papermill) runs the notebook, so interactive servers are skipped."""
    return os.environ.get("WORKBENCH_HEADLESS") == "1"
