"""`mlpipe publish | pipelines | submit | schedule ...` against a live `mlpipe serve`:
human output within 80 columns, --json everywhere, one-line errors and their exit codes."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

from tests.conftest import free_port, run_cli
from tests.integration.servicekit import Service, make_project, serving


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with serving(tmp_path_factory.mktemp("service-cli"), clean_log=False) as server:
        yield server


def mlpipe(service: Service, *args: str, token: str | None = ""):
    env = {"MLPIPE_URL": service.url, "COLUMNS": "80",
           "MLPIPE_TOKEN": service.token if token == "" else (token or "")}
    return run_cli(*args, cwd=service.root, env=env)


def lines_fit(text: str) -> bool:
    return all(len(line) <= 80 for line in text.splitlines())


def test_publish_submit_wait_and_list(service: Service):
    done = mlpipe(service, "publish", "p.ipynb", "--name", "cli")
    assert done.returncode == 0, done.stderr
    assert "cli v1" in done.stdout and "alpha=0.1" in done.stdout and lines_fit(done.stdout)
    again = json.loads(mlpipe(service, "publish", "p.ipynb", "--name", "cli", "--json").stdout)
    assert again["version"] == 1
    listed = mlpipe(service, "pipelines")
    assert "cli" in listed.stdout and "v1" in listed.stdout and lines_fit(listed.stdout)
    assert json.loads(mlpipe(service, "pipelines", "--json").stdout)[0]["name"] == "cli"
    run = mlpipe(service, "submit", "cli", "-p", "alpha=0.75", "--experiment", "e1", "--wait")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "succeeded" in run.stdout and lines_fit(run.stdout)
    queued = json.loads(mlpipe(service, "submit", "cli", "--json").stdout)
    assert queued["Status"] == "Queued"
    service.wait_run(queued["Id"])
    shown = json.loads(mlpipe(service, "submit", "cli", "--version", "1", "--wait",
                              "--json").stdout)
    assert shown["state"] == "succeeded" and shown["version"] == 1


def test_errors_are_one_line_with_exit_codes(service: Service):
    mlpipe(service, "publish", "p.ipynb", "--name", "cli")
    bad = mlpipe(service, "submit", "cli", "-p", "alpah=1.0")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "400" in bad.stderr and "alpah" in bad.stderr and "`alpha`" in bad.stderr
    denied = mlpipe(service, "pipelines", token="wrong")
    assert denied.returncode == 2 and "403" in denied.stderr and "MLPIPE_TOKEN" in denied.stderr
    nobody = run_cli("pipelines", cwd=service.root,
                     env={"MLPIPE_URL": f"http://127.0.0.1:{free_port()}"})
    assert nobody.returncode == 3 and "mlpipe serve" in nobody.stderr


def test_a_service_that_fails_is_1_where_a_refusal_is_2(tmp_path):
    with serving(tmp_path, clean_log=False) as server:
        (server.root / ".mlpipe").mkdir()
        (server.root / ".mlpipe" / "mlpipe.db").write_bytes(b"not a database!!" * 512)
        failed = mlpipe(server, "publish", "p.ipynb", "--name", "cli")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert failed.stderr.startswith("error: 500: ") and failed.stderr.count("\n") == 1
    assert "mlpipe.db is damaged" in failed.stderr


def test_schedule_add_list_show_rm(service: Service):
    mlpipe(service, "publish", "p.ipynb", "--name", "cli")
    added = mlpipe(service, "schedule", "add", "cli", "--cron", "0 3 * * *", "--timezone",
                   "Europe/Berlin", "-p", "alpha=0.5", "--catchup", "latest", "--json")
    assert added.returncode == 0, added.stderr
    info = json.loads(added.stdout)
    assert info["next_run"].endswith(("+01:00", "+02:00")) and "T03:00:00" in info["next_run"]
    listed = mlpipe(service, "schedule", "list")
    assert f"{info['id']}" in listed.stdout and "0 3 * * *" in listed.stdout
    assert lines_fit(listed.stdout)
    shown = mlpipe(service, "schedule", "show", str(info["id"]))
    assert "catchup latest" in shown.stdout and lines_fit(shown.stdout)
    assert json.loads(mlpipe(service, "schedule", "show", str(info["id"]), "--json").stdout)[
        "ParameterAssignments"] == {"alpha": 0.5}
    bad = mlpipe(service, "schedule", "add", "cli", "--cron", "99 * * * *")
    assert bad.returncode == 2 and "cron" in bad.stderr
    assert mlpipe(service, "schedule", "rm", str(info["id"])).returncode == 0
    gone = mlpipe(service, "schedule", "show", str(info["id"]))
    assert gone.returncode == 2 and "404" in gone.stderr


def test_ctrl_c_stops_mlpipe_serve_cleanly(tmp_path):
    import signal

    make_project(tmp_path / "root")
    server = Service(tmp_path / "root", secrets.token_hex(16), tmp_path / "serve.log")
    server.ok("POST", "pipelines", {"notebook": "p.ipynb", "name": "p"}, expect=201)
    server.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends (no terminal: no prompt)
    assert server.proc.wait(30) == 0
    text = server.log.read_text()
    assert "Traceback" not in text, text[-2000:]
    assert "mlpipe service stopped" in text, text[-2000:]
