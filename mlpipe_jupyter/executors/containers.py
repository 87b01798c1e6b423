"""What a step's container looks like, and how containers are found again. Pure except for
`collect_garbage`, which is handed a docker client.

A step's container runs the step's kernel (`python -m mlpipe_jupyter.kernels.stepkernel`,
driven from the runner over sockets in /mlpipe/kernel: kernelbridge.py) or, where the runner
cannot reach such sockets, papermill and the kernel (`python -m mlpipe_jupyter.step.main`), with:

    /mlpipe/work            the step's working directory (rw, the cwd)
    /mlpipe/work/<path>     each file input, read-only
    /mlpipe/inputs/<name>   each variable input's artifact directory, read-only
    /mlpipe/outputs         where the outputs cell writes variable artifacts (rw)
    /mlpipe/kernel          the kernel's connection file and sockets (rw, kernel only)
    /mlpipe/step            stepmain only: its job file, and where it writes the executed
                            notebook and the kernel's log (rw: a box in the step's run
                            directory, which the runner collects from, safefs.py)
    /mlpipe/notebook.ipynb  stepmain only: the step notebook (read-only)

The step's run directory itself (log.txt, output.ipynb) is never mounted: the runner writes
there, and a step that could write there could make the runner write through a symlink.

A step is a sandbox (sandbox.py does the host side):
- it runs as the invoking user's uid:gid, or SANDBOX_USER when that is root (the directories it
  writes are handed to that uid before it runs and back afterwards);
- with no capability (cap_drop ALL), no-new-privileges, a read-only image (the root file
  system) with a tmpfs /tmp that is also its HOME (IPython, Jupyter, pip --user, caches);
- with at most `default_pids` processes and threads, and a memory cap: its `--memory`, else
  the executor's `memory` option (MLPIPE_DOCKER_MEMORY, `none` for no cap), else
  `default_memory` of the engine's memory. Swap is never added on top of the cap.

Labels `mlpipe.run`, `mlpipe.step` and `mlpipe.owner` (host:pid:start-time:boot-id of the
runner process) let a run cancel its containers, and the next `mlpipe run`, `mlpipe runs`, the
service or `mlpipe gc` find those of runners that died (reaper.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..home import BOX
from ..model.rules import parse_memory
from ..run.processes import Owner
from .base import StepJob

WORK, INPUTS, OUTPUTS, STEP = "/mlpipe/work", "/mlpipe/inputs", "/mlpipe/outputs", "/mlpipe/step"
KERNEL = "/mlpipe/kernel"
PYTHON = "/opt/mlpipe/bin/python"
NOTEBOOK = "/mlpipe/notebook.ipynb"  # stepmain only: the step notebook, read-only
JOB_FILE = "container.json"
RUN_LABEL, STEP_LABEL, OWNER_LABEL = "mlpipe.run", "mlpipe.step", "mlpipe.owner"
# the uid:gid a step runs as when the invoking user is root: Debian's nobody:nogroup, which
# owns nothing on the host and exists in every Debian-based image (so getpass and ~ work)
SANDBOX_USER = (65534, 65534)
TMPFS = {"/tmp": "rw,exec,nosuid,nodev,mode=1777"}  # exec: JIT caches (numba, triton) live here
GIB = 1 << 30


def container_user(owner: tuple[int, int]) -> tuple[int, int]:
    """Who runs in the container for a step whose files belong to `owner`: never root."""
    return SANDBOX_USER if owner[0] == 0 else owner


def default_memory(total: int) -> int:
    """The memory cap of a step that sets none: the engine's memory less a tenth of it (at
    least 1 GiB), so that a runaway step is killed with an "out of memory" error before it takes
    the host (its runner, Jupyter, the desktop) down, while an honest step can use nearly all."""
    return max(total - max(GIB, total // 10), GIB // 4)


def default_pids(cpus: int) -> int:
    """Processes and threads a step may have at once (a fork bomb stops there): enough for a
    BLAS thread per core in each of a worker pool's processes on a big machine."""
    return max(4096, 64 * cpus)


def parse_memory_option(value: Any) -> int | None | bool:
    """The executor's `memory` option: a size, `none` (no cap), or unset (True: the default)."""
    if value is None or value == "":
        return True
    if str(value).strip().lower() in ("none", "0", "off"):
        return None
    try:
        return parse_memory(str(value))
    except UsageError:
        raise UsageError(f"executor option memory={value}: use a size such as 8g, or none",
                         option="memory") from None


@dataclass(frozen=True)
class Limits:
    memory: int | None  # the cap of a step without --memory (None: no cap)
    pids: int


def parse_user(value: Any = None) -> tuple[int, int]:
    """`1234`, `1234:1234` or (uid, gid); default the invoking user's uid and gid."""
    if value is None:
        return os.getuid(), os.getgid()
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    uid, _, gid = str(value).partition(":")
    try:
        return int(uid), int(gid) if gid else os.getgid()
    except ValueError:
        raise UsageError(f"executor option user: `{value}` is not UID or UID:GID",
                         option="user") from None


def owner_label() -> str:
    """The `mlpipe.owner` label of this process: tells `mlpipe gc` whether a runner is alive."""
    return Owner.this().label()


def owner_alive(label: str | None) -> bool | None:
    """Whether the runner a label names is alive: None when that cannot be told here."""
    owner = Owner.parse(label)
    return None if owner is None else owner.alive()


def _bind(source: Path, target: str, read_only: bool) -> dict:
    return {"Type": "bind", "Source": str(source), "Target": target, "ReadOnly": read_only}


def io_paths(job: StepJob) -> dict:
    """The `_mlpipe_io` parameter as the container sees it."""
    return {"inputs": {name: f"{INPUTS}/{name}" for name in job.inputs}, "outputs_dir": OUTPUTS}


def container_kwargs(job: StepJob, *, image: str, user: tuple[int, int], network: str | None,
                     owner: str, kernel: tuple[Path, str] | None = None,
                     limits: Limits | None = None) -> dict[str, Any]:
    """The `containers.create()` arguments for one attempt of a step. Pure. `user`: the uid:gid
    it runs as; `kernel`: (host directory, connection file in the container) to run only the
    kernel, else stepmain."""
    step = job.step
    mounts = [_bind(job.workdir, WORK, False), _bind(job.outputs_dir, OUTPUTS, False)]
    if kernel is not None:
        from ..kernels.stepkernel import KERNEL_ARGS

        mounts.append(_bind(kernel[0], KERNEL, False))
        command = [PYTHON, "-m", "mlpipe_jupyter.kernels.stepkernel", "-f", kernel[1], *KERNEL_ARGS]
    else:
        command = [PYTHON, "-m", "mlpipe_jupyter.step.main", f"{STEP}/{JOB_FILE}"]
        mounts += [_bind(job.dir / BOX, STEP, False),
                   _bind(job.notebook, NOTEBOOK, True)]
    mounts += [_bind(path, f"{INPUTS}/{name}", True) for name, path in sorted(job.inputs.items())]
    mounts += [_bind(path, f"{WORK}/{rel.rstrip('/')}", True)
               for rel, path in sorted(job.files.items())]
    limits = limits or Limits(memory=None, pids=default_pids(os.cpu_count() or 1))
    kwargs: dict[str, Any] = {
        "image": image,
        "command": command,
        "name": f"mlpipe-{job.run_id}-{step.name}-{job.attempt}",
        "user": f"{user[0]}:{user[1]}",
        "working_dir": WORK,
        # an arbitrary uid has no home in the image: IPython and Jupyter write under $HOME
        "environment": {"HOME": "/tmp", "PYTHONUNBUFFERED": "1", **job.env},
        "labels": {RUN_LABEL: job.run_id, STEP_LABEL: step.name, OWNER_LABEL: owner,
                   "mlpipe.attempt": str(job.attempt)},
        "mounts": mounts,
        "network_mode": step.network or network or "bridge",
        "init": True,  # tini as pid 1 reaps the kernel and passes signals on
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        "tmpfs": dict(TMPFS),
        "pids_limit": limits.pids,
    }
    if step.cpus:
        kwargs["nano_cpus"] = int(step.cpus * 1e9)
    memory = parse_memory(step.memory, step=step.name) if step.memory else limits.memory
    if memory:
        kwargs["mem_limit"] = memory
        kwargs["memswap_limit"] = memory  # no swap on top: over the limit is out of memory
    if step.gpus:
        kwargs["device_requests"] = [{"count": step.gpus, "capabilities": [["gpu"]]}]
    return kwargs


def collect_garbage(client, *, everything: bool = False, dry_run: bool = False,
                    run_over: Callable[[str], bool] | None = None) -> list[dict[str, str]]:
    """Remove containers left by runners that died (SIGKILL, a crash, a reboot).

    A container is left over when the runner process named by its `mlpipe.owner` label is no
    longer alive on this host (pid, start time and boot id), or when `run_over(run id)` says
    its run has ended (a run store's state: a runner elsewhere judged by its heartbeat).
    Containers of live runners are theirs to remove; containers started from another host are
    otherwise left alone. `everything` removes every mlpipe container, whoever owns it.
    """
    removed = []
    for container in client.containers.list(all=True, filters={"label": RUN_LABEL}):
        labels = container.labels or {}
        alive = owner_alive(labels.get(OWNER_LABEL))
        ended = alive is None and run_over is not None and run_over(labels.get(RUN_LABEL, ""))
        if not everything and alive is not False and not ended:
            continue
        entry = {"name": container.name, "run": labels.get(RUN_LABEL, ""),
                 "step": labels.get(STEP_LABEL, ""), "status": container.status,
                 "why": "its run has ended" if ended else "removed with --all"
                 if everything and alive is not False else "its runner is gone"}
        if not dry_run:
            try:
                container.remove(force=True)
            except Exception as exc:  # removed meanwhile
                from docker.errors import APIError

                if not isinstance(exc, APIError):
                    raise
                continue
        removed.append(entry)
    return removed
