"""REST handlers of the pipeline service under `/mlpipe/api/`.

Authentication is jupyter_server's (the token of `mlpipe serve`, or Jupyter's own inside
`jupyter lab`); a request without credentials gets 401, one with wrong credentials 403, on
every route. Errors are `{"error": {"message", "error", ...fields}}` with the status the
MlpipeError declares (errors.py).
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import MlpipeError, NotFound, UsageError
from ..server.handlers import MlpipeHandler
from . import models as m
from . import publish as pub
from .app import PipelineService


class ServiceHandler(MlpipeHandler):
    auth_resource = "mlpipe"
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

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, MlpipeError):
            status, body = exc.http_status, exc.to_dict()
            body = {**body, "error": type(exc).__name__}
        else:
            status = status_code
            reason = getattr(exc, "log_message", None) or self._reason
            body = {"error": "HTTPError", "message": {
                401: "authentication required: send `Authorization: token <TOKEN>`",
                403: "forbidden: the token is wrong"}.get(status_code, reason)}
        if status == 401:
            self.set_header("WWW-Authenticate", "token")
        if status == 405:  # RFC 9110: say which methods the resource has
            self.set_header("Allow", ", ".join(
                m for m in ("GET", "POST", "PATCH", "DELETE")
                if getattr(type(self), m.lower()) is not web.RequestHandler._unimplemented_method))
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": body}))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, MlpipeError):
            self.send_error(e.http_status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

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
    def get(self) -> None:
        self.reply(pub.pipelines(self.service.db))

    @web.authenticated
    @authorized
    def post(self) -> None:
        req = self.body(m.PublishRequest)
        info, made = pub.publish(self.service.db, self.service.home, self.service.root,
                                 req.notebook, req.name, req.description)
        self.reply(info, 201 if made else 200)


class PipelineHandler(ServiceHandler):
    @web.authenticated
    @authorized
    def get(self, name: str) -> None:
        self.reply(pub.pipeline(self.service.db, name))

    @web.authenticated
    @authorized
    def patch(self, name: str) -> None:
        req = self.body(m.PipelinePatch)
        self.reply(pub.update(self.service.db, name, default_version=req.default_version,
                              enabled=req.enabled))


class PipelineRunsHandler(ServiceHandler):
    query_args = frozenset({"version"})

    @web.authenticated
    @authorized
    def post(self, name: str) -> None:
        req = self.body(m.SubmitRequest)
        version, params = pub.runnable(self.service.db, name, self.int_arg("version"),
                                       req.ParameterAssignments)
        key = self.request.headers.get("Idempotency-Key") or None
        run_id, _ = self.service.queue.submit(pipeline=name, version=version, params=params,
                                              experiment=req.ExperimentName, source="rest",
                                              idempotency_key=key)
        self.service.wake()
        self.reply({"Id": run_id, "Status": self.service.queue.status(run_id).capitalize()}, 202)


class RunsHandler(ServiceHandler):
    query_args = frozenset({"pipeline", "experiment", "state", "limit"})

    @web.authenticated
    @authorized
    def get(self) -> None:
        limit = self.int_arg("limit") or 50
        self.reply(self.service.queue.views(
            pipeline=self.get_query_argument("pipeline", None),
            experiment=self.get_query_argument("experiment", None),
            state=self.get_query_argument("state", None), limit=max(1, min(limit, 1000))))


class RunHandler(ServiceHandler):
    @web.authenticated
    @authorized
    def get(self, run_id: str) -> None:
        self.reply(self.service.queue.view(run_id))


class RunCancelHandler(ServiceHandler):
    @web.authenticated
    @authorized
    def post(self, run_id: str) -> None:
        state = self.service.queue.cancel(run_id)
        self.service.wake()
        self.reply({"id": run_id, "state": state}, 202)


def _schedule_fields(req: m.ScheduleRequest | m.SchedulePatch) -> dict[str, Any]:
    data = req.model_dump(exclude_unset=True)
    renames = {"ExperimentName": "experiment", "ParameterAssignments": "params"}
    return {renames.get(k, k): v for k, v in data.items()}


class SchedulesHandler(ServiceHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.reply(self.service.scheduler.list())

    @web.authenticated
    @authorized
    def post(self) -> None:
        req = self.body(m.ScheduleRequest)
        fields = _schedule_fields(req)
        fields.setdefault("pipeline", req.pipeline)
        fields.setdefault("cron", req.cron)
        self.reply(self.service.scheduler.create(**fields), 201)


class ScheduleHandler(ServiceHandler):
    @web.authenticated
    @authorized
    def get(self, sid: str) -> None:
        self.reply(self.service.scheduler.get(_id(sid)))

    @web.authenticated
    @authorized
    def patch(self, sid: str) -> None:
        req = self.body(m.SchedulePatch)
        self.reply(self.service.scheduler.update(_id(sid), **_schedule_fields(req)))

    @web.authenticated
    @authorized
    def delete(self, sid: str) -> None:
        self.service.scheduler.delete(_id(sid))
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
