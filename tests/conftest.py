"""Shared fixtures: where the real HAPT recordings are (tests using them skip when absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HAPT_DIR = Path(os.environ.get(
    "WORKBENCH_HAPT_DIR", PROJECT_ROOT.parent / "shared" / "datasets" / "hapt-rawdata" / "HAPT Data Set"))


@pytest.fixture(scope="session")
def hapt_dir() -> Path:
    if not (HAPT_DIR / "RawData" / "labels.txt").exists():
        pytest.skip(f"UCI HAPT raw data not present at {HAPT_DIR}")
    return HAPT_DIR


@pytest.fixture(autouse=True)
def _single_thread_torch():
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    yield
