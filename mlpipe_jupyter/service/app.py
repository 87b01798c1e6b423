"""The pipeline service: one loop thread that starts queued runs (each in its own process) and
fires schedules, configured by traitlets (`--PipelineService.max_concurrent_runs=4`).

It lives in whatever jupyter_server loads the `mlpipe_jupyter` extension (`mlpipe serve`,
`jupyter lab`, `jupyter server`). Nothing is created on disk until the first publish, unless a
service store is already there: then the queue and the schedules resume at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from traitlets import Float, Int, Unicode
from traitlets.config import LoggingConfigurable

from ..home import Home
from .db import ServiceDB
from .queue import RunQueue
from .scheduler import Scheduler


class PipelineService(LoggingConfigurable):
    max_concurrent_runs = Int(2, config=True, help="Runs executing at once; the rest wait, "
                              "first in first out.")
    executor = Unicode("", config=True, help="Executor of service runs (docker, local); empty: "
                       "as `mlpipe run` chooses ([tool.mlpipe], MLPIPE_EXECUTOR, docker if it "
                       "answers).")
    poll_interval = Float(0.25, config=True, help="Seconds between looks at the queue and "
                          "the schedules.")

    def setup(self, root: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root).resolve()
        self.home = Home.for_dir(self.root)
        self.clock = clock
        self._db: ServiceDB | None = None
        self._opened = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.path.exists():
            self.open()

    @property
    def path(self) -> Path:
        return self.home.root / "service.db"

    def open(self) -> ServiceDB:
        """The service store, created (and the loop started) on first use."""
        with self._opened:
            if self._db is None:
                self.home.ensure()
                self._db = ServiceDB(self.path)
                self.queue = RunQueue(self._db, self.home,
                                      max_concurrent=self.max_concurrent_runs,
                                      executor=self.executor or None)
                self.scheduler = Scheduler(self._db, self.queue, clock=self.clock)
                self.queue.recover()
                self._thread = threading.Thread(target=self._loop, name="mlpipe-service",
                                                daemon=True)
                self._thread.start()
        return self._db

    @property
    def db(self) -> ServiceDB:
        return self.open()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        log = self.log if self.log is not None else logging.getLogger("mlpipe_jupyter")
        while not self._stop.is_set():
            try:
                self.scheduler.tick()
                self.queue.poll()
            except Exception:  # a bad row must not stop the service; said in its log
                log.exception("mlpipe service loop")
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def stop(self) -> None:
        """Stop the loop. Runs in progress go on in their own processes: the next service
        started on this store adopts them (or records them failed if they died meanwhile)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._db is not None:
            self.queue.close()
            self._db.close()
        if self.log is not None:
            self.log.info("mlpipe service stopped (runs in progress go on in their processes)")


def attach(extension) -> PipelineService:
    """Give a loaded `mlpipe_jupyter` extension its service (config: its own traitlets)."""
    service = PipelineService(parent=extension)
    service.setup(extension.serverapp.root_dir)
    extension.settings["mlpipe_service"] = service
    service.log.info("mlpipe service: store %s, max_concurrent_runs=%d, executor=%s",
                     service.path, service.max_concurrent_runs, service.executor or "default")
    return service
