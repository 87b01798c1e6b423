"""`mlpipe serve` and the service's client commands: publish, pipelines, submit, schedule.

The client commands always talk to a running service (`--url`, else $MLPIPE_URL, else
http://127.0.0.1:8765; token from $MLPIPE_TOKEN): queued runs and schedules need the service's
process to run them, so there is no serverless mode. Only the standard library's urllib is
used, so the commands start as fast as the rest of the CLI. Exit codes follow the rule of every
`mlpipe` command (cli.py): 0 done; 1 the run did not succeed (`submit --wait`) or the service
failed (a 5xx reply); 2 a usage error or a request the service refused (a 4xx reply: a bad
parameter, an unknown pipeline, run or schedule); and 3 when no service answers.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

DEFAULT_URL = "http://127.0.0.1:8765"
WIDTH = 80


class Client:
    def __init__(self, url: str | None) -> None:
        self.url = (url or os.environ.get("MLPIPE_URL") or DEFAULT_URL).rstrip("/")
        self.token = os.environ.get("MLPIPE_TOKEN", "")

    def call(self, method: str, path: str, body: Any = None) -> Any:
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"token {self.token}"
        request = urllib.request.Request(f"{self.url}/mlpipe/api/{path}", data=data,
                                         headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                raw = reply.read()
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                message = json.loads(raw)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode(errors="replace")[:200] or err.reason
            hint = " (set MLPIPE_TOKEN)" if err.code in (401, 403) else ""
            click.echo(f"error: {err.code}: {message}{hint}", err=True)
            sys.exit(1 if err.code >= 500 else 2)
        except OSError as err:
            click.echo(f"error: no mlpipe service answers at {self.url} ({err}); start one "
                       "with `mlpipe serve`, or set --url / MLPIPE_URL", err=True)
            sys.exit(3)
        return json.loads(raw) if raw else None


def _params(pairs: tuple[str, ...]) -> dict[str, Any]:
    from ..errors import MlpipeError
    from ..model.codeinfo import parse_assignments

    try:
        return parse_assignments(list(pairs))
    except MlpipeError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)


def _out(data: Any, as_json: bool, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for line in lines:
        click.echo(line if len(line) <= WIDTH else line[:WIDTH - 3] + "...")


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]


URL = click.option("--url", default=None, help="The service (default: $MLPIPE_URL, else "
                   f"{DEFAULT_URL}).")
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
PARAM = click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
                     help="A parameter assignment (value parsed as a Python literal).")


@click.command()
@click.option("--ip", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--root", default=".", type=click.Path(file_okay=False, exists=True),
              help="Notebooks are published from under it; the store is $MLPIPE_HOME or "
              "ROOT/.mlpipe.")
@click.option("--max-concurrent-runs", type=int, default=None, metavar="N",
              help="Runs at once (default 2).")
@click.option("--executor", default=None, help="Executor of the service's runs: docker, "
              "local, or one an installed package registers (default: as `mlpipe run` "
              "chooses).")
@click.option("--allow-root", is_flag=True, help="Run even as root (Jupyter refuses to).")
def serve(ip, port, root, max_concurrent_runs, executor, allow_root):
    """Serve the pipeline REST API: publish, runs, schedules (Ctrl-C stops)."""
    from ..service.serve import serve as run_server

    run_server(ip=ip, port=port, root=root, max_concurrent_runs=max_concurrent_runs,
               executor=executor, allow_root=allow_root, echo=click.echo)


@click.command()
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="The pipeline's name.")
@click.option("--description", default=None)
@URL
@JSON
def publish(notebook, name, description, url, as_json):
    """Publish NOTEBOOK (a path under the service's root) as pipeline NAME."""
    rel = notebook
    if Path(notebook).is_absolute():
        click.echo("error: give the notebook's path relative to the service's --root",
                   err=True)
        sys.exit(2)
    found = Client(url).call("POST", "pipelines", {"notebook": rel, "name": name,
                                                   "description": description})
    params = ", ".join(f"{k}={v!r}" for k, v in found["parameters"].items()) or "none"
    _out(found, as_json, [f"{found['name']} v{found['version']} (default)  steps: "
                          f"{len(found['steps'])}  parameters: {params}",
                          f"endpoint: {found['endpoint']}"])


@click.command()
@URL
@JSON
def pipelines(url, as_json):
    """List published pipelines."""
    found = Client(url).call("GET", "pipelines")
    rows = [("name", "default", "versions", "enabled")] + [
        (p["name"], f"v{p['default_version']}", str(p["versions"]),
         "yes" if p["enabled"] else "no") for p in found]
    _out(found, as_json, _table(rows) if found else ["no pipelines published"])


@click.command()
@click.argument("name")
@PARAM
@click.option("--experiment", default=None, help="ExperimentName to file the run under.")
@click.option("--version", "version", type=int, default=None, help="Default: the default.")
@click.option("--wait", is_flag=True, help="Wait for the run to end; exit 1 unless it "
              "succeeded.")
@URL
@JSON
def submit(name, params, experiment, version, wait, url, as_json):
    """Queue a run of pipeline NAME."""
    from ..model.states import StepState, is_final

    client = Client(url)
    path = f"pipelines/{name}/runs" + (f"?version={version}" if version else "")
    reply = client.call("POST", path, {"ExperimentName": experiment,
                                       "ParameterAssignments": _params(params)})
    if not wait:
        _out(reply, as_json, [f"run {reply['Id']} {reply['Status'].lower()}"])
        return
    if not as_json:
        click.echo(f"run {reply['Id']} queued")
    while True:
        run = client.call("GET", f"runs/{reply['Id']}")
        if is_final(run["state"]):
            break
        time.sleep(0.5)
    lines = [f"run {run['id']} {run['state']}" + (f": {run['reason']}" if run["reason"]
                                                   else "")]
    lines += [f"  {s['name']:<20} {s['state']:<10} {s['reason'] or ''}" for s in run["steps"]]
    _out(run, as_json, lines)
    sys.exit(0 if run["state"] == StepState.SUCCEEDED else 1)


@click.group()
def schedule() -> None:
    """Cron schedules of published pipelines."""


@schedule.command("add")
@click.argument("name")
@click.option("--cron", required=True, help='Five fields, e.g. "0 3 * * *".')
@click.option("--timezone", default="UTC", show_default=True, help="An IANA time zone.")
@PARAM
@click.option("--experiment", default=None)
@click.option("--catchup", type=click.Choice(["none", "latest", "all"]), default="none",
              show_default=True, help="Ticks missed while the service was down.")
@click.option("--overlap", type=click.Choice(["allow", "skip", "replace"]), default="allow",
              show_default=True, help="When the previous run is still active.")
@URL
@JSON
def schedule_add(name, cron, timezone, params, experiment, catchup, overlap, url, as_json):
    """Run pipeline NAME on a cron schedule."""
    found = Client(url).call("POST", "schedules", {
        "pipeline": name, "cron": cron, "timezone": timezone, "ExperimentName": experiment,
        "ParameterAssignments": _params(params), "catchup": catchup, "overlap": overlap})
    _out(found, as_json, [f"schedule {found['id']}: {name} at {cron!r} {timezone}",
                          f"next run: {found['next_run']}"])


@schedule.command("list")
@URL
@JSON
def schedule_list(url, as_json):
    """List schedules."""
    found = Client(url).call("GET", "schedules")
    rows = [("id", "pipeline", "cron", "timezone", "next run")] + [
        (str(s["id"]), s["pipeline"], s["cron"], s["timezone"],
         (s["next_run"] or "disabled")[:19]) for s in found]
    _out(found, as_json, _table(rows) if found else ["no schedules"])


@schedule.command("show")
@click.argument("schedule_id", type=int)
@URL
@JSON
def schedule_show(schedule_id, url, as_json):
    """One schedule and its last 50 ticks (why each did or did not start a run)."""
    s = Client(url).call("GET", f"schedules/{schedule_id}")
    lines = [f"schedule {s['id']}: {s['pipeline']} at {s['cron']!r} {s['timezone']}",
             f"catchup {s['catchup']}, overlap {s['overlap']}, "
             f"{'enabled' if s['enabled'] else 'disabled'}, next run {s['next_run']}"]
    if s["ticks"]:
        lines += _table([("scheduled for", "outcome", "run / reason")] + [
            (t["scheduled_for"][:19], t["outcome"], t["run_id"] or t["reason"] or "")
            for t in s["ticks"]])
    _out(s, as_json, lines)


@schedule.command("rm")
@click.argument("schedule_id", type=int)
@URL
@JSON
def schedule_rm(schedule_id, url, as_json):
    """Delete a schedule and its tick log."""
    Client(url).call("DELETE", f"schedules/{schedule_id}")
    _out({"id": schedule_id, "deleted": True}, as_json, [f"schedule {schedule_id} deleted"])


COMMANDS = [serve, publish, pipelines, submit, schedule]
