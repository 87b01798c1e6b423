"""mlpipe-jupyter: a notebook's `%%step` cells as a reproducible pipeline.

Kept import-light: the CLI and step kernels import this package, so heavy modules load lazily.
"""

__version__ = "0.1.0"


def load_ipython_extension(ipython) -> None:
    """`%load_ext mlpipe_jupyter`: register %%step, %%pipeline_params, %%pipeline_setup,
    %pipeline."""
    from .ui.magics import PipelineMagics

    ipython.register_magics(PipelineMagics(ipython))


def unload_ipython_extension(ipython) -> None:
    from .ui.magics import PipelineMagics

    PipelineMagics.unregister(ipython)


def _jupyter_server_extension_points() -> list[dict]:
    from .server import MlpipeServer

    return [{"module": "mlpipe_jupyter.server", "app": MlpipeServer}]


def _jupyter_labextension_paths() -> list[dict]:
    return [{"src": "labextension", "dest": "mlpipe-jupyter"}]
