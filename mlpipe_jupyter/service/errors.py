"""The service's own error kinds: still MlpipeErrors, so their HTTP status is declared with them
and the handlers map every error in one place."""

from __future__ import annotations

from ..errors import MlpipeError, UsageError


class Conflict(MlpipeError):
    """The request is fine but the resource's state refuses it (a disabled pipeline, ...)."""

    http_status = 409
    exit_code = 2  # the request was refused, as a usage error is


class BadParameters(UsageError):
    """ParameterAssignments with unknown names or values of the wrong type: all of them named."""

    def __init__(self, message: str, *, parameters: list[str]) -> None:
        super().__init__(message, option=", ".join(parameters))
        self.parameters = parameters

    def to_dict(self) -> dict:
        return {**super().to_dict(), "parameters": self.parameters}
