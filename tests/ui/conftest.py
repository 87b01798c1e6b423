"""A real JupyterLab on loopback and a real Chromium (Debian's, never a downloaded one).

The server gets a fresh root dir holding a copy of the example notebook, fresh
JUPYTER_CONFIG_DIR/JUPYTER_DATA_DIR (the venv's sys-prefix labextensions, ipywidgets' and
anywidget's, stay on the path) and MLPIPE_EXECUTOR=local, so nothing depends on Docker.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import jupyter_server

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# without the background-networking flags Chromium keeps trying hosts it cannot reach
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"
# how long an `expect(...)` assertion waits for the page to get there: generous, for a loaded
# machine with 2 cores (Playwright's default is 5 s)
EXPECT_TIMEOUT_MS = 60_000


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path

    def tree(self, path: str, workspace: str) -> str:
        """The notebook in a workspace of its own: JupyterLab restores a workspace's open
        documents, so tests sharing the default one would see each other's notebooks."""
        return f"{self.url}/lab/workspaces/{workspace}/tree/{path}?token={self.token}"


def _lab_settings(config_dir: Path) -> None:
    """No news or update checks (no toast over the screenshot, no requests to the internet),
    and the notebook's own kernel starts without a "Select Kernel" dialog, even when the
    kernel specs arrive late on a busy machine."""
    settings = {
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
        "notebook-extension/tracker": {"autoStartDefaultKernel": True},
    }
    for name, values in settings.items():
        target = config_dir / "lab" / "user-settings" / "@jupyterlab" / name
        target = target.with_name(target.name + ".jupyterlab-settings")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))


@contextlib.contextmanager
def _jupyter_lab(base: Path, *extra: str, lab_extension: bool = True,
                 app: str = "jupyterlab") -> Iterator[Lab]:
    root = base / "root"
    (root / "examples").mkdir(parents=True)
    for name in ("wine_quality.ipynb", "requirements.txt"):
        shutil.copy(ROOT / "notebooks" / name, root / "examples" / name)
    config_dir = base / "config"  # the JUPYTER_CONFIG_DIR jupyter_server() gives it
    if app == "jupyterlab":  # Notebook 7 has neither plugin: settings for them are errors
        _lab_settings(config_dir)
    if not lab_extension:  # as `jupyter labextension disable mlpipe-jupyter` would
        (config_dir / "labconfig").mkdir(parents=True)
        (config_dir / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {"mlpipe-jupyter": True}}))
    extra = (*extra, "--LabApp.news_url=None", "--LabApp.extension_manager=readonly") \
        if app == "jupyterlab" else extra
    with jupyter_server(base, root, *extra, app=app, env={
            "MLPIPE_EXECUTOR": "local", "MLPIPE_MAX_PARALLEL": "2", "MLPIPE_HOME": None}) as s:
        yield Lab(url=s.url, token=s.token, root=s.root, log=s.log)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab as installed, mlpipe's extensions included: jupyter_server's defaults,
    dot-folders hidden."""
    with _jupyter_lab(tmp_path_factory.mktemp("lab")) as server:
        yield server


@pytest.fixture(scope="module")
def lab_showing_hidden(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A server that may open files under `.mlpipe/` (the executed step notebooks), with
    mlpipe's JupyterLab extension disabled."""
    with _jupyter_lab(tmp_path_factory.mktemp("lab-hidden"),
                      "--ContentsManager.allow_hidden=True", lab_extension=False) as server:
        yield server


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Jupyter Notebook 7 as installed, mlpipe's extensions included, dot-folders hidden."""
    with _jupyter_lab(tmp_path_factory.mktemp("nb7"), app="notebook") as server:
        yield server


@pytest.fixture
def artifacts() -> Path:
    """test-artifacts/ (gitignored): screenshots a person can look at after the run."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import expect, sync_playwright

    assert os.access(CHROMIUM, os.X_OK), "run scripts/setup-browser.sh (make test does)"
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1360, "height": 1000},
                                  device_scale_factor=1)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(f"{err}\n{err.stack}"))
    page.errors = errors  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-failure.png"),
                            full_page=True)
        context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
