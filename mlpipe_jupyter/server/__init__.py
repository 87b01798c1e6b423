"""The jupyter_server extension: REST under `/mlpipe/api/` for the widget and the Lab
extension (a step's records, read through the run store's checks)."""

from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp
from traitlets import Int

from .handlers import handlers
from .records import MAX_RECORD_SIZE


class MlpipeServer(ExtensionApp):
    name = "mlpipe_jupyter"

    max_record_size = Int(MAX_RECORD_SIZE, min=0, config=True,
                          help="The largest run record served with its content, in bytes; "
                               "a larger one is refused (413) without being read.")

    def initialize_settings(self) -> None:
        from ..service.app import attach  # the pipeline service: publish, queue, schedules

        attach(self)

    def initialize_handlers(self) -> None:
        from ..service.handlers import service_handlers

        self.handlers.extend(handlers())
        self.handlers.extend(service_handlers())

    async def stop_extension(self) -> None:
        self.settings["mlpipe_service"].stop()
