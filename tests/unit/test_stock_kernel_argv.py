"""stepkernel.stock_kernel_argv: which kernel commands are the stock IPython kernel of this
interpreter (and so get the step launcher and, on Linux, a forked kernel), and which start
exactly as their kernelspec says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpipe_jupyter.kernels import stepkernel
from mlpipe_jupyter.kernels.stepkernel import (
    STEP_KERNEL,
    StockKernel,
    same_interpreter,
    stock_kernel_argv,
)

TAIL = ["-f", "{connection_file}"]
VERSION = "python{}.{}".format(*sys.version_info[:2])
IN_VENV = sys.prefix != sys.base_prefix


class Flags:
    """sys.flags with some fields changed."""

    def __init__(self, **changed: int) -> None:
        self._real, self._changed = sys.flags, changed

    def __getattr__(self, name: str):
        return self._changed.get(name, getattr(self._real, name))


@pytest.fixture
def runner_flags(monkeypatch):
    def set_flags(**changed: int) -> None:
        monkeypatch.setattr(sys, "flags", Flags(**changed))
    set_flags(ignore_environment=0, no_user_site=0, isolated=0, safe_path=0)
    return set_flags


def same_binary_names() -> list[str]:
    """Other names of this interpreter in its own bin directory (python, python3, ...)."""
    here = Path(sys.executable).parent
    return [str(p) for p in here.iterdir() if p.name.startswith("python")
            and os.path.realpath(p) == os.path.realpath(sys.executable)]


# -- the forms `ipykernel install` and friends write ------------------------------------------
@pytest.mark.parametrize("argv, flags, module", [
    (["python", "-m", "ipykernel_launcher", *TAIL], (), "ipykernel_launcher"),  # shipped spec
    ([sys.executable, "-m", "ipykernel_launcher", *TAIL], (), "ipykernel_launcher"),  # native
    ([sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", *TAIL],
     ("-Xfrozen_modules=off",), "ipykernel_launcher"),  # ipykernel install --user/--prefix
    ([sys.executable, "-X", "frozen_modules=off", "-m", "ipykernel", *TAIL],
     ("-Xfrozen_modules=off",), "ipykernel"),
    (["python3", "-mipykernel_launcher", *TAIL], (), "ipykernel_launcher"),
    ([VERSION, "-BuOO", "-W", "ignore", "-Xdev", "-m", "ipykernel", *TAIL],
     ("-B", "-u", "-O", "-O", "-Wignore", "-Xdev"), "ipykernel"),
    (["python", "-Bm", "ipykernel_launcher", *TAIL], ("-B",), "ipykernel_launcher"),
    ([sys.executable, "-m", STEP_KERNEL, *TAIL], (), STEP_KERNEL),
])
def test_stock_forms(argv, flags, module, runner_flags):
    got = stock_kernel_argv(argv)
    assert got == StockKernel(sys.executable if argv[0] in ("python", "python3", VERSION)
                              else argv[0], flags, module, tuple(TAIL))
    assert got.command() == [got.python, *flags, "-m", STEP_KERNEL, *TAIL]


@pytest.mark.parametrize("argv", [
    ["python", "-m", "my_kernel", *TAIL],  # another kernel
    ["python", "-m", "ipykernel_launcher_x", *TAIL],
    ["python", "-m", "ipykernel.kernelapp", *TAIL],
    ["python", "-c", "import ipykernel_launcher", *TAIL],
    ["python", "/somewhere/ipykernel_launcher.py", *TAIL],  # a script
    ["python", "-", *TAIL],
    ["python", "--", "-m", "ipykernel_launcher", *TAIL],
    ["python", "--check-hash-based-pycs", "always", "-m", "ipykernel_launcher", *TAIL],
    ["python", "-v", "-m", "ipykernel_launcher", *TAIL],  # unknown or not honoured flags
    ["python", "-S", "-m", "ipykernel_launcher", *TAIL],
    ["python", "-i", "-m", "ipykernel_launcher", *TAIL],
    ["python", "-Bv", "-m", "ipykernel_launcher", *TAIL],
    ["python", "-Ximporttime", "-m", "ipykernel_launcher", *TAIL],
    ["python", "-X", "perf", "-m", "ipykernel_launcher", *TAIL],
    ["python", "-Xsome_future_option=1", "-m", "ipykernel_launcher", *TAIL],
    ["python", "-m"],
    ["python", "-W"],
    ["python"],
    [],
    ["/nonexistent/bin/python", "-m", "ipykernel_launcher", *TAIL],  # another interpreter
    ["bin/python", "-m", "ipykernel_launcher", *TAIL],  # relative to the kernel's cwd
    ["no-such-python-here", "-m", "ipykernel_launcher", *TAIL],
    ["python2", "-m", "ipykernel_launcher", *TAIL],
])
def test_anything_else_starts_as_its_spec_says(argv, runner_flags):
    assert stock_kernel_argv(argv) is None


@pytest.mark.parametrize("letter, field", [("E", "ignore_environment"), ("s", "no_user_site"),
                                            ("I", "isolated"), ("P", "safe_path")])
def test_path_flags_only_when_the_runner_has_them(letter, field, runner_flags):
    argv = ["python", f"-{letter}", "-m", "ipykernel_launcher", *TAIL]
    assert stock_kernel_argv(argv) is None
    runner_flags(**{field: 1})
    assert stock_kernel_argv(argv).flags == (f"-{letter}",)


# -- any mix of accepted flags, however CPython lets them be written ----------------------------
LETTERS = st.sampled_from(sorted("BbOqRu")).map(lambda c: ([f"-{c}"], (f"-{c}",)))
X_OPTIONS = st.sampled_from(["frozen_modules=off", "frozen_modules=on", "utf8", "utf8=0",
                             "warn_default_encoding", "int_max_str_digits=640",
                             "no_debug_ranges", "pycache_prefix=/var/cache/pyc", "dev",
                             "faulthandler", "tracemalloc=5"])
WARNINGS = st.sampled_from(["ignore", "default", "error::DeprecationWarning"])


def _with_value(letter: str, values):
    return values.flatmap(lambda v: st.sampled_from([
        ([f"-{letter}{v}"], (f"-{letter}{v}",)), ([f"-{letter}", v], (f"-{letter}{v}",))]))


FLAG = st.one_of(LETTERS, _with_value("X", X_OPTIONS), _with_value("W", WARNINGS))
PYTHON = st.sampled_from(["python", "python3", VERSION, sys.executable, *same_binary_names()])
MODULE = st.sampled_from(["ipykernel_launcher", "ipykernel", STEP_KERNEL])
KERNEL_ARGS = st.lists(st.text(min_size=0, max_size=8), max_size=5)
REFUSED = st.sampled_from(["-v", "-S", "-i", "-d", "-x", "-c", "-h", "-V", "-Ximporttime",
                           "-Xperf", "-Xshowrefcount", "--help", "-", "--", "script.py"])


@settings(max_examples=300, deadline=None)
@given(python=PYTHON, flags=st.lists(FLAG, max_size=6), merge=st.booleans(), module=MODULE,
       attached=st.booleans(), args=KERNEL_ARGS)
def test_accepted_flags_in_any_form(python, flags, merge, module, attached, args):
    tokens = [t for written, _ in flags for t in written]
    expected = tuple(f for _, canonical in flags for f in canonical)
    if merge and flags and all(len(w) == 1 and len(w[0]) == 2 for w, _ in flags):
        tokens = ["-" + "".join(t[1] for t in tokens)]  # -B -u -O -> -BuO
    tokens += [f"-m{module}"] if attached else ["-m", module]
    got = stock_kernel_argv([python, *tokens, *args])
    assert got is not None
    assert (got.flags, got.module, got.args) == (expected, module, tuple(args))
    assert stock_kernel_argv(got.command()) == StockKernel(got.python, expected, STEP_KERNEL,
                                                           tuple(args))


@settings(max_examples=200, deadline=None)
@given(before=st.lists(FLAG, max_size=3), refused=REFUSED, after=st.lists(FLAG, max_size=3),
       module=MODULE)
def test_one_refused_option_before_the_module_refuses_the_command(before, refused, after, module):
    tokens = [t for written, _ in [*before] for t in written] + [refused]
    tokens += [t for written, _ in after for t in written]
    assert stock_kernel_argv(["python", *tokens, "-m", module, *TAIL]) is None


@settings(max_examples=100, deadline=None)
@given(module=st.text(min_size=1, max_size=20).filter(
    lambda m: m not in stepkernel.STOCK_MODULES))
def test_another_module_is_not_the_stock_kernel(module):
    assert stock_kernel_argv(["python", "-m", module, *TAIL]) is None


# -- the interpreter: the same binary in the same environment -------------------------------
def test_a_bare_name_is_looked_up_on_the_kernels_path(tmp_path, monkeypatch):
    """On a fake layout (sys.executable pointed at it): venv/bin/python with venv/pyvenv.cfg."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /x\n")
    python = venv / "bin/python"
    python.write_text("")
    python.chmod(0o755)
    (venv / "bin/mypython").symlink_to("python")
    monkeypatch.setattr(sys, "executable", str(python))
    assert same_interpreter("mypython", path=str(venv / "bin"))
    assert not same_interpreter("mypython", path=str(tmp_path))  # not on that PATH
    argv = ["mypython", "-m", "ipykernel_launcher", *TAIL]
    assert stock_kernel_argv(argv, path=str(venv / "bin")).python == "mypython"
    # a symlink to it from a directory with no pyvenv.cfg starts the base interpreter
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/python").symlink_to(python)
    assert not same_interpreter(str(tmp_path / "bin/python"))
    # ... and one in another venv is that venv's
    other = tmp_path / "other"
    (other / "bin").mkdir(parents=True)
    (other / "pyvenv.cfg").write_text("home = /x\n")
    (other / "bin/python").symlink_to(python)
    assert not same_interpreter(str(other / "bin/python"))
    # a path through a symlink to the venv's directory is that venv
    (tmp_path / "link").symlink_to(venv)
    assert same_interpreter(str(tmp_path / "link/bin/python"))
    python.chmod(0o644)  # not executable: nothing runs
    assert not same_interpreter(str(python))


PROBE = ("import json, os, sys\n"
         "print(json.dumps({'binary': os.path.realpath(sys.executable),\n"
         "                  'prefix': os.path.realpath(sys.prefix),\n"
         "                  'path': [os.path.realpath(p) for p in sys.path[1:]]}))")


def probe(python: str, cwd: Path) -> dict:
    done = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, cwd=cwd,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_rule_agrees_with_cpython_on_real_layouts(tmp_path):
    """same_interpreter(path) exactly when CPython started as `path` has this interpreter's
    prefix and sys.path (so the same packages)."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/python").symlink_to(sys.executable)  # conda-style outside a venv
    (tmp_path / "prefix").symlink_to(sys.prefix, target_is_directory=True)
    fake = tmp_path / "fake"  # a pyvenv.cfg of this venv's, in a directory of its own
    (fake / "bin").mkdir(parents=True)
    (fake / "bin/python").symlink_to(sys.executable)
    (fake / "pyvenv.cfg").write_text(
        f"home = {os.path.dirname(os.path.realpath(sys.executable))}\n")
    layouts = [sys.executable, str(tmp_path / "bin/python"),
               str(tmp_path / "prefix/bin" / Path(sys.executable).name),
               str(fake / "bin/python"), *same_binary_names()]
    if IN_VENV:  # the venv's own pyvenv.cfg, seen from another directory: another prefix
        borrowed = tmp_path / "borrowed"
        (borrowed / "bin").mkdir(parents=True)
        (borrowed / "bin/python").symlink_to(sys.executable)
        (borrowed / "pyvenv.cfg").symlink_to(Path(sys.prefix) / "pyvenv.cfg")
        layouts.append(str(borrowed / "bin/python"))
    ours = probe(sys.executable, tmp_path)
    verdicts = {}
    for python in layouts:
        verdicts[python] = same_interpreter(python)
        assert verdicts[python] == (probe(python, tmp_path) == ours), python
    # both answers occur, whichever kind of installation runs the tests
    assert set(verdicts.values()) == {True, False}, verdicts
    assert verdicts[str(tmp_path / "bin/python")] is not IN_VENV


# -- the zygote's flags: those of the kernelspec a run's kernels will use ---------------------
def test_spec_flags_reads_the_spec_jupyter_client_would(tmp_path, monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager

    from mlpipe_jupyter.kernels.fork import spec_flags

    first, second = tmp_path / "first", tmp_path / "second"
    for var, value in (("JUPYTER_PATH", f"{first}{os.pathsep}{second}"),
                       ("JUPYTER_DATA_DIR", str(tmp_path / "data")),
                       ("IPYTHONDIR", str(tmp_path / "ipython")),
                       ("JUPYTER_PREFER_ENV_PATH", "0")):
        monkeypatch.setenv(var, value)

    def write(where: Path, name: str, argv) -> None:
        (where / "kernels" / name).mkdir(parents=True, exist_ok=True)
        (where / "kernels" / name / "kernel.json").write_text(json.dumps(
            {"argv": argv, "display_name": name, "language": "python"}))

    installed = [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", *TAIL]
    write(second, "python3", installed)
    assert spec_flags("python3") == ("-Xfrozen_modules=off",)
    write(first, "Python3", ["python", "-m", "ipykernel_launcher", *TAIL])  # first on the path
    assert spec_flags("python3") == ()
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == "python"  # as it finds
    write(first, "Python3", ["python", "-m", "another_kernel", *TAIL])
    assert spec_flags("python3") is None  # nothing to fork: no zygote
    write(first, "Python3", "python -m ipykernel_launcher")  # not a list: jupyter_client's
    assert spec_flags("python3") is None
    assert spec_flags("nowhere") is None
