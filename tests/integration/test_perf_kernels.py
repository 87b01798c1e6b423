"""What the kernel speed-ups must not change: a step kernel launched through
mlpipe_jupyter.kernels.stepkernel (no debugpy import at start) is still a stock ipykernel to
the step's code, and asking kernels to exit (stepkernel.exit_kernel) ends them promptly, atexit
hooks and unflushed files included, even many at once (the shutdown_request it
replaces could hang)."""

from __future__ import annotations

import ast
import asyncio
import os
import sys
import time
from pathlib import Path

from jupyter_client.kernelspec import KernelSpec

from mlpipe_jupyter.kernels.client import connect, exit_kernel
from mlpipe_jupyter.kernels.stepkernel import KERNEL_ARGS, kernel_manager_class
from tests.kernelkit import run_code


async def _started(cwd: Path):
    km = kernel_manager_class()(kernel_name="python3")
    await km.start_kernel(cwd=str(cwd), extra_arguments=list(KERNEL_ARGS))
    kc = km.client()
    kc.start_channels()
    await connect(kc, 60)
    return km, kc


def test_the_stock_kernel_command_goes_through_the_runtime_launcher():
    km = kernel_manager_class()(kernel_name="python3")
    km._launch_args = {}
    stock = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    km._kernel_spec = KernelSpec(argv=stock, display_name="Python 3", language="python")
    cmd = km.format_kernel_cmd()
    assert cmd[:3] == [sys.executable, "-m", "mlpipe_jupyter.kernels.stepkernel"]
    for other in (["/elsewhere/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                  ["python", "-m", "my_kernel", "-f", "{connection_file}"]):
        km._kernel_spec = KernelSpec(argv=other, display_name="x", language="python")
        assert km.format_kernel_cmd()[1:3] == other[1:3]  # left as the kernelspec says


def test_step_code_sees_a_stock_kernel(tmp_path):
    (tmp_path / "local_helper.py").write_text("VALUE = 42\n")

    async def check():
        km, kc = await _started(tmp_path)
        try:
            return await run_code(kc, (
                "import sys, os\n"
                "debugpy_at_start = 'debugpy' in sys.modules\n"
                "import debugpy  # still importable by the step's own code\n"
                "import local_helper  # the cwd is importable, as in any kernel\n"
                "result = (debugpy_at_start, sys.argv[0].endswith('ipykernel_launcher.py'),\n"
                "          local_helper.VALUE, os.getcwd(), 'ipykernel' in sys.modules)"))
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=True)

    result = ast.literal_eval(asyncio.run(check()))
    assert result == (False, True, 42, str(tmp_path), True)


def test_many_kernels_exit_promptly_and_gracefully(tmp_path):
    n = 8

    async def one(i: int) -> tuple[float, bool]:
        km, kc = await _started(tmp_path)
        try:
            await run_code(kc, (
                f"import atexit\n"
                f"fh = open('out-{i}.txt', 'w')\n"
                f"fh.write('x' * 100)  # never closed: exit flushes it\n"
                f"atexit.register(lambda: open('atexit-{i}.txt', 'w').write('ran'))\n"
                f"result = 1"))
        finally:
            kc.stop_channels()
        started = time.monotonic()
        exited = await exit_kernel(km, 10)
        took = time.monotonic() - started
        await km.shutdown_kernel(now=True)
        return took, exited

    async def all_at_once():
        return await asyncio.gather(*(one(i) for i in range(n)))

    for _ in range(2):  # the race exit_kernel avoids hit about 1 exit in 10 of this
        results = asyncio.run(all_at_once())
        assert all(exited for _, exited in results), results  # (took, exited) per kernel
        assert max(took for took, _ in results) < 5, results
        for i in range(n):
            assert (tmp_path / f"out-{i}.txt").read_text() == "x" * 100
            assert (tmp_path / f"atexit-{i}.txt").read_text() == "ran"
            os.remove(tmp_path / f"out-{i}.txt")
            os.remove(tmp_path / f"atexit-{i}.txt")
