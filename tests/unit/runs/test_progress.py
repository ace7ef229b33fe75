"""Terminal progress of a stage: a live bar on a TTY, whole lines in a log, nothing when asked."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

from tqdm import tqdm

from workbench.runs.progress import LineWriter, papermill_progress, progress_mode


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_mode_follows_the_stream_and_the_flag():
    assert progress_mode(False, _Tty()) == "bar"
    assert progress_mode(False, io.StringIO()) == "lines"
    assert progress_mode(True, _Tty()) == "off"
    assert papermill_progress("off", "x", io.StringIO()) is False
    assert papermill_progress(False, "x", io.StringIO()) is False
    assert papermill_progress(True, "x", io.StringIO())["disable"] is False


def test_line_writer_makes_one_line_per_redraw_and_drops_repeats():
    out = io.StringIO()
    w = LineWriter(out)
    w.write("\r[01] a:  10%")
    w.write("\r[01] a:  10%")
    w.write("\r[01] a:  50%\n")
    w.write("")
    assert out.getvalue() == "[01] a:  10%\n[01] a:  50%\n"
    assert "\r" not in out.getvalue()


def test_log_lines_are_rate_limited():
    """Papermill builds a tqdm from these keywords; in a log it prints a first and a last line and at most
    one more per interval."""
    out = io.StringIO()
    kw = papermill_progress("lines", "[05] 05_calibrate_int8", out)
    bar = tqdm(total=200, unit="cell", **kw)
    t0 = time.monotonic()
    for _ in range(200):
        bar.update(1)
    bar.close()
    elapsed = time.monotonic() - t0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[05] 05_calibrate_int8") and "0/200" in lines[0]
    assert "200/200" in lines[-1]
    assert len(lines) <= 2 + int(elapsed / kw["mininterval"]) + 1
    assert all("\r" not in ln and "\x1b" not in ln for ln in lines)


def test_the_kernels_tqdm_disable_does_not_silence_the_terminal():
    """The pipeline sets TQDM_DISABLE for its kernels in its own environment too (tqdm reads it once, at
    import): the terminal's bar must still print."""
    code = (
        "import io, sys\nfrom tqdm import tqdm\nfrom workbench.runs.progress import papermill_progress\n"
        "out = io.StringIO()\nbar = tqdm(total=3, **papermill_progress('lines', 'stage', out))\n"
        "bar.update(3); bar.close()\nsys.stdout.write(out.getvalue())\n"
        "print('default-disabled', tqdm(total=1).disable)"
    )
    env = {**os.environ, "TQDM_DISABLE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "default-disabled True" in out  # the environment does disable tqdm's default ...
    assert "stage: 100%" in out and "3/3" in out  # ... but not the stage's progress
