"""How a stage shows its progress in the terminal that started the run.

A terminal gets papermill's live per-cell bar. Output that is not a terminal (``make run > run.log``, CI,
a sweep's log file) gets the same bar written as whole lines, at most one every ``LINE_INTERVAL_S``
seconds, so a log shows that a long stage is alive without filling with carriage-return fragments.
"""

from __future__ import annotations

from typing import Any, Literal, TextIO, Union

ProgressMode = Literal["bar", "lines", "off"]
LINE_INTERVAL_S = 5.0


def progress_mode(no_progress: bool, stream: TextIO) -> ProgressMode:
    """``off`` when asked, a live bar on a terminal, whole lines anywhere else."""
    if no_progress:
        return "off"
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


class LineWriter:
    """A file for tqdm that turns each redraw into one line and drops repeats: tqdm redraws a bar in place
    with ``\\r``, which in a log file is one ever-growing line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._last = ""

    def write(self, text: str) -> int:
        for part in text.replace("\r", "\n").split("\n"):
            line = part.strip()
            if line and line != self._last:
                self.stream.write(line + "\n")
                self._last = line
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def papermill_progress(mode: Union[ProgressMode, bool], label: str, stream: TextIO) -> Union[bool, dict[str, Any]]:
    """The ``progress_bar`` argument for ``papermill.execute_notebook``: ``False`` or tqdm keywords.

    ``disable=False`` is explicit because headless kernels' ``TQDM_DISABLE`` is also set in this process
    while a stage runs (tqdm reads it as its default)."""
    if mode is True:
        mode = "bar"
    if mode is False or mode == "off":
        return False
    if mode == "bar":
        return {"desc": label, "disable": False, "file": stream}
    return {
        "desc": label,
        "disable": False,
        "file": LineWriter(stream),
        "mininterval": LINE_INTERVAL_S,
        "ascii": True,
        "ncols": 80,
    }
