"""The states of a step and of a run: one enum, the only place their names are written.

A run moves through a subset of the same states (queued, running, then succeeded, failed or
cancelled), so both use StepState. Members are `str`s: they compare equal to, and serialize as,
the names stored in mlpipe.db, sent to the widget and returned over REST.
"""

from __future__ import annotations

from enum import Enum


class StepState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CACHED = "cached"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    def __str__(self) -> str:  # f"{state}" is the name users see, on every Python version
        return self.value

    def __repr__(self) -> str:  # `run.status` in a notebook cell shows 'failed', as it did
        return repr(self.value)

    @property
    def is_final(self) -> bool:
        """It will not change again in this run."""
        return self in _FINAL

    @property
    def is_ok(self) -> bool:
        """Its outputs can be used: it ran and succeeded, or an earlier result was reused."""
        return self in _OK


_FINAL = frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.CACHED, StepState.SKIPPED,
                    StepState.CANCELLED})
_OK = frozenset({StepState.SUCCEEDED, StepState.CACHED})


def is_final(state: str) -> bool:
    """For a state read back as text (the store, a REST body): unknown text is not final."""
    return state in _FINAL


def is_ok(state: str) -> bool:
    return state in _OK
