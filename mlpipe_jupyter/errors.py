"""One exception family. Every error a user can meet is an MlpipeError with structured fields.

`str(err)` is always one line that names the step, option or file involved. Each kind declares
here its HTTP status (the server maps errors with it) and its exit code (the CLI's, one rule for
every command: 2 a usage or spec error, nothing was done; 1 the work did not succeed).
"""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound="MlpipeError")
FIELDS = ("step", "cell", "option", "file", "cause")


class MlpipeError(Exception):
    """Base of every error mlpipe raises on purpose."""

    http_status = 500
    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        step: str | None = None,
        cell: str | None = None,
        option: str | None = None,
        file: str | None = None,
        cause: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.step = step
        self.cell = cell
        self.option = option
        self.file = file
        self.cause = cause

    def __str__(self) -> str:
        return " ".join(self.message.split("\n")[0].split()) or type(self).__name__

    def to_dict(self) -> dict:
        fields = {name: getattr(self, name) for name in FIELDS}
        return {"error": type(self).__name__, "message": str(self),
                **{k: v for k, v in fields.items() if v is not None}}

    def with_context(self: E, where: str, **fields: str | None) -> E:
        """A copy saying where the error happened: message `"<where>: <message>"`, the given
        fields (file=, cell=, ...) set, everything else kept, class and a subclass's own
        attributes included. The constructor is not called again: a subclass may take other
        arguments (StepFailed's ename, StoreDamaged's path)."""
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise TypeError(f"with_context: unknown field {', '.join(unknown)} (known: "
                            f"{', '.join(FIELDS)})")
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__, **fields)
        copy.message = f"{where}: {self.message}"
        copy.args = (copy.message,)
        return copy


class UsageError(MlpipeError):
    """Bad arguments to a magic or a command: nothing was registered or run."""

    http_status = 400
    exit_code = 2


class SpecError(MlpipeError):
    """A pipeline that cannot be assembled: cycle, missing input, duplicate output, ..."""

    http_status = 422
    exit_code = 2


class NotebookError(MlpipeError):
    """A notebook file that cannot be read as a pipeline."""

    http_status = 422
    exit_code = 2


class NotFound(MlpipeError):
    """A run, step, log or artifact that does not exist."""

    http_status = 404
    exit_code = 2


class ExecutorError(MlpipeError):
    """The executor itself could not run a step (no daemon, no kernel, ...)."""

    http_status = 503


class StepFailed(MlpipeError):
    """A step ran and failed. `cell` names the cell of the step notebook that raised."""

    http_status = 500

    def __init__(self, message: str, *, ename: str | None = None, evalue: str | None = None,
                 traceback: str | None = None, **fields) -> None:
        super().__init__(message, **fields)
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.update({k: v for k, v in (("ename", self.ename), ("evalue", self.evalue),
                                      ("traceback", self.traceback)) if v is not None})
        return out


class StepTimeout(StepFailed):
    """A step exceeded its --timeout."""


class Cancelled(MlpipeError):
    """The run was cancelled while the step ran."""

    http_status = 409
