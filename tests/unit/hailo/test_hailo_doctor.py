"""`workbench doctor`: verdicts here (no Hailo packages), with the fakes, and the pairing table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from support.hailo import make_tiny_hef
from workbench.cli import main
from workbench.hailo import doctor as dr
from workbench.hailo.versions import VERSION_PAIRS, dfc_for_hailort, hailort_for_dfc, pairing_verdict
from workbench.runs import Run

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(n) for n in ("hailo_platform", "hailo_sdk_client")),
    reason="a Hailo package is installed on this machine",
)
def test_here_it_says_plainly_that_nothing_hailo_is_installed(capsys, monkeypatch):
    monkeypatch.setattr(dr.shutil, "which", lambda name: None)  # no hailortcli either
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "Neither Hailo package is installed here" in out
    lines = {ln.split("]", 1)[1].split()[0]: ln for ln in out.splitlines() if ln.startswith("[")}
    for name in ("Python", "numpy", "torch", "ONNX", "hailo_sdk_client", "hailo_platform", "hailortcli", "device"):
        assert name in lines, name
        assert re.match(r"\[\s*(ok|warn|FAIL|info)\]", lines[name]), lines[name]
    assert "not installed" in lines["hailo_sdk_client"] and "not installed" in lines["hailo_platform"]
    assert "make install-pi" in out and "make install-dfc" in out and "hailo-all" in out


def test_pairing_table_and_verdicts():
    assert hailort_for_dfc("3.31.0") == "4.21" and hailort_for_dfc("3.33.1") == "4.23"
    assert dfc_for_hailort("HailoRT-CLI version 4.22.0") == "3.32" and hailort_for_dfc("3.29.0") is None
    assert pairing_verdict("3.30.0", "4.20.0")[0] is True
    ok, why = pairing_verdict("3.32.0", "4.20.0")
    assert ok is False and "HailoRT 4.22" in why and "DFC 3.30" in why
    assert pairing_verdict(None, "4.20.0")[0] is None


def test_readme_table_is_the_data():
    text = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| (3\.\d+(?:\.x)?) \| (4\.\d+) \|$", text, flags=re.MULTILINE)
    assert rows == VERSION_PAIRS


def _compiled_run(tmp_path, dfc_version="3.31.0", hw_arch="hailo8"):
    run = Run.create("doc", root=tmp_path)
    d06 = run.stage_dir("06")
    (d06 / "model.hef").write_bytes(b"\x01HEF" + b"\0" * 8)
    (d06 / "compile_result.json").write_text(json.dumps({"dfc_version": dfc_version, "hw_arch": hw_arch}))
    return run


def test_with_fakes_pairing_device_and_arch(hailo_fakes, tmp_path, monkeypatch):
    run = _compiled_run(tmp_path, hw_arch="hailo8")
    checks = {c.name: c for c in dr.run_checks(run=run)}
    hp = checks["hailo_platform (HailoRT)"]
    assert hp.verdict == "ok" and "0.0.0+fake" in hp.detail
    assert checks["hailortcli"].verdict == "ok"
    assert checks["device"].verdict == "ok" and "HAILO8" in checks["device"].detail
    assert checks["HEF hw_arch vs device"].verdict == "ok"
    # the fake HailoRT (0.0.0) is in no pair with DFC 3.31: a verdict that says so, not a guess
    assert checks["DFC <-> HailoRT"].verdict == "FAIL" and "HailoRT 4.21" in checks["DFC <-> HailoRT"].detail
    # a Hailo-8L cannot run a hailo8 HEF
    monkeypatch.setenv("HAILO_FAKE_ARCH", "hailo8l")
    checks = {c.name: c for c in dr.run_checks(run=run)}
    assert checks["HEF hw_arch vs device"].verdict == "FAIL" and "hailo8l" in checks["HEF hw_arch vs device"].fix


def test_device_held_elsewhere_is_explained(hailo_fakes, tmp_path):
    from workbench.hailo.runtime import HailoRTRunner

    hef = make_tiny_hef(tmp_path)
    with HailoRTRunner(hef):
        (check,) = dr.check_device(None)
    assert check.verdict == "FAIL" and "another process holds the device" in check.fix


def test_driver_must_equal_hailort(tmp_path):
    f = tmp_path / "version"
    f.write_text("4.20.0\n")
    assert dr.check_driver("4.20.0", f)[0].verdict == "ok"
    bad = dr.check_driver("4.23.0", f)[0]
    assert bad.verdict == "FAIL" and "INVALID_DRIVER_VERSION" in bad.detail
    assert dr.check_driver("4.23.0", tmp_path / "absent")[0].verdict == "warn"
    assert dr.check_driver(None, tmp_path / "absent") == []


def test_venv_without_system_site_packages_gets_the_right_fix(monkeypatch, tmp_path):
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    monkeypatch.setattr(dr.sys, "prefix", str(tmp_path))
    monkeypatch.setattr(dr.sys, "base_prefix", "/usr")
    assert dr._venv_hides_system_site() is True
