"""Exit codes: one rule for every `mlpipe` command, `--json` or not (cli.py). 2: a usage or spec
error, nothing was done; 1: the work did not succeed (a step failed, a check found damage); 0:
done. Every command is walked from the click group, so a new one is covered: a bad option (a bad
subcommand for a group) gives 2, and so does each input the command itself refuses (a notebook
that is not there, an unknown run or step, a bad -p), with or without --json. Real CLI
subprocesses, real runs with the local executor."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from mlpipe_jupyter.ui.cli import main
from tests.conftest import free_port, run_cli, write_notebook

OK = ["%%step hello --outputs x\nprint('hello from the step')\nx = 1"]
FAILS = ["%%step boom\n1 / 0", "%%step after --after boom\ny = 2"]
# what each command refuses itself (after click has parsed its options); `{run}` is a real run
REFUSED: dict[str, list[list[str]]] = {
    "run": [["nope.ipynb"], ["broken.ipynb"], ["plain.ipynb"], ["ok.ipynb", "-p", "x"],
            ["ok.ipynb", "--only", "ghost"], ["ok.ipynb", "--executor", "nosuch"]],
    "runs": [["-n", "many"]],
    "show": [["19990101-000000-0000"]],
    "logs": [["{run}", "ghost"], ["19990101-000000-0000", "hello"]],
    "export": [["nope.ipynb", "--to", "out"], ["broken.ipynb", "--to", "out"]],
    "image build": [["nope.ipynb"], ["plain.ipynb"]],
    "serve": [["--root", "nowhere"]],
    "publish": [["{abs}", "--name", "p"]],
    "submit": [["p", "-p", "x"]],
    "schedule add": [["p", "--cron", "0 3 * * *", "-p", "x"]],
    "schedule show": [["first"]],
    "schedule rm": [["first"]],
}
# commands whose only inputs are options click checks (the bad-option case covers them)
NOTHING_TO_REFUSE = {"verify", "gc", "doctor", "pipelines", "schedule list"}


def commands(group: click.Group = main, path: tuple[str, ...] = ()
             ) -> dict[str, click.Command]:
    """Every command and group under `group`, by its words on the command line."""
    found: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        found[" ".join((*path, name))] = command
        if isinstance(command, click.Group):
            found.update(commands(command, (*path, name)))
    return found


def has_json(command: click.Command) -> bool:
    return any("--json" in p.opts for p in command.params)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, str]:
    """A notebook directory with one succeeded run (its id) and notebooks that cannot run."""
    cwd = tmp_path_factory.mktemp("exit-codes")
    write_notebook(cwd / "ok.ipynb", OK)
    write_notebook(cwd / "fails.ipynb", FAILS)
    write_notebook(cwd / "plain.ipynb", ["x = 1"])
    (cwd / "broken.ipynb").write_text("{not json")
    done = cli(cwd, "run", "ok.ipynb", "--executor", "local")
    assert done.returncode == 0, done.stdout + done.stderr
    return cwd, json.loads(cli(cwd, "runs", "--json").stdout)[0]["id"]


def cli(cwd: Path, *args: str):
    # the client commands ask a port nothing listens on: reaching it would be exit 3, not 2
    return run_cli(*args, cwd=cwd, timeout=120,
                   env={"MLPIPE_URL": f"http://127.0.0.1:{free_port()}"})


def test_every_command_is_classified():
    leaves = {p for p, c in commands().items() if not isinstance(c, click.Group)}
    assert set(REFUSED) | NOTHING_TO_REFUSE == leaves, "say what a new command refuses"
    assert not set(REFUSED) & NOTHING_TO_REFUSE


def test_a_bad_usage_of_any_command_is_2(project):
    cwd, run_id = project
    for path, command in commands().items():
        words = path.split()
        if isinstance(command, click.Group):
            cases = [[*words, "no-such-command"]]
        else:
            cases = [[*words, "--no-such-option"]]
            for case in REFUSED.get(path, []):
                args = [a.format(run=run_id, abs=cwd / "ok.ipynb") for a in case]
                cases.append([*words, *args])
        for case in cases:
            variants = [case, [*case, "--json"]] if has_json(command) else [case]
            for args in variants:
                result = cli(cwd, *args)
                assert result.returncode == 2, (args, result.stdout, result.stderr)
                assert result.stdout == "", (args, result.stdout)  # nothing was done
                last = result.stderr.strip().splitlines()[-1]
                assert last.startswith(("error: ", "Error: ")), (args, result.stderr)


def test_a_run_that_did_not_succeed_is_1_and_reading_it_is_0(project):
    cwd, _ = project
    failed = cli(cwd, "run", "fails.ipynb", "--executor", "local")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    run = json.loads(cli(cwd, "runs", "--json").stdout)[0]
    assert run["state"] == "failed"
    for args in (["runs"], ["runs", "--json"], ["show", run["id"]],
                 ["show", run["id"], "--json"], ["logs", run["id"], "boom"]):
        result = cli(cwd, *args)
        assert result.returncode == 0, (args, result.stderr)
    skipped = cli(cwd, "logs", run["id"], "after")  # it never ran: there is no log to show
    assert skipped.returncode == 2 and "has no log (it was skipped)" in skipped.stderr


def test_damage_found_by_verify_is_1_with_or_without_json(project):
    cwd, _ = project
    for args in (["verify"], ["verify", "--json"]):
        assert cli(cwd, *args).returncode == 0
    artifacts = cwd / ".mlpipe" / "artifacts"
    data = next(p for p in artifacts.glob("*/data/*") if p.is_file())
    data.write_bytes(b"changed")
    for args in (["verify"], ["verify", "--json"]):
        result = cli(cwd, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
    assert json.loads(cli(cwd, "verify", "--json").stdout)["damaged"][0]["problem"] == \
        "content changed"


def test_no_history_yet_is_an_empty_listing_with_or_without_json(tmp_path):
    listed = cli(tmp_path, "runs")
    assert listed.returncode == 0 and listed.stdout == ""
    assert listed.stderr == f"no run history at {tmp_path}/.mlpipe (run a pipeline first, or " \
                            "pass --home)\n"
    as_json = cli(tmp_path, "runs", "--json")
    assert (as_json.returncode, as_json.stdout) == (0, "[]\n")
    assert not (tmp_path / ".mlpipe").exists()  # reading wrote nothing
