"""REST handlers under `/mlpipe/api/`. Every handler is authenticated and authorized as the
resource it exposes; `MlpipeError` becomes its `http_status` here and nowhere else."""

from __future__ import annotations

import json
from pathlib import Path

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from ..errors import MlpipeError
from .records import record_model


class MlpipeHandler(ExtensionHandlerMixin, APIHandler):
    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, MlpipeError):
            self.set_status(exc.http_status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"message": str(exc), "reason": type(exc).__name__}))
            return
        super().write_error(status_code, **kwargs)

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, MlpipeError):
            self.send_error(e.http_status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

    @property
    def root_dir(self) -> Path:
        return Path(self.serverapp.root_dir)


class RecordHandler(MlpipeHandler):
    """GET /mlpipe/api/records/<path>: a run record as a read-only contents model."""

    auth_resource = "contents"  # reading a record is reading a file under the server's root

    @web.authenticated
    @authorized
    def get(self, path: str) -> None:
        content = self.get_query_argument("content", "1") not in ("0", "false")
        self.finish(json.dumps(record_model(self.root_dir, path, content=content)))


def handlers() -> list[tuple[str, type]]:
    return [(r"/mlpipe/api/records/(.+)", RecordHandler)]
