"""The one way the service API writes a time: ISO 8601 with its offset, to the millisecond
(`2026-11-30T03:18:08.123+00:00`); UTC unless a schedule's own time zone is asked for."""

from __future__ import annotations

from datetime import datetime, timezone, tzinfo


def iso(ts: float | None, zone: tzinfo | None = None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, zone or timezone.utc).isoformat(timespec="milliseconds")


def restamp(run: dict) -> dict:
    """A run as the run store shows it (local times without an offset, `mlpipe show`'s) with
    its times and its steps' times written as `iso` writes them."""
    def again(value: str | None) -> str | None:
        if not value:
            return value
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.astimezone()  # a naive time of the run store is local
        return iso(moment.timestamp())

    run["started"], run["finished"] = again(run.get("started")), again(run.get("finished"))
    for step in run.get("steps") or []:
        step["started"], step["finished"] = again(step.get("started")), again(step.get("finished"))
    return run
