"""mlpipe's jupyter_server extension in a real `jupyter server` over HTTP: loaded from the
package's config (nothing enabled by hand), authenticated, serving run records and only them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import jupyter_server, run_cli, write_notebook


class Server:
    def __init__(self, url: str, token: str, root: Path) -> None:
        self.url, self.token, self.root = url, token, root

    def get(self, path: str, *, token: bool = True) -> tuple[int, dict]:
        headers = {"Authorization": f"token {self.token}"} if token else {}
        request = urllib.request.Request(f"{self.url}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            body = e.read()
            return e.code, (json.loads(body) if body.startswith(b"{") else {})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("server")
    root = base / "root"
    root.mkdir()
    with jupyter_server(base, root, env={"MLPIPE_EXECUTOR": "local"}) as running:
        yield Server(running.url, running.token, root)
    log = running.log
    assert "mlpipe_jupyter | extension was successfully loaded" in log.read_text()


@pytest.fixture(scope="module")
def record(server: Server) -> str:
    """A real run's executed notebook, as a path relative to the server's root."""
    project = server.root / "project"
    project.mkdir()
    write_notebook(project / "p.ipynb", ["%%step hello --outputs greeting\n"
                                         "greeting = 'hi'\nprint('hello from the step')"])
    result = run_cli("run", "p.ipynb", "--executor", "local", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = json.loads(run_cli("runs", "--json", cwd=project).stdout)[0]["id"]
    return f"project/.mlpipe/runs/{run_id}/hello/output.ipynb"


def test_a_record_is_served_read_only_to_an_authenticated_client(server, record):
    status, model = server.get(f"/mlpipe/api/records/{record}")
    assert status == 200, model
    assert model["type"] == "notebook" and model["writable"] is False
    assert model["path"] == record
    outputs = [o.get("text", "") for c in model["content"]["cells"] for o in c.get("outputs", [])]
    assert any("hello from the step" in "".join(text) for text in outputs)
    status, light = server.get(f"/mlpipe/api/records/{record}?content=0")
    assert status == 200 and light["content"] is None
    # the contents API keeps hiding `.mlpipe/`: the extension widens nothing else
    status, _ = server.get(f"/api/contents/{record}")
    assert status == 404


def test_without_the_token_nothing_is_served(server, record):
    status, _ = server.get(f"/mlpipe/api/records/{record}", token=False)
    assert status == 403


def test_other_files_are_not_found_with_a_one_line_reason(server, record):
    home = record.split("/runs/")[0]
    for path in (f"{home}/mlpipe.db", record.replace("output.ipynb", "log.txt"),
                 record.replace("/hello/", "/nope/")):
        status, body = server.get(f"/mlpipe/api/records/{path}")
        assert status == 404, path
        assert body["reason"] == "NotFound" and "\n" not in body["message"], body
    status, body = server.get(f"/mlpipe/api/records/project/%2E%2E/{record}")
    assert status in (400, 404), body  # tornado may normalise the dots away before we see them
    status, body = server.get("/mlpipe/api/records/%2Fetc%2Fpasswd")
    assert status == 400 and body["reason"] == "UsageError", body
