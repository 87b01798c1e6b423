"""The pipeline service over HTTP, against a real `mlpipe serve` subprocess: publish and
versions, submit with parameters, 400s that name the parameters, 401/403 on every route,
idempotency, a disabled pipeline, cancel, and max_concurrent_runs."""

from __future__ import annotations

import json
import secrets
import socket
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from email.message import Message
from pathlib import Path

import pytest

from mlpipe_jupyter.service.openapi import ROUTES
from tests.conftest import wait_for, write_notebook
from tests.integration.servicekit import (
    PIPELINE,
    Service,
    make_project,
    run_processes,
    serving,
    step_output,
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with serving(tmp_path_factory.mktemp("service")) as server:
        yield server


def published(service: Service, name: str) -> None:
    status, body = service.call("POST", "pipelines", {"notebook": "p.ipynb", "name": name})
    assert status in (200, 201), body


def test_publish_makes_versions_by_content_and_the_newest_is_the_default(service: Service):
    root = service.root / "versions"
    make_project(root)
    body = {"notebook": "versions/p.ipynb", "name": "versions", "description": "first"}
    v1 = service.ok("POST", "pipelines", body, expect=201)
    assert (v1["version"], v1["default"]) == (1, True)
    assert v1["parameters"] == {"alpha": 0.1, "label": "x", "sleep": 0.0}
    assert [s["name"] for s in v1["steps"]] == ["hello"] and v1["files"] == ["data.txt"]
    assert v1["endpoint"] == "/mlpipe/api/pipelines/versions/runs"
    # identical content: the same version, 200
    again = service.ok("POST", "pipelines", body, expect=200)
    assert (again["version"], again["id"]) == (1, v1["id"])
    # a changed file input beside the notebook is new content: v2, the default now
    (root / "data.txt").write_text("changed")
    v2 = service.ok("POST", "pipelines", body, expect=201)
    assert v2["version"] == 2 and v2["id"] != v1["id"]
    # so is changed code
    write_notebook(root / "p.ipynb", [*PIPELINE, "%%step extra --after hello\nprint('extra')"])
    v3 = service.ok("POST", "pipelines", body, expect=201)
    assert v3["version"] == 3 and len(v3["steps"]) == 2
    info = service.ok("GET", "pipelines/versions")
    assert info["default_version"] == 3 and info["enabled"] is True
    assert [v["version"] for v in info["versions"]] == [1, 2, 3]
    assert [len(v["steps"]) for v in info["versions"]] == [1, 1, 2]  # v1 did not change
    listed = {p["name"]: p for p in service.ok("GET", "pipelines")}
    assert listed["versions"]["versions"] == 3 and listed["versions"]["default_version"] == 3
    back = service.ok("PATCH", "pipelines/versions", {"default_version": 1})
    assert back["default_version"] == 1
    assert service.call("PATCH", "pipelines/versions", {"default_version": 9})[0] == 404
    # a run of the default is a run of v1's snapshot: the notebook's later edits are not in it
    run_id = service.ok("POST", "pipelines/versions/runs", {}, expect=202)["Id"]
    run = service.wait_run(run_id)
    assert run["version"] == 1 and [s["name"] for s in run["steps"]] == ["hello"]


def test_a_run_gets_its_parameters_experiment_and_source(service: Service):
    published(service, "params")
    reply = service.ok("POST", "pipelines/params/runs",
                       {"ExperimentName": "nightly",
                        "ParameterAssignments": {"alpha": 0.5, "label": "from-rest"}},
                       expect=202)
    assert reply["Status"] == "Queued"
    run = service.wait_run(reply["Id"])
    assert run["id"] == reply["Id"]
    assert (run["pipeline"], run["version"], run["experiment"], run["source"]) == (
        "params", 1, "nightly", "rest")
    assert run["params"] == {"alpha": 0.5, "label": "from-rest", "sleep": 0.0}
    assert "ALPHA=0.5 LABEL=from-rest" in step_output(service.root, run["id"])
    mine = service.ok("GET", "runs?experiment=nightly&pipeline=params")
    assert [r["id"] for r in mine] == [run["id"]]
    assert service.ok("GET", "runs?state=succeeded&limit=1")[0]["state"] == "succeeded"
    assert service.call("GET", "runs/no-such-run")[0] == 404


def test_unknown_and_mistyped_parameters_are_400s_naming_them(service: Service):
    published(service, "params")
    status, body = service.call("POST", "pipelines/params/runs", {"ParameterAssignments": {
        "alpah": 1.0, "label": 3, "alpha": 1}})
    assert status == 400, body
    error = body["error"]
    assert error["error"] == "BadParameters" and sorted(error["parameters"]) == ["alpah", "label"]
    assert "`alpha`" in error["message"] and "expected a string" in error["message"]
    assert "\n" not in error["message"]
    # one shape for every mlpipe route's errors: JupyterLab reads the top-level message
    assert (body["message"], body["reason"]) == (error["message"], "BadParameters"), body
    status, body = service.call("POST", "pipelines/params/runs", {"Parameters": {}})
    assert status == 400 and "Parameters" in body["error"]["message"]
    status, body = service.call("POST", "pipelines/params/runs", raw=b"{not json")
    assert status == 400 and body["error"]["error"] == "UsageError"
    status, body = service.call("POST", "pipelines", {"notebook": "../x.ipynb", "name": "x"})
    assert status == 400 and "'..'" in body["error"]["message"]
    status, body = service.call("POST", "pipelines", {"notebook": "none.ipynb", "name": "x"})
    assert status == 404


@pytest.mark.parametrize("path, method", [(r[0], r[1]) for r in ROUTES])
def test_every_route_wants_the_token(service: Service, path: str, method: str):
    concrete = path.lstrip("/").replace("{name}", "params").replace("{id}", "1")
    body = {} if method in ("post", "patch") else None
    status, reply = service.call(method.upper(), concrete, body, token=None)
    assert status == 401, (path, method, reply)
    assert "token" in reply["error"]["message"] and reply["message"] == reply["error"]["message"]
    status, reply = service.call(method.upper(), concrete, body, token="wrong")
    assert status == 403, (path, method, reply)


def test_what_the_web_server_refuses_has_the_error_body_and_its_headers(service: Service):
    def send(method: str, path: str, token: str | None) -> tuple[int, Message, dict]:
        headers = {"Authorization": f"token {token}"} if token else {}
        request = urllib.request.Request(f"{service.url}/mlpipe/api/{path}", method=method,
                                         headers=headers)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=30)
        return caught.value.code, caught.value.headers, json.loads(caught.value.read())

    status, headers, body = send("DELETE", "pipelines", service.token)
    assert status == 405 and headers["Allow"] == "GET, POST", dict(headers)
    assert body == {"error": {"error": "HTTPError", "message": "Method Not Allowed"},
                    "message": "Method Not Allowed", "reason": "Method Not Allowed"}
    status, headers, body = send("GET", "runs", None)
    assert status == 401 and headers["WWW-Authenticate"] == "token", dict(headers)
    assert body["reason"] == "Unauthorized" and body["error"]["error"] == "HTTPError"
    assert body["message"] == "authentication required: send `Authorization: token <TOKEN>`"


def test_an_idempotency_key_seen_before_returns_the_first_run(service: Service):
    published(service, "params")
    key = {"Idempotency-Key": secrets.token_hex(8)}
    first = service.ok("POST", "pipelines/params/runs", {}, expect=202, headers=key)
    second = service.ok("POST", "pipelines/params/runs", {}, expect=202, headers=key)
    assert second["Id"] == first["Id"]
    other = service.ok("POST", "pipelines/params/runs", {}, expect=202,
                       headers={"Idempotency-Key": secrets.token_hex(8)})
    assert other["Id"] != first["Id"]
    for run_id in (first["Id"], other["Id"]):
        service.wait_run(run_id)


def test_a_disabled_pipeline_refuses_runs_with_409(service: Service):
    service.ok("POST", "pipelines", {"notebook": "p.ipynb", "name": "off"}, expect=201)
    assert service.ok("PATCH", "pipelines/off", {"enabled": False})["enabled"] is False
    status, body = service.call("POST", "pipelines/off/runs", {})
    assert status == 409 and "disabled" in body["error"]["message"]
    service.ok("PATCH", "pipelines/off", {"enabled": True})
    service.wait_run(service.ok("POST", "pipelines/off/runs", {}, expect=202)["Id"])


def test_cancel_stops_a_running_run_and_its_process(service: Service):
    published(service, "params")
    run_id = service.ok("POST", "pipelines/params/runs",
                        {"ParameterAssignments": {"sleep": 300.0}}, expect=202)["Id"]
    service.wait_step_running(run_id)
    pid = run_processes(service.root)[run_id]
    assert service.ok("POST", f"runs/{run_id}/cancel", expect=202)["state"] == "cancelling"
    # a second cancel while the first one winds the run up does not interrupt the winding up
    assert service.ok("POST", f"runs/{run_id}/cancel", expect=202)["state"] in (
        "cancelling", "cancelled")
    run = service.wait_run(run_id, ("cancelled",), timeout=60)
    assert run["steps"][0]["state"] == "cancelled"
    log = (service.root / ".mlpipe" / "service" / "logs" / f"{run_id}.log").read_text()
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    wait_for(lambda: run_id not in run_processes(service.root), timeout=30,
             what=f"run process {pid} to end")


def test_at_most_max_concurrent_runs_run_at_once_first_in_first_out(service: Service):
    service.ok("POST", "pipelines", {"notebook": "p.ipynb", "name": "busy"}, expect=201)
    ids = [service.ok("POST", "pipelines/busy/runs",
                      {"ParameterAssignments": {"sleep": 2.0, "alpha": float(i)}},
                      expect=202)["Id"] for i in range(5)]
    most = 0
    seen_running: list[str] = []

    def all_done() -> bool:
        nonlocal most
        runs = {r["id"]: r for r in service.ok("GET", "runs?pipeline=busy&limit=20")}
        running = [i for i in ids if runs.get(i, {}).get("state") == "running"]
        most = max(most, len(running))
        seen_running.extend(i for i in running if i not in seen_running)
        return all(runs.get(i, {}).get("state") == "succeeded" for i in ids)

    wait_for(all_done, timeout=240, what="5 runs to succeed", every=0.05)
    assert most == 2, f"at most {most} ran at once"
    assert seen_running == ids  # they started in the order they were submitted
    started = [service.run(i)["started"] for i in ids]
    # the first two start together (their processes race to record it); the rest wait
    assert min(started[2:]) > max(started[:2]) and started[4] > started[2]


def test_runs_lists_service_and_queue_state(service: Service):
    service.ok("POST", "pipelines", {"notebook": "p.ipynb", "name": "listed"}, expect=201)
    run_id = service.ok("POST", "pipelines/listed/runs", {"ExperimentName": "listing"},
                        expect=202)["Id"]
    done = service.wait_run(run_id)
    runs = service.ok("GET", "runs?limit=200")
    mine = [r for r in runs if r["id"] == run_id]
    assert len(mine) == 1, [r["id"] for r in runs]
    assert (mine[0]["state"], mine[0]["pipeline"], mine[0]["source"],
            mine[0]["experiment"]) == ("succeeded", "listed", "rest", "listing"), mine[0]
    assert [s["name"] for s in mine[0]["steps"]] == ["hello"]
    only = service.ok("GET", "runs?pipeline=listed")
    assert [r["id"] for r in only] == [run_id]
    # every time the API writes is ISO 8601 with its offset
    for stamp in (done["started"], done["finished"], done["submitted"],
                  done["steps"][0]["started"], mine[0]["started"]):
        assert datetime.fromisoformat(stamp).utcoffset() is not None, stamp
    version = service.ok("GET", "pipelines/listed")
    assert datetime.fromisoformat(version["created"]).utcoffset() is not None, version


def test_the_notebook_outside_the_root_is_refused(service: Service, tmp_path: Path):
    outside = make_project(tmp_path / "elsewhere")
    status, body = service.call("POST", "pipelines", {"notebook": str(outside), "name": "x"})
    assert status == 400 and "relative" in body["error"]["message"]


def _unread(port: int, client_port: int) -> int | None:
    """Bytes of the connection from `client_port` the server on `port` has not read yet."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":"), fields[2].split(":")
        if (int(local[1], 16), int(remote[1], 16)) == (port, client_port):
            return int(fields[4].split(":")[1], 16)
    return None


def test_a_request_waiting_on_the_store_does_not_block_the_others(service: Service):
    published(service, "params")
    lock = sqlite3.connect(service.root / ".mlpipe" / "service.db", isolation_level=None)
    client = socket.create_connection(("127.0.0.1", service.port), timeout=60)
    try:
        lock.execute("BEGIN IMMEDIATE")  # another process holds the store's write lock
        client.sendall(f"POST /mlpipe/api/pipelines/params/runs HTTP/1.1\r\n"
                       f"Host: 127.0.0.1:{service.port}\r\n"
                       f"Authorization: token {service.token}\r\nContent-Length: 2\r\n"
                       "Content-Type: application/json\r\n"
                       f"Connection: close\r\n\r\n{{}}".encode())
        port = client.getsockname()[1]
        wait_for(lambda: _unread(service.port, port) == 0, timeout=30,
                 what="the server to read the submit")
        # the submit waits for the lock in a thread pool; the event loop answers meanwhile
        assert service.call("GET", "openapi.json")[0] == 200
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    reply = b""
    while chunk := client.recv(65536):
        reply += chunk
    client.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split()[1] == b"202", reply
    service.wait_run(json.loads(body)["Id"])
