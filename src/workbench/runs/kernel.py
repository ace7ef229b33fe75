"""How the workbench starts notebook kernels: quietly and locally.

ipykernel warns on every start that it "is running over TCP without encryption". The kernels the
workbench starts only ever talk to the process that started them, so they use ZeroMQ's IPC transport
(Unix domain sockets in the Jupyter runtime folder, readable only by this user) instead of loopback TCP.
That removes the warning at its cause rather than filtering it, and no port is opened.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
from typing import Any, Optional

# Environment every headless kernel inherits: progress bars off (tqdm reads TQDM_DISABLE as its default
# for `disable`; calls that pass `disable=` themselves decide on their own, see notebook.headless()), so the
# rendered notebooks hold results, not stderr bar fragments.
HEADLESS_ENV = {"WORKBENCH_HEADLESS": "1", "TQDM_DISABLE": "1"}


_ipc_dir: Optional[str] = None
_counter = itertools.count(1)


def _private_ipc_prefix() -> str:
    """A socket path prefix no other kernel uses. jupyter_client's default IPC prefix is ``kernel-ipc``
    in the working directory, where concurrent kernels (sweeps) would pick the same socket files; a
    private folder per process (removed at exit) and a counter per kernel keep them apart."""
    global _ipc_dir
    if _ipc_dir is None:
        _ipc_dir = tempfile.mkdtemp(prefix="wb-kernels-")
        atexit.register(shutil.rmtree, _ipc_dir, True)
    return os.path.join(_ipc_dir, f"k{next(_counter)}")


def kernel_options() -> dict[str, Any]:
    """Keyword arguments for ``papermill.execute_notebook`` (passed on to nbclient's NotebookClient):
    a traitlets config selecting the IPC transport, with sockets in a private folder. Windows has no Unix
    sockets, so it keeps TCP there."""
    if os.name == "nt":
        return {}
    from traitlets.config import Config

    config = Config()
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = _private_ipc_prefix()
    return {"config": config}
