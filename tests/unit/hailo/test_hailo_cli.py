"""hailortcli runners: command lines, parsing, the power retry, and absence (a stand-in script on PATH)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from workbench.hailo import cli_tools

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "hailo"


@pytest.fixture
def fake_cli(tmp_path, monkeypatch):
    """A `hailortcli` stand-in that logs its argv and prints the fixture text for the subcommand."""
    log = tmp_path / "argv.log"
    script = tmp_path / "bin" / "hailortcli"
    script.parent.mkdir()
    script.write_text(f"""#!/usr/bin/env bash
echo "$@" >> {log}
case "$1" in
  --version) echo "HailoRT-CLI version 0.0.0-standin";;
  run) if [[ " $* " == *" --measure-power "* ]]; then
         echo "[HailoRT] [error] power measurement not supported" >&2; exit 3
       fi
       cat {FIX / "hailortcli_run_nopower.txt"};;
  benchmark) cat {FIX / "hailortcli_benchmark.txt"};;
  *) exit 9;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    return log


def test_absent_here(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    ok, why = cli_tools.hailortcli_available()
    assert ok is False and "not on PATH" in why
    with pytest.raises(RuntimeError, match="not on PATH"):
        cli_tools.benchmark(tmp_path / "m.hef", 1)


def test_run_retries_without_power(fake_cli, tmp_path):
    res = cli_tools.run_measure_latency(tmp_path / "m.hef", seconds=2)
    calls = fake_cli.read_text().splitlines()
    runs = [c for c in calls if c.startswith("run ")]
    base = f"run {tmp_path / 'm.hef'} --measure-latency --measure-overall-latency -t 2 --batch-size 1"
    assert runs[0] == base + " --measure-power"
    assert runs[1] == base
    assert "power measurement not supported" in res["power_error"]
    assert res["fps"] == 960.0 and res["hw_latency_ms"] == 0.39 and res["power_avg_w"] is None
    assert res["backend"] == "hailo8-device" and "--measure-power" not in res["command"]


def test_benchmark(fake_cli, tmp_path):
    res = cli_tools.benchmark(tmp_path / "m.hef", 3)
    assert [c for c in fake_cli.read_text().splitlines() if c.startswith("benchmark")] == [
        f"benchmark {tmp_path / 'm.hef'} -t 3"
    ]
    assert res["fps"] == 2047.4 and res["power_avg_w"] == 1.2 and res["overall_latency_ms"] is None
