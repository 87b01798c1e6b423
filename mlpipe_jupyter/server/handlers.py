"""REST handlers under `/mlpipe/api/`. Every handler is authenticated and authorized as the
resource it exposes; `MlpipeError` becomes its `http_status` here and nowhere else, with its
structured fields: `{"error": err.to_dict(), "message": ..., "reason": ...}` (`message` is what
JupyterLab's `ResponseError` shows)."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import httputil, web
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError

from ..errors import MlpipeError
from .records import MAX_RECORD_SIZE, NOTEBOOK_MIMETYPE, open_record, read_record

T = TypeVar("T")

CHUNK = 1 << 20
# What may block (a slow or remote disk, a lease another process holds, SQLite waiting for a
# lock) runs in threads, never on the event loop: a small pool per kind of work (records, the
# service), so one kind cannot take the threads of another or of jupyter_server's own.
_POOLS: dict[str, ThreadPoolExecutor] = {}


def _pool(name: str) -> ThreadPoolExecutor:
    if name not in _POOLS:  # only the event loop's thread calls this
        _POOLS[name] = ThreadPoolExecutor(max_workers=4, thread_name_prefix=name)
    return _POOLS[name]


def error_body(err: MlpipeError) -> dict:
    return {"error": err.to_dict(), "message": str(err), "reason": type(err).__name__}


def reason_phrase(status: int, exc: BaseException | None) -> str:
    """The HTTP reason of an error reply: the one an HTTPError gives, else the standard one."""
    return getattr(exc, "reason", None) or httputil.responses.get(status, "Unknown")


class MlpipeHandler(ExtensionHandlerMixin, APIHandler):
    """Every mlpipe route's errors are written here, in one shape: `{"error": {"error": kind,
    "message", ...fields}, "message", "reason"}`. An MlpipeError gives its `http_status` and
    its fields (`to_dict()`); any other error (tornado's HTTPError: 401, 404, 405, ...) its
    status and one line, never a traceback."""

    pool: ClassVar[str] = "mlpipe"  # the threads off_loop uses (see _pool)

    async def off_loop(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` in this handler's threads, never on jupyter_server's event loop."""
        return await IOLoop.current().run_in_executor(_pool(self.pool), work, *args)

    def error_message(self, status: int, exc: BaseException | None) -> str:
        """The line an error that is not an MlpipeError shows (subclasses word their own)."""
        return getattr(exc, "log_message", None) or reason_phrase(status, exc)

    def error_headers(self, status: int) -> None:
        """Headers an error reply of `status` carries (subclasses add theirs)."""

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, MlpipeError):
            status, body = exc.http_status, error_body(exc)
        else:
            status = status_code
            message = self.error_message(status_code, exc)
            body = {"error": {"error": "HTTPError", "message": message}, "message": message,
                    "reason": reason_phrase(status_code, exc)}
        self.set_status(status)
        self.error_headers(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, MlpipeError):  # an answer, not a bug: one line, no traceback
            self.log.warning("%s %s: %d %s", self.request.method, self.request.path,
                             value.http_status, value)
            return
        super().log_exception(typ, value, tb)

    @property
    def root_dir(self) -> Path:
        return Path(self.serverapp.root_dir)


class RecordHandler(MlpipeHandler):
    """GET /mlpipe/api/records/<path>: a run record as a read-only contents model. The file is
    opened and read in a worker thread (its own pool), refused (413) unread when it is larger than
    `MlpipeServer.max_record_size`, and its bytes are sent as the model's content as they are
    (checked to be JSON first), a chunk at a time, never parsed and serialised again."""

    pool = "mlpipe-records"

    auth_resource = "contents"  # reading a record is reading a file under the server's root

    @property
    def max_record_size(self) -> int:
        return getattr(self.extensionapp, "max_record_size", MAX_RECORD_SIZE)

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        content = self.get_query_argument("content", "1") not in ("0", "false")
        record = await self.off_loop(open_record, self.root_dir, path)
        try:
            model = record.model()
            if not content:
                self.finish(json.dumps(model))
                return
            raw = await self.off_loop(read_record, record, self.max_record_size)
        finally:
            record.close()
        model.update(format="json", mimetype=NOTEBOOK_MIMETYPE)
        del model["content"]
        head = json.dumps(model).encode()[:-1] + b', "content": '
        self.set_header("Content-Type", "application/json")
        self.set_header("Content-Length", str(len(head) + len(raw) + 1))
        view = memoryview(raw)
        try:
            self.write(head)
            for start in range(0, len(view), CHUNK):
                self.write(bytes(view[start:start + CHUNK]))
                await self.flush()  # waits for the client: one chunk buffered at a time
            self.finish(b"}")
        except StreamClosedError:  # the client went away
            return


def handlers() -> list[tuple[str, type]]:
    return [(r"/mlpipe/api/records/(.+)", RecordHandler)]
