"""The Raspberry Pi deployment files, linted as far as this machine allows (no arm64 base image, no
Docker daemon, no Hailo device): hadolint on the Dockerfile, the compose file parsed, the systemd unit
parsed and run through systemd-analyze where it exists. Also: the requirements the Dockerfile installs
are exactly the ones every bundle carries."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import yaml

from workbench.deploy.bundle import SERVICE_REQUIREMENTS

PI = Path(__file__).resolve().parents[3] / "deploy" / "pi"


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    out = subprocess.run([hadolint, str(PI / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_runs_unprivileged_with_a_healthcheck_on_healthz():
    lines = [ln.strip() for ln in (PI / "Dockerfile").read_text().splitlines()]
    assert any(ln.startswith("FROM python:3.11") for ln in lines)
    user = [ln for ln in lines if ln.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in ("root", "0")
    health = " ".join(lines[lines.index(next(ln for ln in lines if ln.startswith("HEALTHCHECK"))) :][:2])
    assert "/healthz" in health
    assert any("pip install --no-cache-dir --no-deps" in ln for ln in lines), "workbench without torch"
    assert not any("torch" in ln or "papermill" in ln for ln in lines if not ln.startswith("#"))


def test_requirements_file_is_the_bundles():
    assert (PI / "requirements.txt").read_text() == SERVICE_REQUIREMENTS
    pins = [ln for ln in SERVICE_REQUIREMENTS.splitlines() if ln and not ln.startswith("#")]
    assert all("==" in p for p in pins)
    numpy = next(p for p in pins if p.startswith("numpy=="))
    assert int(numpy.split("==")[1].split(".")[0]) < 2  # HailoRT needs numpy<2


def test_compose_publishes_on_loopback_and_passes_the_device():
    spec = yaml.safe_load((PI / "compose.yaml").read_text())
    svc = spec["services"]["edgeinfer"]
    assert svc["build"]["dockerfile"] == "deploy/pi/Dockerfile"
    assert all(str(p).startswith("127.0.0.1:") for p in svc["ports"])
    assert "/dev/hailo0:/dev/hailo0" in svc["devices"]
    assert any(v.endswith(":/bundle:ro") for v in svc["volumes"])
    assert svc["read_only"] is True and "ALL" in svc["cap_drop"]


def test_systemd_unit_binds_loopback_and_is_confined():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(PI / "edgeinfer.service")
    svc = unit["Service"]
    assert "workbench serve" in svc["ExecStart"] and "--host 127.0.0.1" in svc["ExecStart"]
    assert svc["DeviceAllow"].startswith("/dev/hailo0")
    assert svc["NoNewPrivileges"] == "yes" and svc["DynamicUser"] == "yes"
    analyze = shutil.which("systemd-analyze")
    if analyze:  # the only complaint allowed here: the Pi's venv does not exist on this machine
        out = subprocess.run(
            [analyze, "verify", str(PI / "edgeinfer.service")], capture_output=True, text=True, timeout=60
        )
        problems = [
            ln
            for ln in (out.stdout + out.stderr).splitlines()
            if ln.strip() and "/opt/edgeinfer/venv/bin/python" not in ln
        ]
        assert problems == []
