"""A step's kernel process: how it starts (`python -m mlpipe_jupyter.kernels.stepkernel`).
Used by the warm pool on the host, as a docker step's whole command (the runner drives it:
executors/kernelbridge.py), and by stepmain in a container. Talking to it: client.py.

Import-light: this module is the kernel's `__main__`; jupyter_client is imported only by the
functions that manage kernels.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# nbclient's own default: no history file per kernel (nor one per container's empty HOME)
KERNEL_ARGS = ["--HistoryManager.hist_file=:memory:"]
# Modules ipykernel imports at start-up that a step kernel never uses, hidden while it
# initialises (never afterwards, so a step's own code can import them). debugpy is a quarter of
# a kernel's start-up CPU (about 0.08 of 0.3 CPU-s here), and a step runs in batch: no
# frontend attaches a debugger (the kernel reports `debugger: false` in kernel_info).
KERNEL_UNNEEDED = ("debugpy",)
# environment variables read once at interpreter start: a kernel already running (a warm one)
# or forked from one that is (kernelfork) cannot take these on
STARTUP_ENV = re.compile(r"(PYTHON|LD_|MALLOC|IPYTHON|JUPYTER|JPY_|PYDEVD|LC_|LANG$|TZ$|USER$"
                         r"|TRAITLETS_|TORNADO_|PYZMQ_)")


@contextlib.contextmanager
def hidden_modules(names: Iterable[str]) -> Iterator[None]:
    """While the block runs, importing any of `names` not imported yet raises ImportError (what
    importing it does when it is not installed); afterwards it imports as usual."""
    hidden = [m for m in names if m not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def launch_kernel() -> None:
    """A step's kernel process: ipykernel's own launcher (ipykernel_launcher), minus the
    start-up imports in KERNEL_UNNEEDED. Started as
    `python -m mlpipe_jupyter.kernels.stepkernel -f FILE` by kernel_manager_class(), only in
    place of the stock kernel of the same interpreter
    (stock_kernel_argv)."""
    from importlib.util import find_spec

    # as ipykernel_launcher does: the cwd is not importable while the kernel loads (a step's
    # `zmq.py` must not shadow pyzmq); IPython puts '' back for the step's code
    if sys.path and (sys.path[0] == "" or Path(sys.path[0]) == Path.cwd()):
        del sys.path[0]
    stock = find_spec("ipykernel_launcher")
    if stock is not None and stock.origin:
        sys.argv[0] = stock.origin  # what code probing for a Jupyter kernel expects to see
    with hidden_modules(KERNEL_UNNEEDED):
        from ipykernel.kernelapp import IPKernelApp

        app = IPKernelApp.instance()
        app.initialize()
    app.start()


STEP_KERNEL = "mlpipe_jupyter.kernels.stepkernel"
# modules whose `python -m` start is the stock IPython kernel: ipykernel's __main__ and its
# launcher both run IPKernelApp.launch_new_instance(); the launcher also takes the cwd off
# sys.path while the kernel loads, which launch_kernel does for all three
STOCK_MODULES = frozenset({"ipykernel_launcher", "ipykernel", STEP_KERNEL})
# names jupyter_client runs as sys.executable whatever PATH says (KernelManager.format_kernel_cmd)
JUPYTER_PYTHON_NAMES = frozenset({"python", f"python{sys.version_info[0]}",
                                  "python{}.{}".format(*sys.version_info[:2])})
# Interpreter flags a step kernel honours. The zygote (kernelfork) is started with the flags of
# the run's kernelspec, so a kernel forked from it has exactly them; every one here only sets
# interpreter state at start-up, which a fork inherits as it is:
#   -B no .pyc written, -b/-bb bytes warnings, -O/-OO optimisation, -u unbuffered stdio (the
#   child's fds 1 and 2 are its log), -q and -R (no effect on a kernel), -W warning filters.
_SAFE_FLAGS = frozenset("BbOqRu")
# -E, -s, -I, -P change where imports come from: honoured only when the runner runs with them
# too, so that mlpipe_jupyter (the zygote, this launcher) imports in such an interpreter just as
# it did in the runner's; otherwise the kernel starts as its spec says (ipykernel_launcher)
_PATH_FLAGS = {"E": "ignore_environment", "s": "no_user_site", "I": "isolated",
               "P": "safe_path"}
#   frozen_modules (what `ipykernel install` adds: stdlib modules from source, not frozen; the
#   zygote imports them so too), utf8, warn_default_encoding, int_max_str_digits,
#   no_debug_ranges, pycache_prefix, dev and faulthandler (fault handler on fd 2, which a child
#   has on its log), tracemalloc (tracing inherited). Not here: importtime and -v, whose output
#   for the zygote's imports would go to the zygote's log, not the kernel's; perf (a map file
#   per pid); anything unknown.
_SAFE_X = frozenset({"frozen_modules", "utf8", "warn_default_encoding", "int_max_str_digits",
                     "no_debug_ranges", "pycache_prefix", "dev", "faulthandler", "tracemalloc"})


@dataclass(frozen=True)
class StockKernel:
    """A kernel command that starts the stock IPython kernel on this interpreter."""

    python: str  # as the command names it
    flags: tuple[str, ...]  # interpreter flags, one per item: "-E", "-Wignore", "-Xdev"
    module: str  # one of STOCK_MODULES
    args: tuple[str, ...]  # the kernel's own: -f CONNECTION_FILE ...

    def command(self, module: str = STEP_KERNEL) -> list[str]:
        return [self.python, *self.flags, "-m", module, *self.args]


def stock_kernel_argv(argv: Sequence[str], path: str | None = None) -> StockKernel | None:
    """`argv` parsed when it starts the stock IPython kernel (`-m ipykernel_launcher`,
    `-m ipykernel`, or this launcher) on this very interpreter with only flags in _SAFE_FLAGS,
    _PATH_FLAGS (as the runner's) or _SAFE_X; None for anything else (another interpreter or
    module, a script, an unknown flag), which then starts exactly as it says. `path`: the PATH
    a bare interpreter name is looked up on (the kernel's)."""
    if not argv or not same_interpreter(argv[0], path):
        return None
    parsed = _interpreter_options(argv[1:])
    if parsed is None or parsed[1] not in STOCK_MODULES:
        return None
    python = sys.executable if argv[0] in JUPYTER_PYTHON_NAMES else argv[0]
    return StockKernel(python, *parsed)


def _interpreter_options(tokens: Sequence[str]
                         ) -> tuple[tuple[str, ...], str, tuple[str, ...]] | None:
    """(flags, module, module arguments) of a `python` command line after its program, as
    CPython reads it (`-Es` is two flags; -W, -X and -m take the rest of their token or the
    next one); None at the first option not accepted or when no -m comes."""
    flags: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if len(token) < 2 or token[0] != "-" or token[1] == "-":  # a script, -, --, --long
            return None
        for j, letter in enumerate(token[1:], 1):
            if letter in "WXm":
                value = token[j + 1:]
                if not value:
                    i += 1
                    if i == len(tokens):
                        return None
                    value = tokens[i]
                if letter == "m":
                    return tuple(flags), value, tuple(tokens[i + 1:])
                if letter == "X" and value.split("=", 1)[0] not in _SAFE_X:
                    return None
                flags.append(f"-{letter}{value}")
                break
            if letter in _SAFE_FLAGS or (letter in _PATH_FLAGS
                                         and getattr(sys.flags, _PATH_FLAGS[letter], 0)):
                flags.append(f"-{letter}")
            else:
                return None
        i += 1
    return None


def same_interpreter(python: str, path: str | None = None) -> bool:
    """Does running `python` start this interpreter with this environment's packages? It does
    when it is the same binary, symlinks resolved, in the same venv: CPython looks for
    pyvenv.cfg beside the path it was started as (unresolved) and one directory up, and the
    directory it is found in is sys.prefix, where the venv's packages are. So a symlink to a
    venv's python from elsewhere starts its base interpreter without them, and a path through a
    symlink to the venv's directory is that venv. A bare name is found on `path`, except those
    jupyter_client replaces with sys.executable."""
    if not sys.executable:
        return False
    if os.sep not in python:
        if python in JUPYTER_PYTHON_NAMES:
            return True
        found = shutil.which(python, path=path)
        if found is None:
            return False
        python = found
    elif not os.path.isabs(python):  # relative to the kernel's cwd: not worth resolving
        return False
    return (os.access(python, os.X_OK)
            and _interpreter_identity(python) == _interpreter_identity(sys.executable))


def _interpreter_identity(python: str) -> tuple[str, str | None]:
    """(the binary, the venv's directory or None), both with symlinks resolved."""
    python = os.path.abspath(python)
    here = os.path.dirname(python)
    for directory in (os.path.dirname(here), here):  # the order CPython reads them in
        if os.path.isfile(os.path.join(directory, "pyvenv.cfg")):
            return os.path.realpath(python), os.path.realpath(directory)
    return os.path.realpath(python), None


_MANAGER_CLASS = None
_MANAGER_LOCK = threading.Lock()


def kernel_manager_class():
    """jupyter_client's AsyncKernelManager, launching the stock Python kernel through
    this module (ipykernel's launcher minus its debugger import: 25% less start-up CPU, see
    launch_kernel), whichever form its kernelspec has (stock_kernel_argv). Any other kernel
    command (another interpreter or launcher, a flag not accepted) is left exactly as it is."""
    global _MANAGER_CLASS
    with _MANAGER_LOCK:
        if _MANAGER_CLASS is None:
            from jupyter_client import AsyncKernelManager

            class StepKernelManager(AsyncKernelManager):
                def format_kernel_cmd(self, extra_arguments=None):
                    cmd = super().format_kernel_cmd(extra_arguments)
                    env = (self._launch_args or {}).get("env") or os.environ
                    stock = stock_kernel_argv(cmd, env.get("PATH"))
                    return cmd if stock is None else stock.command()

            _MANAGER_CLASS = StepKernelManager
        return _MANAGER_CLASS


if __name__ == "__main__":
    launch_kernel()
