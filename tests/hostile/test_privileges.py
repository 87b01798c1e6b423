"""Least privilege: what a step's container may do, read from `docker inspect` of a running step
and from inside it; and what a step leaves on the host (no setuid file)."""

from __future__ import annotations

import os
import stat

import pytest

from tests.hostile.conftest import (
    EXECUTORS,
    Background,
    pipeline,
    run_pipeline,
    running_container,
    stored_steps,
)

pytestmark = pytest.mark.docker

GIB = 1 << 30
# the step waits for the test to look at its container, then says what it sees from inside
PROBE = """\
%%step probe --outputs facts
import os, time
while not os.path.exists('go'):
    time.sleep(0.02)
status = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines())
def writable(directory):
    try:
        with open(os.path.join(directory, '.probe'), 'w'):
            pass
        return True
    except OSError as err:
        return err.errno
facts = {'ids': [os.getuid(), os.getgid()] + sorted(os.getgroups()),
         'cap_eff': status['CapEff'].strip(), 'cap_bnd': status['CapBnd'].strip(),
         'no_new_privs': status['NoNewPrivs'].strip(),
         'root': writable('/'), 'opt': writable('/opt/mlpipe'), 'tmp': writable('/tmp'),
         'home': writable(os.environ['HOME']), 'work': writable('.'),
         'outputs': writable('/mlpipe/outputs'),
         'step': os.path.isdir('/mlpipe/step') and writable('/mlpipe/step')}
"""


def step_user() -> str:
    return "65534:65534" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}"


@pytest.mark.parametrize("papermill", ["host", "container"])
def test_a_running_step_container_has_least_privilege(notebook_dir, client, papermill):
    runner = pipeline(notebook_dir, [PROBE], "docker",
                      executor_options={"papermill": papermill})
    run = Background(runner)
    container = running_container(client, runner.run_id)
    container.reload()
    attrs, host = container.attrs, container.attrs["HostConfig"]
    info = client.info()
    try:
        assert attrs["Config"]["User"] == step_user()
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["Privileged"] is False
        assert host["ReadonlyRootfs"] is True
        assert host["Tmpfs"] == {"/tmp": "rw,exec,nosuid,nodev,mode=1777"}
        assert host["PidsLimit"] == max(4096, 64 * info["NCPU"])
        # the default memory cap: the engine's memory less a margin for the host, no swap
        total = info["MemTotal"]
        assert host["Memory"] == total - max(GIB, total // 10)
        assert host["MemorySwap"] == host["Memory"]
        mounts = {m["Destination"]: m["RW"] for m in attrs["Mounts"]}
        expected = {"/mlpipe/work": True, "/mlpipe/outputs": True}
        if papermill == "host":  # the runner keeps the record; the kernel's sockets are shared
            expected["/mlpipe/kernel"] = True
        else:  # papermill in there writes the record into a box the runner collects from
            expected.update({"/mlpipe/step": True, "/mlpipe/notebook.ipynb": False})
        assert mounts == expected
        assert all(m["Type"] == "bind" and m["Propagation"] == "rprivate"
                   for m in attrs["Mounts"])
        step_dir = runner.home.step_dir(runner.run_id, "probe")
        assert not any(m["Source"] == str(step_dir) for m in attrs["Mounts"])
    finally:
        (runner.home.step_dir(runner.run_id, "probe") / "work" / "go").touch()
        state = run.join()
    assert state == "succeeded", stored_steps(runner)
    facts = runner.artifacts.load(runner.outputs["probe"]["facts"])
    uid, gid = map(int, step_user().split(":"))
    assert facts["ids"][:2] == [uid, gid] and set(facts["ids"][2:]) <= {gid}
    assert facts["cap_eff"] == facts["cap_bnd"] == "0000000000000000"
    assert facts["no_new_privs"] == "1"
    assert facts["root"] == facts["opt"] == 30  # EROFS: the image cannot be changed
    assert facts["tmp"] is facts["home"] is facts["work"] is facts["outputs"] is True
    assert facts["step"] is (papermill == "container")
    assert client.containers.list(all=True, filters={"label": f"mlpipe.run={runner.run_id}"}) \
        == []


MEMORY = """\
from pathlib import Path
v2 = Path('/sys/fs/cgroup/memory.max')
raw = (v2 if v2.exists() else Path('/sys/fs/cgroup/memory/memory.limit_in_bytes')).read_text()
limit = None if raw.strip() == 'max' or int(raw) >= 1 << 60 else int(raw)
"""


@pytest.mark.parametrize("how", ["option", "env"])
def test_the_default_memory_cap_is_configurable_and_a_step_memory_wins(notebook_dir, client,
                                                                       monkeypatch, how):
    cells = ["%%step small --memory 300m --outputs small\n" + MEMORY + "small = limit",
             "%%step default --outputs default\n" + MEMORY + "default = limit"]
    options = {}
    if how == "option":
        options = {"memory": "2g"}
    else:
        monkeypatch.setenv("MLPIPE_DOCKER_MEMORY", "2g")
    runner, state = run_pipeline(notebook_dir, cells, "docker", executor_options=options)
    assert state == "succeeded", stored_steps(runner)
    load = runner.artifacts.load
    assert load(runner.outputs["small"]["small"]) == 300 << 20
    assert load(runner.outputs["default"]["default"]) == 2 * GIB
    # `none`: no default cap (a step's --memory still holds)
    options = {"memory": "none"} if how == "option" else {}
    monkeypatch.setenv("MLPIPE_DOCKER_MEMORY", "none")
    runner, state = run_pipeline(notebook_dir, cells, "docker", executor_options=options,
                                 no_cache=True)
    assert state == "succeeded", stored_steps(runner)
    assert load(runner.outputs["small"]["small"]) == 300 << 20
    assert load(runner.outputs["default"]["default"]) is None


SETUID = """\
%%step suid --outputs tool.sh shared/ modes
import os
with open('tool.sh', 'w') as fh:
    fh.write('#!/bin/sh\\nid\\n')
os.chmod('tool.sh', 0o6755)
os.mkdir('shared')
with open('shared/inner', 'w') as fh:
    fh.write('x')
os.chmod('shared/inner', 0o4755)
os.chmod('shared', 0o3777)
modes = [os.stat(p).st_mode & 0o7777 for p in ('tool.sh', 'shared/inner', 'shared')]
"""


@EXECUTORS
def test_a_setuid_file_a_step_made_is_not_setuid_on_the_host(notebook_dir, client, executor):
    runner, state = run_pipeline(notebook_dir, [SETUID], executor)
    assert state == "succeeded", stored_steps(runner)
    outputs = runner.outputs["suid"]
    # the step really made them setuid and setgid where it ran
    assert runner.artifacts.load(outputs["modes"]) == [0o6755, 0o4755, 0o3777]
    tool = runner.artifacts.data_path(outputs["tool.sh"])
    shared = runner.artifacts.data_path(outputs["shared/"])
    assert stat.S_IMODE(tool.stat().st_mode) == 0o444
    assert stat.S_IMODE((shared / "inner").stat().st_mode) == 0o444
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # nobody else writes an artifact
    if executor == "docker":  # the work dir too: no special bit, and the invoking user's
        work = runner.home.step_dir(runner.run_id, "suid") / "work"
        for path in (work / "tool.sh", work / "shared" / "inner", work / "shared", work):
            st = path.lstat()
            assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID), (path, oct(st.st_mode))
            assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), path
