"""Request and response bodies of the REST API (pydantic v2). The handlers validate with these
models and `openapi()` describes the API from the very same models, so the two cannot drift."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import UsageError
from ..model.states import StepState as S

PipelineName = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PublishRequest(Strict):
    notebook: str = Field(min_length=1, description="A .ipynb path relative to the root.")
    name: str = PipelineName
    description: str | None = None


class PipelinePatch(Strict):
    default_version: int | None = Field(default=None, ge=1, lt=2**31)
    enabled: bool | None = None


class SubmitRequest(Strict):
    ExperimentName: str | None = None
    ParameterAssignments: dict[str, Any] = Field(default_factory=dict)


class ScheduleRequest(Strict):
    pipeline: str = PipelineName
    cron: str = Field(min_length=1, description="Five cron fields, e.g. `0 3 * * *`.")
    timezone: str = "UTC"
    version: int | None = Field(default=None, ge=1, lt=2**31,
                                description="None: the default version when the tick fires.")
    ExperimentName: str | None = None
    ParameterAssignments: dict[str, Any] = Field(default_factory=dict)
    catchup: Literal["none", "latest", "all"] = "none"
    overlap: Literal["allow", "skip", "replace"] = "allow"
    enabled: bool = True


class SchedulePatch(Strict):
    cron: str | None = Field(default=None, min_length=1)
    timezone: str | None = None
    version: int | None = Field(default=None, ge=1, lt=2**31)
    ExperimentName: str | None = None
    ParameterAssignments: dict[str, Any] | None = None
    catchup: Literal["none", "latest", "all"] | None = None
    overlap: Literal["allow", "skip", "replace"] | None = None
    enabled: bool | None = None


# -- responses (documented; the handlers build them as dicts) --------------------------------
class Step(BaseModel):
    name: str
    inputs: list[str]
    outputs: list[str]
    after: list[str]


class PipelineVersion(BaseModel):
    name: str
    version: int
    id: str
    created: str
    notebook: str | None
    description: str | None
    parameters: dict[str, Any]
    steps: list[Step]
    files: list[str]
    default: bool
    endpoint: str


class PipelineSummary(BaseModel):
    name: str
    description: str | None
    default_version: int | None
    versions: int
    enabled: bool
    created: str | None
    endpoint: str


class Pipeline(BaseModel):
    name: str
    description: str | None
    default_version: int | None
    enabled: bool
    created: str | None
    versions: list[PipelineVersion]
    endpoint: str


class Submitted(BaseModel):
    Id: str
    Status: str


class RunStep(BaseModel):
    name: str
    state: str
    reason: str | None = None
    started: str | None = None
    finished: str | None = None
    error: dict[str, Any] | None = None


class Run(BaseModel):
    id: str
    state: Literal[S.QUEUED, S.RUNNING, S.SUCCEEDED, S.FAILED, S.CANCELLED]  # a run's states
    reason: str | None
    notebook: str | None
    started: str | None
    finished: str | None
    params: dict[str, Any]
    pipeline: str | None
    version: int | None
    experiment: str | None
    source: str | None
    steps: list[RunStep]


class Cancelling(BaseModel):
    id: str
    state: str


class Tick(BaseModel):
    scheduled_for: str
    fired_at: str
    outcome: Literal["started", "skipped_overlap", "missed", "failed_to_start"]
    run_id: str | None
    reason: str | None
    lateness: float


class Schedule(BaseModel):
    id: int
    pipeline: str
    version: int | None
    cron: str
    timezone: str
    ExperimentName: str | None
    ParameterAssignments: dict[str, Any]
    catchup: str
    overlap: str
    enabled: bool
    created: str | None
    next_run: str | None
    ticks: list[Tick] | None = None


class ErrorBody(BaseModel):
    """The error's structured fields (MlpipeError.to_dict()): its kind, its one-line message,
    and what it names when it names something."""

    error: str = Field(description="The kind: UsageError, NotFound, Conflict, ...; HTTPError "
                       "for what the web server itself refuses (401, 403, 405, ...).")
    message: str
    step: str | None = None
    cell: str | None = None
    option: str | None = Field(default=None, description="The option, field or query "
                               "parameter refused.")
    file: str | None = None
    cause: str | None = None
    parameters: list[str] | None = Field(default=None, description="BadParameters: every "
                                         "parameter refused.")


class Error(BaseModel):
    error: ErrorBody
    message: str = Field(description="The same line as error.message (what JupyterLab shows).")
    reason: str = Field(description="The kind again, or the HTTP reason phrase.")


def parse(model: type[Strict], body: bytes) -> Strict:
    """The request body as `model`, or one UsageError (400) naming every bad field."""
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as err:
        problems = []
        for item in err.errors():
            where = ".".join(str(p) for p in item["loc"]) or "body"
            problems.append(f"{where}: {item['msg']}")
        raise UsageError("request body: " + "; ".join(problems),
                         option=",".join(str(i["loc"][0]) for i in err.errors() if i["loc"])
                         or None) from None
