"""REST handlers of the pipeline service under `/mlpipe/api/`.

Authentication is jupyter_server's (the token of `mlpipe serve`, or Jupyter's own inside
`jupyter lab`); a request without credentials gets 401, one with wrong credentials 403, on
every route. Errors are written by server/handlers.py's MlpipeHandler, as every mlpipe route's
are: `{"error": {"error", "message", ...fields}, "message", "reason"}`, with the status the
MlpipeError declares (errors.py). A handler's work (parsing and copying a notebook's files,
SQLite queries that may wait for a lock) runs in a thread pool, never on the event loop.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import NotFound, UsageError
from ..server.handlers import MlpipeHandler
from . import models as m
from . import publish as pub
from .app import PipelineService


class ServiceHandler(MlpipeHandler):
    auth_resource = "mlpipe"
    pool = "mlpipe-service"  # publishing, SQLite: off the event loop (MlpipeHandler.off_loop)
    query_args: frozenset[str] = frozenset()  # what the route takes; anything else is a 400

    async def prepare(self) -> None:  # type: ignore[override]
        # no credentials at all: 401 before Jupyter's checks (its XSRF check would say 403)
        if getattr(self.identity_provider, "auth_enabled", True) and not (
                self.request.headers.get("Authorization") or self.get_argument("token", None)
                or self.request.cookies):
            raise web.HTTPError(401)
        await super().prepare()
        if not self.current_user:
            raise web.HTTPError(403)
        unknown = sorted(set(self.request.query_arguments) - self.query_args - {"token"})
        if unknown:
            known = ", ".join(sorted(self.query_args)) or "none"
            raise UsageError(f"unknown query parameter {', '.join(map(repr, unknown))[:80]} "
                             f"(this route takes: {known})", option=unknown[0][:40])

    def get_login_url(self) -> str:
        raise web.HTTPError(401)

    def error_message(self, status: int, exc: BaseException | None) -> str:
        return {401: "authentication required: send `Authorization: token <TOKEN>`",
                403: "forbidden: the token is wrong"}.get(status) or super().error_message(
                    status, exc)

    def error_headers(self, status: int) -> None:
        if status == 401:
            self.set_header("WWW-Authenticate", "token")
        if status == 405:  # RFC 9110: say which methods the resource has
            self.set_header("Allow", ", ".join(
                m for m in ("GET", "POST", "PATCH", "DELETE")
                if getattr(type(self), m.lower()) is not getattr(web.RequestHandler, m.lower())))

    @property
    def service(self) -> PipelineService:
        """The service, its store opened (created on the first request that needs it)."""
        service: PipelineService = self.settings["mlpipe_service"]
        service.open()
        return service

    def body(self, model: type[m.Strict]) -> Any:
        return m.parse(model, self.request.body)

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def int_arg(self, name: str) -> int | None:
        value = self.get_query_argument(name, None)
        if value is None:
            return None
        try:
            number = int(value)
        except ValueError:
            number = -1
        if not 0 < number < 2**31:
            raise UsageError(f"?{name}={value[:40]}: expected a positive integer", option=name)
        return number


def _id(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 0 < number < 2**63:  # what SQLite can hold; nothing else names a schedule
        raise NotFound(f"no schedule {value[:40]!r}", cause="schedule")
    return number


class PipelinesHandler(ServiceHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.off_loop(lambda: pub.pipelines(self.service.db)))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        def work() -> tuple[dict, bool]:
            req = self.body(m.PublishRequest)
            service = self.service
            return pub.publish(service.db, service.home, service.root, req.notebook,
                               req.name, req.description)

        info, made = await self.off_loop(work)
        self.reply(info, 201 if made else 200)


class PipelineHandler(ServiceHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.reply(await self.off_loop(lambda: pub.pipeline(self.service.db, name)))

    @web.authenticated
    @authorized
    async def patch(self, name: str) -> None:
        req = self.body(m.PipelinePatch)
        self.reply(await self.off_loop(lambda: pub.update(
            self.service.db, name, default_version=req.default_version, enabled=req.enabled)))


class PipelineRunsHandler(ServiceHandler):
    query_args = frozenset({"version"})

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        req = self.body(m.SubmitRequest)
        wanted = self.int_arg("version")
        key = self.request.headers.get("Idempotency-Key") or None

        def work() -> dict:
            service = self.service
            version, params = pub.runnable(service.db, name, wanted, req.ParameterAssignments)
            run_id, _ = service.queue.submit(pipeline=name, version=version, params=params,
                                             experiment=req.ExperimentName, source="rest",
                                             idempotency_key=key)
            service.wake()
            return {"Id": run_id, "Status": service.queue.status(run_id).capitalize()}

        self.reply(await self.off_loop(work), 202)


class RunsHandler(ServiceHandler):
    query_args = frozenset({"pipeline", "experiment", "state", "limit"})

    @web.authenticated
    @authorized
    async def get(self) -> None:
        limit = max(1, min(self.int_arg("limit") or 50, 1000))
        where = {k: self.get_query_argument(k, None) for k in ("pipeline", "experiment", "state")}
        self.reply(await self.off_loop(lambda: self.service.queue.views(**where, limit=limit)))


class RunHandler(ServiceHandler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        self.reply(await self.off_loop(lambda: self.service.queue.view(run_id)))


class RunCancelHandler(ServiceHandler):
    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        def work() -> str:
            state = self.service.queue.cancel(run_id)
            self.service.wake()
            return state

        self.reply({"id": run_id, "state": await self.off_loop(work)}, 202)


def _schedule_fields(req: m.ScheduleRequest | m.SchedulePatch) -> dict[str, Any]:
    data = req.model_dump(exclude_unset=True)
    renames = {"ExperimentName": "experiment", "ParameterAssignments": "params"}
    return {renames.get(k, k): v for k, v in data.items()}


class SchedulesHandler(ServiceHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.off_loop(lambda: self.service.scheduler.list()))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        req = self.body(m.ScheduleRequest)
        fields = _schedule_fields(req)
        fields.setdefault("pipeline", req.pipeline)
        fields.setdefault("cron", req.cron)
        self.reply(await self.off_loop(lambda: self.service.scheduler.create(**fields)), 201)


class ScheduleHandler(ServiceHandler):
    @web.authenticated
    @authorized
    async def get(self, sid: str) -> None:
        number = _id(sid)
        self.reply(await self.off_loop(lambda: self.service.scheduler.get(number)))

    @web.authenticated
    @authorized
    async def patch(self, sid: str) -> None:
        number, fields = _id(sid), _schedule_fields(self.body(m.SchedulePatch))
        self.reply(await self.off_loop(lambda: self.service.scheduler.update(number, **fields)))

    @web.authenticated
    @authorized
    async def delete(self, sid: str) -> None:
        number = _id(sid)
        await self.off_loop(lambda: self.service.scheduler.delete(number))
        self.set_status(204)
        self.finish()


class OpenAPIHandler(ServiceHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        from .openapi import openapi

        self.reply(openapi())


def service_handlers() -> list[tuple[str, type]]:
    base = "/mlpipe/api"
    return [
        (f"{base}/pipelines", PipelinesHandler),
        (f"{base}/pipelines/([^/]+)", PipelineHandler),
        (f"{base}/pipelines/([^/]+)/runs", PipelineRunsHandler),
        (f"{base}/runs", RunsHandler),
        (f"{base}/runs/([^/]+)", RunHandler),
        (f"{base}/runs/([^/]+)/cancel", RunCancelHandler),
        (f"{base}/schedules", SchedulesHandler),
        (f"{base}/schedules/([^/]+)", ScheduleHandler),
        (f"{base}/openapi.json", OpenAPIHandler),
    ]
