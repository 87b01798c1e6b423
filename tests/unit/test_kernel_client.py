"""kernels/client.py: what the warm pool and the docker kernel bridge share to talk to a
kernel. One zmq context for every kernel manager and client of the process, and a module that
costs nothing to import until it is used."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from mlpipe_jupyter.executors import kernelbridge
from mlpipe_jupyter.kernels.client import shared_context_class
from mlpipe_jupyter.kernels.stepkernel import kernel_manager_class


def test_the_bridge_and_the_pool_share_one_zmq_context_and_lean_clients():
    pool_km = shared_context_class(kernel_manager_class())(kernel_name="python3")
    files = kernelbridge.kernel_files((os.getuid(), os.getgid()))
    try:
        bridge_km = kernelbridge.kernel_manager(files, alive=lambda: True, interrupt=lambda: None)
        kc = bridge_km.client()
        assert bridge_km.context is pool_km.context
        assert kc.context is pool_km.context
        assert type(kc).__name__ == "LeanClient"
        kc.stop_channels()  # none started: none is connected only to be dropped
    finally:
        files.remove()


def test_importing_the_client_loads_neither_jupyter_client_nor_zmq():
    code = ("import json, sys\n"
            "import mlpipe_jupyter.kernels.client, mlpipe_jupyter.kernels.stepkernel\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    modules = set(json.loads(done.stdout))
    assert not {m for m in modules if m.split(".")[0] in ("jupyter_client", "zmq", "IPython")}
