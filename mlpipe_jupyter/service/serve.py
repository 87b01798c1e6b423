"""`mlpipe serve`: a jupyter_server with only the `mlpipe_jupyter` extension loaded.

The token is MLPIPE_TOKEN when set, else a new random one, printed with the URL the way Jupyter
does. Ctrl-C stops it at once (no "Shutdown this Jupyter server?" prompt); runs in progress go
on in their own processes and the next `mlpipe serve` on the same store adopts them.
"""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

from ..server import MlpipeServer


class MlpipeServe(MlpipeServer):
    load_other_extensions = False
    serverapp_config = {"answer_yes": True, "open_browser": False}


def serve(*, ip: str, port: int, root: str, max_concurrent_runs: int | None = None,
          executor: str | None = None, allow_root: bool = False, echo=print) -> None:
    given = os.environ.get("MLPIPE_TOKEN")
    token = given or secrets.token_hex(24)
    root_dir = Path(root).resolve()
    argv = [f"--ServerApp.ip={ip}", f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root_dir}",
            f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False"]
    if max_concurrent_runs is not None:
        argv.append(f"--PipelineService.max_concurrent_runs={max_concurrent_runs}")
    if allow_root:
        argv.append("--ServerApp.allow_root=True")
    if executor:
        argv.append(f"--PipelineService.executor={executor}")
    url = f"http://{ip}:{port}"
    echo(f"mlpipe service for {root_dir}")
    echo(f"  {url}/mlpipe/api/pipelines")
    echo(f"  export MLPIPE_URL={url}" + ("  (token: $MLPIPE_TOKEN)" if given else
                                         f" MLPIPE_TOKEN={token}"))
    server = MlpipeServe.initialize_server(argv=argv)
    # Ctrl-C stops at once and cleanly (the extension's stop runs), with or without a terminal;
    # plain Jupyter would ask "Shutdown?" on a terminal and skip the cleanup without one
    signal.signal(signal.SIGINT, lambda signum, frame: server.stop(from_signal=True))
    server.start()
