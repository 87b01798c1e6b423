"""A fan-out step's worker: one kernel the runner sends code to, one execute request at a time
(run/foreach.py says why requests and not a notebook per batch).

An executor opens workers (Executor.open_worker); each is a started kernel this module talks to
through a blocking jupyter_client: `run(code, timeout)` returns what the request did, the
kernel's printed lines go to the step's log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

from ..run.stepbook import _error_line, _strip_ansi
from ..step.lines import LineBuffer

POLL = 0.1  # seconds between looks at a silent kernel: is it still alive, is time up


@dataclass(frozen=True)
class Reply:
    """What one execute request did: ok, or the exception it raised."""

    ok: bool
    ename: str = ""
    evalue: str = ""
    traceback: str = ""

    @property
    def line(self) -> int | None:
        """The line of the failing request's code (IPython's `Cell In[n], line L`)."""
        return _error_line(self.traceback) if self.traceback else None


class WorkerTimeout(Exception):
    """A request outlived its deadline: the worker is killed and replaced."""


class WorkerLost(Exception):
    """The worker's kernel is gone (stopped by a cancel or a timeout, or it died)."""


@dataclass(eq=False)
class KernelWorker:
    """A started kernel (`connection`: its connection info) with a blocking client."""

    connection: dict[str, Any]
    log: Callable[[str], None]
    alive: Callable[[], bool]
    kill: Callable[[], None]  # SIGKILL the kernel; any thread
    release: Callable[[], None]  # stop the kernel gracefully once done
    scratch: Path  # where this worker's batch results are written before they are kept
    seen: Callable[[Path], str] = str  # a path under `scratch` as the worker's kernel sees it
    settle: Callable[[Path], None] = lambda path: None  # a result written, before it is read
    _kc: Any = field(default=None, repr=False)
    _lines: LineBuffer = field(default_factory=LineBuffer, repr=False)

    def start(self, timeout: float = 60) -> KernelWorker:
        from jupyter_client.blocking import BlockingKernelClient

        self._kc = BlockingKernelClient()
        self._kc.load_connection_info(self.connection)
        self._kc.start_channels(stdin=False, hb=False, control=False)
        self._kc.wait_for_ready(timeout=timeout)
        return self

    def run(self, code: str, timeout: float | None = None) -> Reply:
        """Execute `code` and wait for its reply, forwarding what it prints. Not
        jupyter_client's execute_interactive: that waits on a killed kernel until its timeout,
        and a request without one would wait for good. WorkerTimeout after `timeout` s,
        WorkerLost once the kernel is gone."""
        msg_id = self._kc.execute(code, store_history=True, allow_stdin=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise WorkerTimeout(f"no reply in {timeout:g} s")
            try:
                msg = self._kc.get_iopub_msg(timeout=POLL)
            except Empty:
                if not self.alive():
                    raise WorkerLost("the worker's kernel is gone") from None
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                for line in self._lines.feed(msg["content"]["text"]):
                    self.log(line)
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        for line in self._lines.flush():
            self.log(line)
        while True:  # the reply was sent before idle: it is there
            reply = self._kc.get_shell_msg(timeout=10)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        content = reply["content"]
        if content.get("status") == "ok":
            return Reply(True)
        return Reply(False, content.get("ename", "Error"), content.get("evalue", ""),
                     _strip_ansi("\n".join(content.get("traceback", []))))

    def close(self, *, kill: bool = False) -> None:
        if self._kc is not None:
            self._kc.stop_channels()
            self._kc = None
        if kill or not self.alive():
            self.kill()
        else:
            self.release()
