"""What runners that died leave behind, found and removed without `mlpipe gc`.

`reap(store)` is the explicit recovery step that `mlpipe run` (PipelineRunner), `mlpipe runs`,
`mlpipe show` and the service call; opening a RunStore never recovers. `reap_home(home)` is the
same step for a reader: the store is written only when there is a run to fail. It
- fails the runs still `running` whose runner is gone (store.recover_interrupted: pid, start
  time and boot id on this host, the heartbeat anywhere);
- removes scratch directories (kernel logs, connection files, sockets) of runners that are gone;
- removes the containers of runners that are gone (containers.collect_garbage), when a Docker
  daemon is there and a run that used it was just found dead, or `docker=True`. `mlpipe runs`
  imports no Docker SDK otherwise, so it stays fast.
A store that cannot be written (read-only, someone else's) is still listed: recovery is skipped.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MlpipeError, NotFound
from ..home import Home
from ..model.states import is_final

log = logging.getLogger("mlpipe_jupyter")


@dataclass
class Reaped:
    runs: list[str] = field(default_factory=list)
    scratch: list[Path] = field(default_factory=list)
    containers: list[dict[str, str]] = field(default_factory=list)


def docker_socket_there() -> bool:
    address = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return not address.startswith("unix://") or os.path.exists(address[len("unix://"):])


def run_over(store):
    """For collect_garbage: whether the run `run_id` of `store` has ended (None: unknown)."""
    def over(run_id: str) -> bool:
        try:
            return is_final(store.run(run_id)["state"])
        except MlpipeError:  # not in this store, or unreadable: not ours to judge
            return False
    return over


def reap(store, *, docker: bool | None = None) -> Reaped:
    from ..kernels.scratch import sweep

    done = Reaped()
    try:
        done.runs = store.recover_interrupted()
    except MlpipeError as err:  # read-only, locked: what is recorded is shown as it is
        log.info("runs of dead runners not recovered: %s", err)
    done.scratch = sweep()
    if docker is None:
        docker = any(_executor(store, run_id) == "docker" for run_id in done.runs)
    if docker and docker_socket_there():
        with contextlib.suppress(MlpipeError):
            from ..executors.containers import collect_garbage
            from ..executors.docker import connect

            client = connect(timeout=10)
            try:
                done.containers = collect_garbage(client, run_over=run_over(store))
            except Exception as exc:  # the daemon went away meanwhile: next time
                log.info("containers of dead runners not removed: %s", exc)
            finally:
                client.close()
    return done


def reap_home(home: Home, *, docker: bool | None = None) -> Reaped:
    """reap() for the store of `home`, opened for writing only when one of its runs has a
    runner that died (or `docker`): listing runs otherwise writes nothing."""
    from ..kernels.scratch import sweep
    from .store import RunStore

    reader = RunStore(home.db, readonly=True)
    try:
        dead = reader.interrupted()
    finally:
        reader.close()
    if not dead and not docker:
        return Reaped(scratch=sweep())
    store = RunStore(home.db)
    try:
        return reap(store, docker=docker)
    finally:
        store.close()


def _executor(store, run_id: str) -> str | None:
    try:
        return store.run(run_id)["executor"]
    except NotFound:
        return None
