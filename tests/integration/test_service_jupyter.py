"""The service's handlers inside a plain `jupyter server` (the `mlpipe_jupyter` extension,
enabled by the package's own config), publishing and running with Jupyter's token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.conftest import jupyter_server, wait_for
from tests.integration.servicekit import kill_run_processes, make_project


def test_publish_and_run_through_jupyter_server_with_its_token(tmp_path):
    root = tmp_path / "root"
    make_project(root)
    served = jupyter_server(tmp_path, root, "--PipelineService.max_concurrent_runs=1",
                            env={"MLPIPE_EXECUTOR": "local", "MLPIPE_HOME": None})
    try:
        with served as running:
            url, token = running.url, running.token

            def call(method: str, path: str, body=None, auth: str | None = token):
                headers = {"Content-Type": "application/json"}
                if auth is not None:
                    headers["Authorization"] = f"token {auth}"
                request = urllib.request.Request(
                    f"{url}/mlpipe/api/{path}", method=method, headers=headers,
                    data=None if body is None else json.dumps(body).encode())
                try:
                    with urllib.request.urlopen(request, timeout=30) as reply:
                        return reply.status, json.load(reply)
                except urllib.error.HTTPError as err:
                    return err.code, json.loads(err.read() or b"{}")

            status, body = call("POST", "pipelines", {"notebook": "p.ipynb",
                                                      "name": "in-jupyter"})
            assert status == 201, body
            assert body["version"] == 1 and body["parameters"]["alpha"] == 0.1
            assert call("GET", "pipelines", auth=None)[0] == 401
            assert call("GET", "pipelines", auth="wrong")[0] == 403
            status, reply = call("POST", "pipelines/in-jupyter/runs",
                                 {"ParameterAssignments": {"label": "jupyter"}})
            assert status == 202, reply
            run = wait_for(lambda: (r := call("GET", f"runs/{reply['Id']}")[1])["state"]
                           in ("succeeded", "failed", "cancelled") and r, timeout=120,
                           what="the run")
            assert run["state"] == "succeeded" and run["source"] == "rest", run
            assert (root / ".mlpipe" / "service.db").is_file()
    finally:
        kill_run_processes(root)
    text = running.log.read_text()
    assert "mlpipe_jupyter | extension was successfully loaded" in text
    assert "max_concurrent_runs=1," in text  # its traitlet, configured on the command line
    assert "Traceback" not in text, text[-3000:]
