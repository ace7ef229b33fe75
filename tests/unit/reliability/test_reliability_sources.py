"""Stage 08's sources: logits of every backend must cover the same windows before they are compared
(notebook hygiene is tested once, in tests/notebooks/test_notebooks.py)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.reliability.report import SplitLogits
from workbench.reliability.sources import check_consistent


def _s(backend, split, y, subj):
    return SplitLogits(backend, split, np.zeros((len(y), 3)), np.asarray(y), np.asarray(subj))


def test_check_consistent():
    ok = {b: {s: _s(b, s, [0, 1], [1, 1]) for s in ("val", "conformal", "test")} for b in ("a", "b")}
    check_consistent(ok)
    ok["b"]["test"] = _s("b", "test", [0, 2], [1, 1])
    with pytest.raises(RuntimeError, match="test windows differ between a"):
        check_consistent(ok)
