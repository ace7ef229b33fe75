"""``python -m workbench.runs.finish RUN STAGE``: started detached by a notebook-door kernel on exit.

Papermill writes the executed notebook after its kernel has gone, so the kernel cannot render it
itself: this process waits for papermill (``--wait-pid``), then renders ``notebooks/<STAGE>.ipynb``
like the pipeline does, settles the stage status from the notebook's own error outputs, and writes
the run's index. For JupyterLab, ``--copy-from`` brings the notebook as last saved into the run first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Optional, Sequence

from workbench.errors import WorkbenchError
from workbench.runs.store import Run


def wait_for(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        time.sleep(0.2)


def finish(run: Run, stage: str, copy_from: Optional[Path] = None) -> None:
    import nbformat

    from workbench.runs.index_page import write_index
    from workbench.runs.pipeline import _render

    nb_path = run.path / "notebooks" / f"{stage}.ipynb"
    if copy_from is not None and copy_from.is_file():
        shutil.copy2(copy_from, nb_path)
    man = run.manifest()
    entry = man.get("stages", {}).get(stage)
    if entry is None:
        return
    if nb_path.is_file():
        nb = nbformat.read(str(nb_path), as_version=4)
        errors = [
            o
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.get("outputs", [])
            if o.get("output_type") == "error"
        ]
        entry["notebook"] = str(nb_path.relative_to(run.path))
        if errors and man.get("started_by") != "interactive" and entry.get("status") == "succeeded":
            entry["status"] = man["status"] = "failed"
            man["failed_stage"] = stage
        entry["html"] = _render(nb_path, run)
    run.write_json("manifest.json", man)
    write_index(run)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workbench.runs.finish")
    ap.add_argument("run")
    ap.add_argument("stage")
    ap.add_argument("--wait-pid", type=int)
    ap.add_argument("--copy-from", type=Path)
    ap.add_argument("--timeout", type=float, default=6 * 3600)
    args = ap.parse_args(argv)
    if args.wait_pid:
        wait_for(args.wait_pid, args.timeout)
    try:
        finish(Run(Path(args.run)), args.stage, args.copy_from)
    except (WorkbenchError, OSError, ValueError):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
