"""Shared fixtures: the real HAPT recordings (tests using them skip when absent), the fake Hailo
packages, one thread for torch. Helpers that are not fixtures live in tests/support/."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HAPT_DIR = Path(
    os.environ.get("WORKBENCH_HAPT_DIR", PROJECT_ROOT.parent / "shared" / "datasets" / "hapt-rawdata" / "HAPT Data Set")
)


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


@pytest.fixture(scope="session", autouse=True)
def _own_fake_hailo_device(tmp_path_factory) -> Iterator[None]:
    """One fake Hailo-8 per test process. The fakes model one physical device per checkout, so two pytest
    processes of one checkout (xdist workers, the two profiles of `make test-profiles`) would take it from
    each other like two programs on a real Pi. Kernels and subprocesses a test starts inherit the path,
    so within a process the device is shared exactly as before."""
    if os.environ.get("HAILO_FAKE_DEVICE_LOCK"):
        yield
        return
    os.environ["HAILO_FAKE_DEVICE_LOCK"] = str(tmp_path_factory.getbasetemp() / "hailo-fake-device.lock")
    try:
        yield
    finally:
        os.environ.pop("HAILO_FAKE_DEVICE_LOCK", None)


@pytest.fixture
def hailo_fakes() -> Iterator[object]:
    """The fake hailo_sdk_client / hailo_platform (tests/fakes) importable for one test; yields the
    shared fake core (``.CALLS``, ``.calls(name)``, ``.reset()``)."""
    from support.hailo import installed_fakes

    with installed_fakes() as core:
        yield core


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One papermill run of every stage on params/smoke.yaml, shared by every test that reads a finished
    run (the slowest fixture of the suite, paid once). Tests never write into it: reruns are child runs
    under the same outputs folder."""
    from workbench.config import load_params
    from workbench.runs.pipeline import run_pipeline

    out = tmp_path_factory.mktemp("smoke-outputs")
    params = load_params([PROJECT_ROOT / "params" / "smoke.yaml"])
    return run_pipeline(params, root=out, progress=False, log=lambda *_: None)


@pytest.fixture(scope="session")
def smoke_run_fake_hailo(smoke_run):
    """Stages 06-09 again, as a child of ``smoke_run``, with the fake Hailo packages (tests/fakes) on the
    kernels' path and the fake ``hailortcli`` on PATH: a compiled (fake) HEF, hailo8-device predictions
    from stage 07, hailortcli measurements, a bundle with model.hef."""
    from workbench.config import load_params
    from workbench.runs.pipeline import run_pipeline

    fakes = PROJECT_ROOT / "tests" / "fakes"
    before = {k: os.environ.get(k) for k in ("PYTHONPATH", "PATH")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(fakes), before["PYTHONPATH"]]))
    os.environ["PATH"] = os.pathsep.join(filter(None, [str(fakes / "bin"), before["PATH"]]))
    try:
        params = load_params([PROJECT_ROOT / "params" / "smoke.yaml"], {"run_label": "fake-hailo"})
        return run_pipeline(
            params,
            from_stage="06",
            parent=str(smoke_run.path),
            root=smoke_run.path.parent,
            progress=False,
            log=lambda *_: None,
        )
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---- tests that need torch (stages 01-02, cross-checks against torchmetrics) ------------------------
# The Hailo install profiles (make install-pi / install-dfc) leave torch out. `make test-profiles` sets
# WORKBENCH_NO_TORCH=1 there, and only then are `@pytest.mark.torch` tests skipped (with that reason in
# the -ra summary). Everywhere else they run, so a missing torch fails loudly instead of skipping.
def pytest_collection_modifyitems(config, items):
    _check_smoke_modules(items)
    if os.environ.get("WORKBENCH_NO_TORCH") != "1":
        return
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        raise pytest.UsageError(
            "WORKBENCH_NO_TORCH=1 but torch is installed: this environment is not a no-torch Hailo profile"
        )
    skip = pytest.mark.skip(reason="needs torch; this is a no-torch Hailo profile (WORKBENCH_NO_TORCH=1)")
    for item in items:
        if "torch" in item.keywords:
            item.add_marker(skip)


# ---- make test runs on several processes (pytest-xdist) ------------------------------------------------
# Session fixtures are per process. The modules that read the shared smoke run form one unit of work, so
# one worker makes the suite's most expensive fixture and the other workers take every other test one by
# one. (xdist's own `xdist_group` mark does not take effect with pytest 9: it rewrites a node attribute
# pytest 9 no longer reads.) The scheduler sees node ids only, hence a list of modules, and collection
# fails if a test elsewhere starts using the smoke run, so the list cannot go stale.
SMOKE_FIXTURES = {"smoke_run", "smoke_run_fake_hailo"}
SMOKE_MODULES = (
    "tests/e2e/test_smoke_pipeline.py",
    "tests/e2e/test_run_page.py",
    "tests/e2e/test_serve.py",
    "tests/e2e/test_run_contract.py",
    "tests/e2e/test_profile_no_torch.py",  # asks for smoke_run at run time when no parent run is given
    "tests/unit/deploy/test_deploy_bundle.py",
)
SMOKE_UNIT = "smoke_run"


def _check_smoke_modules(items) -> None:
    for item in items:
        if SMOKE_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.nodeid.startswith(SMOKE_MODULES):
            raise pytest.UsageError(
                f"{item.nodeid} uses the shared smoke run: add its module to SMOKE_MODULES in tests/conftest.py"
            )


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which the no-torch profiles do not install
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class SmokeRunScheduling(LoadScopeScheduling):
        """One work unit for the smoke-run modules, one per test for everything else."""

        def _split_scope(self, nodeid: str) -> str:
            return SMOKE_UNIT if nodeid.startswith(SMOKE_MODULES) else nodeid

    return SmokeRunScheduling(config, log)
