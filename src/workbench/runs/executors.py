"""Where a sweep's variations run: here (a bounded pool of `workbench run` processes) or on a Ray cluster
(one Ray task per variation, each running the same `workbench run` process on whichever node Ray picks).

Both produce normal run directories. With Ray the outputs folder, the parameter files, the data and the
project itself must sit on a filesystem that every node mounts at the same path (NFS, a cluster volume),
and each node needs the same Python environment; the task runs in the driver's working directory so
relative paths in sweep files mean the same everywhere. Results stream back in completion order.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

from workbench.errors import SweepError

# Environment a variation must see wherever it runs (notebook folder overrides, outputs root).
FORWARDED_ENV = ("WORKBENCH_NOTEBOOKS", "WORKBENCH_OUTPUTS", "PYTHONPATH")


@dataclass
class Outcome:
    """What one `workbench run` process left: its exit status, output and wall time."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    node: str = ""


def run_workbench(args: Sequence[str], cwd: Optional[str] = None, env: Optional[dict[str, str]] = None) -> Outcome:
    """Run `python -m workbench <args>` with this interpreter and wait for it."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "workbench", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    import platform

    return Outcome(
        list(args), proc.returncode, proc.stdout, proc.stderr, round(time.perf_counter() - t0, 2), platform.node()
    )


def _forwarded_env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}


Job = tuple[dict[str, Any], list[str]]  # (variation values, `workbench` arguments)


class LocalExecutor:
    """Up to ``workers`` `workbench run` processes at once on this machine (threads only wait on them)."""

    def __init__(self, workers: int):
        self.workers = workers

    def describe(self) -> str:
        return f"{self.workers} local worker{'s' if self.workers != 1 else ''}"

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[dict[str, Any], Outcome]]:
        cwd, env = os.getcwd(), _forwarded_env()
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = {pool.submit(run_workbench, args, cwd, env): values for values, args in jobs}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()

    def close(self) -> None:
        pass


class RayExecutor:
    """One Ray task (1 CPU) per variation. Connects to ``address`` (``auto``, ``HOST:PORT``, ``ray://...``);
    without one it uses an already initialised Ray or starts a local instance with ``workers`` CPUs on
    127.0.0.1, shut down again when the sweep ends."""

    def __init__(self, workers: int, address: Optional[str] = None):
        try:
            import ray
        except ImportError as exc:
            raise SweepError(
                "--executor ray needs the ray package: pip install -r requirements-dev.txt (ray is pinned there)"
            ) from exc
        self.ray = ray
        self.workers = workers
        self.started_here = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs.update(num_cpus=workers, _node_ip_address="127.0.0.1")
                # a busy machine can take longer than Ray's default 60 s to register the local raylet
                os.environ.setdefault("RAY_raylet_start_wait_time_s", "180")
            try:
                ray.init(**kwargs)
            except Exception as exc:  # connection refused, version mismatch ...
                raise SweepError(f"could not start or reach Ray ({address or 'local instance'}): {exc}") from exc
            self.started_here = True
        self.address = address

    def describe(self) -> str:
        cpus = int(self.ray.cluster_resources().get("CPU", 0))
        where = self.address or "local Ray instance"
        return f"Ray ({where}, {cpus} CPU{'s' if cpus != 1 else ''})"

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[dict[str, Any], Outcome]]:
        ray = self.ray
        task = ray.remote(num_cpus=1, max_retries=0)(run_workbench)
        cwd, env = os.getcwd(), _forwarded_env()
        pending = {task.remote(args, cwd, env): values for values, args in jobs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                values = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # the worker died: the variation failed, the sweep goes on
                    outcome = Outcome([], -1, "", f"Ray task failed: {exc}", 0.0)
                yield values, outcome

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()


EXECUTORS = ("local", "ray")


def make_executor(kind: str, workers: int, address: Optional[str] = None) -> LocalExecutor | RayExecutor:
    if kind == "local":
        if address:
            raise SweepError("--address belongs to --executor ray")
        return LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(workers, address)
    raise SweepError(f"unknown executor {kind!r}; choose from {', '.join(EXECUTORS)}")
