"""Kernels forked from the run's zygote (kernelfork.py, kernelzygote.py): each is the kernel a
step would have got from a new interpreter, nothing outlives the run or a killed runner, and
when the zygote fails kernels start the usual way."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

from jupyter_client.kernelspec import KernelSpec

from mlpipe_jupyter.kernels.fork import ForkedProcess, ForkProvisioner, Zygote, use_zygote
from mlpipe_jupyter.kernels.pool import KernelPool
from mlpipe_jupyter.kernels.stepkernel import kernel_manager_class
from tests.conftest import wait_exited
from tests.kernelkit import ask, wait_gone

PROBE = ("import os, sys, random, tempfile\n"
         "result = {'ppid': os.getppid(), 'cwd': os.getcwd(), 'colour': os.environ.get('COLOUR'),\n"
         "          'parent': os.environ.get('JPY_PARENT_PID'), 'random': random.random(),\n"
         "          'pgid': os.getpgid(0) == os.getpid(), 'modules': sorted(sys.modules),\n"
         "          'debugpy': 'debugpy' in sys.modules, 'tmp': tempfile.gettempdir()}")


def test_a_forked_kernel_is_the_kernel_a_new_interpreter_would_be(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    fresh = KernelPool(size=0, expected=1, fork=False)
    try:
        plain = fresh.acquire(one, {})
        assert not isinstance(plain.process, ForkedProcess)
        plain_modules = set(ask(fresh, plain, PROBE)["modules"])
    finally:
        fresh.shutdown()

    pool = KernelPool(size=0, expected=2)
    try:
        zygote = pool._zygote.process.pid
        a = pool.acquire(one, {"COLOUR": "red", "TMPDIR": str(one)})
        b = pool.acquire(two, {"COLOUR": "blue", "TMPDIR": str(two)})
        assert isinstance(a.process, ForkedProcess) and isinstance(b.process, ForkedProcess)
        seen_a, seen_b = ask(pool, a, PROBE), ask(pool, b, PROBE)
        for seen, where, colour in ((seen_a, one, "red"), (seen_b, two, "blue")):
            assert seen["ppid"] == zygote and seen["parent"] == str(zygote)
            assert seen["cwd"] == str(where) and seen["colour"] == colour
            assert seen["tmp"] == str(where)  # nothing read from the zygote's environment
            assert seen["pgid"] and not seen["debugpy"]
            # nothing imported that a kernel started the usual way would not have (stepkernel
            # is that kernel's __main__)
            assert set(seen["modules"]) - plain_modules == {"mlpipe_jupyter.kernels.stepkernel"}
        assert seen_a["random"] != seen_b["random"]  # each its own seed (CPython reseeds)
        pid_a = a.process.pid
        pool.release(a)
        assert a.process.poll() == 0  # asked to exit: it exited cleanly (the zygote reaped it)
        wait_exited(pid_a, what="the released kernel")
        proc_b = b.process
    finally:
        pool.shutdown()
    assert proc_b.poll() == -signal.SIGKILL  # still running at shutdown: killed
    assert pool._zygote.process.poll() is not None


def test_a_killed_runner_leaves_no_zygote_and_no_kernel(tmp_path):
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from mlpipe_jupyter.kernels.pool import KernelPool\n"
        "pool = KernelPool(size=1, expected=3)\n"
        "k = pool.acquire(Path(sys.argv[1]), {})\n"
        "deadline = time.monotonic() + 30\n"
        "while len(pool.alive()) < 2 and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "print(pool._zygote.process.pid, *pool.alive(), flush=True)\n"
        "time.sleep(120)\n")
    runner = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        zygote, *kernels = [int(p) for p in runner.stdout.readline().split()]
        assert len(kernels) == 2  # the kernel handed out, a warm one
        for pid in kernels:  # forked, so only the zygote can see them go
            assert int(Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[1]) == zygote
    finally:
        runner.kill()
        runner.wait()
    for pid in [zygote, *kernels]:
        wait_exited(pid, what="the zygote or a kernel it forked")


def test_a_runner_gone_in_the_middle_of_a_fork_leaves_nothing(tmp_path, monkeypatch):
    mark = uuid.uuid4().hex
    monkeypatch.setenv("MLPIPE_TEST_MARK", mark)  # in the zygote's environ, so its children's
    zygote = Zygote(tmp_path)
    request = {"op": "fork", "argv": ["-f", str(tmp_path / "k.json")], "cwd": str(tmp_path),
               "env": dict(os.environ)}
    with open(tmp_path / "kernel.log", "ab") as out:  # sent while the zygote still imports
        socket.send_fds(zygote._sock, [json.dumps(request).encode()], [out.fileno()])
    zygote._sock.close()  # as a runner killed right after asking
    zygote.process.wait(30)
    assert wait_gone(mark) == []


def test_a_kernelspec_naming_its_provisioner_keeps_it(tmp_path):
    km = kernel_manager_class()(kernel_name="python3")
    argv = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    km._kernel_spec = KernelSpec(argv=argv, display_name="x", language="python",
                                 metadata={"kernel_provisioner": {"provisioner_name": "other"}})
    zygote = Zygote(tmp_path)
    try:
        use_zygote(km, zygote)
        assert km.provisioner is None  # jupyter_client will create the one the spec names
        km._kernel_spec.metadata = {}
        use_zygote(km, zygote)
        assert isinstance(km.provisioner, ForkProvisioner)
    finally:
        zygote.close()


def test_without_its_zygote_the_pool_starts_kernels_the_usual_way(tmp_path):
    pool = KernelPool(size=0, expected=2)
    try:
        first = pool.acquire(tmp_path, {})
        assert isinstance(first.process, ForkedProcess)
        first_pid = first.process.pid
        os.kill(pool._zygote.process.pid, signal.SIGKILL)
        pool._zygote.process.wait()
        # orphaned, the forked kernel sees its parent change and exits by itself
        wait_exited(first_pid, 15, what="the orphaned forked kernel")
        second = pool.acquire(tmp_path, {"COLOUR": "green"})
        assert not isinstance(second.process, ForkedProcess)
        assert ask(pool, second, "import os\nresult = os.environ['COLOUR']") == "green"
    finally:
        pool.shutdown()
    assert pool.alive() == []


def test_a_variable_read_at_interpreter_start_is_not_forked(tmp_path):
    pool = KernelPool(size=0, expected=1)
    try:
        kernel = pool.acquire(tmp_path, {"PYTHONHASHSEED": "0"})
        assert not isinstance(kernel.process, ForkedProcess)
        assert ask(pool, kernel, "import sys\nresult = sys.flags.hash_randomization") == 0
    finally:
        pool.shutdown()


def test_an_environment_too_large_to_send_starts_one_kernel_the_usual_way(tmp_path):
    pool = KernelPool(size=0, expected=2)
    try:
        env = {f"BIG{i}": "x" * 100_000 for i in range(3)}  # one variable may have 128 KiB
        big = pool.acquire(tmp_path, env)
        assert not isinstance(big.process, ForkedProcess)
        assert ask(pool, big, "import os\nresult = len(os.environ['BIG2'])") == 100_000
        after = pool.acquire(tmp_path, {})
        assert isinstance(after.process, ForkedProcess)  # the zygote still serves
    finally:
        pool.shutdown()
