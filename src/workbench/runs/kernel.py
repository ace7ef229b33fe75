"""How the workbench starts notebook kernels: quietly and locally.

ipykernel warns on every start that it "is running over TCP without encryption". The kernels the
workbench starts only ever talk to the process that started them, so they use ZeroMQ's IPC transport
(Unix domain sockets in the Jupyter runtime folder, readable only by this user) instead of loopback TCP.
That removes the warning at its cause rather than filtering it, and no port is opened.
"""
from __future__ import annotations

import os
from typing import Any

# Environment every headless kernel inherits: progress bars off (tqdm reads TQDM_DISABLE as its default
# for `disable`; calls that pass `disable=` themselves decide on their own, see notebook.headless()), so the
# rendered notebooks hold results, not stderr bar fragments.
HEADLESS_ENV = {"WORKBENCH_HEADLESS": "1", "TQDM_DISABLE": "1"}


def kernel_options() -> dict[str, Any]:
    """Keyword arguments for ``papermill.execute_notebook`` (passed on to nbclient's NotebookClient):
    a traitlets config selecting the IPC transport for the kernel manager. Windows has no Unix sockets,
    so it keeps TCP there."""
    if os.name == "nt":
        return {}
    from traitlets.config import Config
    config = Config()
    config.KernelManager.transport = "ipc"
    return {"config": config}
