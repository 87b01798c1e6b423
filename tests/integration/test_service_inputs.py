"""Publishing reads the notebook's file inputs as they are, against a real `mlpipe serve`: a
symlinked input is refused (its target never copied under <home>/pipelines), and a FIFO input
is refused unread, without hanging the request or the server."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.servicekit import Service, make_project, serving


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with serving(tmp_path_factory.mktemp("inputs"), project=False) as server:
        yield server


def _published_bytes(root: Path) -> bytes:
    """Everything under <home>/pipelines, read without following a link."""
    out = b""
    for dirpath, _, files in os.walk(root / ".mlpipe" / "pipelines"):
        for name in files:
            path = Path(dirpath, name)
            out += os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
    return out


def test_a_symlinked_input_is_refused_and_its_target_never_published(service: Service,
                                                                      tmp_path: Path):
    secret = tmp_path / "id_rsa"
    token = f"SECRET-{secrets.token_hex(8)}"
    secret.write_text(token)
    project = service.root / "linked"
    make_project(project)
    (project / "data.txt").unlink()
    (project / "data.txt").symlink_to(secret)
    status, body = service.call("POST", "pipelines", {"notebook": "linked/p.ipynb",
                                                      "name": "linked"})
    assert status == 400, body
    assert "`data.txt`" in body["message"] and "symlink" in body["message"], body
    assert "\n" not in body["message"] and body["error"]["file"] == "data.txt", body
    assert service.call("GET", "pipelines/linked")[0] == 404
    # a directory input holding a link out of it is refused as well
    (project / "data.txt").unlink()
    (project / "data.txt").mkdir()
    (project / "data.txt" / "key").symlink_to(secret)
    status, body = service.call("POST", "pipelines", {"notebook": "linked/p.ipynb",
                                                      "name": "linked"})
    assert status == 400 and "symlink out of it" in body["message"], body
    assert token.encode() not in _published_bytes(service.root)
    assert not [p for p in (service.root / ".mlpipe" / "pipelines").rglob(".staging-*")]
    # the same input as a plain file publishes
    (project / "data.txt" / "key").unlink()
    (project / "data.txt").rmdir()
    (project / "data.txt").write_text("plain")
    service.ok("POST", "pipelines", {"notebook": "linked/p.ipynb", "name": "linked"},
               expect=201)


def test_a_fifo_input_is_refused_without_hanging(service: Service):
    project = service.root / "fifo"
    make_project(project)
    (project / "data.txt").unlink()
    os.mkfifo(project / "data.txt")  # nobody ever writes it: reading it would wait forever
    replies: list[tuple[int, dict]] = []
    request = threading.Thread(target=lambda: replies.append(service.call(
        "POST", "pipelines", {"notebook": "fifo/p.ipynb", "name": "fifo"})), daemon=True)
    request.start()
    # the server answers another request meanwhile
    assert service.call("GET", "pipelines")[0] == 200
    wait_for(lambda: not request.is_alive(), timeout=30, what="the publish of a FIFO to end")
    status, body = replies[0]
    assert status == 400, body
    assert "`data.txt`" in body["message"] and "FIFO" in body["message"], body
