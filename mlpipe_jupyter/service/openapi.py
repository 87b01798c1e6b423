"""`GET /mlpipe/api/openapi.json`: OpenAPI 3.1 built from models.py, the models the handlers
validate requests with, and the route table below, the one the handlers are registered from."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import __version__
from . import models as m

BASE = "/mlpipe/api"
RUN_FILTERS = [("pipeline", "string"), ("experiment", "string"), ("state", "string"),
               ("limit", "integer")]
# (path, method, summary, request model, status, response model or [model], query params)
ROUTES: list[tuple[str, str, str, Any, int, Any, list[tuple[str, str]]]] = [
    ("/pipelines", "get", "List published pipelines", None, 200, [m.PipelineSummary], []),
    ("/pipelines", "post", "Publish a notebook as a new version of a pipeline", m.PublishRequest,
     201, m.PipelineVersion, []),
    ("/pipelines/{name}", "get", "A pipeline: versions, default version, enabled", None, 200,
     m.Pipeline, []),
    ("/pipelines/{name}", "patch", "Set the default version or enable/disable", m.PipelinePatch,
     200, m.Pipeline, []),
    ("/pipelines/{name}/runs", "post", "Queue a run (Idempotency-Key header honoured)",
     m.SubmitRequest, 202, m.Submitted, [("version", "integer")]),
    ("/runs", "get", "Runs, newest first", None, 200, [m.Run], RUN_FILTERS),
    ("/runs/{id}", "get", "One run (the `mlpipe show --json` shape)", None, 200, m.Run, []),
    ("/runs/{id}/cancel", "post", "Cancel a queued or running run", None, 202, m.Cancelling,
     []),
    ("/schedules", "get", "List schedules", None, 200, [m.Schedule], []),
    ("/schedules", "post", "Create a cron schedule", m.ScheduleRequest, 201, m.Schedule, []),
    ("/schedules/{id}", "get", "A schedule with its last 50 ticks", None, 200, m.Schedule, []),
    ("/schedules/{id}", "patch", "Change a schedule", m.SchedulePatch, 200, m.Schedule, []),
    ("/schedules/{id}", "delete", "Delete a schedule and its tick log", None, 204, None, []),
    ("/openapi.json", "get", "This document (OpenAPI 3.1)", None, 200, None, []),
]
ERRORS = {"400": "Bad request (names the field or parameter)", "401": "No token given",
          "403": "Wrong token", "404": "Not found", "409": "Conflict (e.g. pipeline disabled)",
          "422": "The notebook is not a valid pipeline"}


def _models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = [m.Error]
    for route in ROUTES:
        for item in (route[3], route[5]):
            model = item[0] if isinstance(item, list) else item
            if model is not None and model not in found:
                found.append(model)
    return found


def openapi() -> dict[str, Any]:
    models = _models()
    pairs = [(model, "validation" if model in _requests() else "serialization")
             for model in models]
    _, schema = models_json_schema(pairs, ref_template="#/components/schemas/{model}")
    refs = {model: {"$ref": f"#/components/schemas/{model.__name__}"} for model in models}
    paths: dict[str, Any] = {}
    for path, method, summary, request, status, response, query in ROUTES:
        params = [{"name": p, "in": "path", "required": True,
                   "schema": {"type": "integer" if p == "id" and "schedules" in path
                              else "string"}}
                  for p in _path_params(path)]
        params += [{"name": q, "in": "query", "required": False, "schema": {"type": kind}}
                   for q, kind in query]
        op: dict[str, Any] = {"summary": summary, "parameters": params,
                              "security": [{"token": []}], "responses": {}}
        if request is not None:
            op["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": refs[request]}}}
        if response is None:
            op["responses"][str(status)] = {"description": "Done"}
        else:
            body = ({"type": "array", "items": refs[response[0]]}
                    if isinstance(response, list) else refs[response])
            op["responses"][str(status)] = {"description": "OK",
                                            "content": {"application/json": {"schema": body}}}
        for code, text in ERRORS.items():
            op["responses"][code] = {"description": text, "content": {
                "application/json": {"schema": refs[m.Error]}}}
        paths.setdefault(BASE + path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "mlpipe pipeline service", "version": __version__},
        "paths": paths,
        "components": {"schemas": schema.get("$defs", {}), "securitySchemes": {
            "token": {"type": "apiKey", "in": "header", "name": "Authorization",
                      "description": "`token <TOKEN>`"}}},
        "security": [{"token": []}],
    }


def _requests() -> set[type[BaseModel]]:
    return {route[3] for route in ROUTES if route[3] is not None}


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
