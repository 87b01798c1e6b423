"""The jupyter_server extension: REST under `/mlpipe/api/`."""

from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp

from .handlers import handlers


class MlpipeServer(ExtensionApp):
    name = "mlpipe_jupyter"

    def initialize_handlers(self) -> None:
        self.handlers.extend(handlers())
