"""Fan-out steps (`--foreach`) on real kernels, local executor: the items of a list, a
DataFrame, an array or a directory in mini-batches on worker kernels, gathered in item order;
failures against --max-failures; a hanging batch killed by --item-timeout; two workers really
at once."""

from __future__ import annotations

import json

from tests.foreachkit import marks, run, value


def test_a_list_in_batches_on_two_workers_gathered_in_item_order(tmp_path):
    # later items finish first (uneven durations): the gathered order is still item order
    runner, records = run(tmp_path, [
        "%%step make --outputs nums\nnums = list(range(10))",
        "%%pipeline_params\nfactor = 3",
        "%%step score --foreach nums --batch-size 3 --workers 2 --inputs nums --outputs "
        "scores tags\nimport time\ntime.sleep(0.05 * (10 - nums[0]) / 3)\n"
        "scores = [n * factor for n in nums]\ntags = {'first': nums[0]}",
    ])
    assert runner.state == "succeeded", records.steps
    assert value(runner, "score", "scores") == [n * 3 for n in range(10)]
    # anything but a sequence, array or frame: one element per mini-batch
    assert value(runner, "score", "tags") == [{"first": 0}, {"first": 3}, {"first": 6},
                                              {"first": 9}]
    assert records.steps["score"]["fanout"]["batches"] == {
        "total": 4, "succeeded": 4, "failed": 0, "cached": 0}
    assert ("score", 4, 4) in records.progress


def test_a_dataframe_and_an_array_split_by_rows(tmp_path):
    runner, records = run(tmp_path, [
        "%%step make --outputs df arr\nimport numpy as np, pandas as pd\n"
        "df = pd.DataFrame({'x': range(7)}, index=[f'r{i}' for i in range(7)])\n"
        "arr = np.arange(14).reshape(7, 2)",
        "%%step frame --foreach df --batch-size 2 --inputs df --outputs out\n"
        "assert isinstance(df, pd.DataFrame) and len(df) <= 2\nout = df.assign(y=df.x * 2)",
        "%%pipeline_setup\nimport numpy as np\nimport pandas as pd",
        "%%step array --foreach arr --batch-size 3 --inputs arr --outputs total\n"
        "assert isinstance(arr, np.ndarray) and arr.shape[1] == 2\ntotal = arr.sum(axis=1)",
    ])
    assert runner.state == "succeeded", records.steps
    out = value(runner, "frame", "out")
    assert list(out.index) == [f"r{i}" for i in range(7)] and list(out.y) == [
        2 * i for i in range(7)]
    assert value(runner, "array", "total").tolist() == [4 * i + 1 for i in range(7)]


def test_a_directory_splits_into_sorted_paths_and_file_outputs_merge(tmp_path):
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    for name in ("b.txt", "a.txt", "sub/c.txt"):
        (tmp_path / "docs" / name).write_text(name.upper())
    runner, records = run(tmp_path, [
        "%%step upper --foreach docs/ --batch-size 2 --inputs docs/ --outputs lengths out/\n"
        "import os\nos.makedirs('out', exist_ok=True)\nlengths = []\n"
        "for path in ITEMS:\n"
        "    text = open(path).read()\n"
        "    lengths.append([path, len(text)])\n"
        "    open(os.path.join('out', os.path.basename(path)), 'w').write(text.lower())",
    ])
    assert runner.state == "succeeded", records.steps
    assert value(runner, "upper", "lengths") == [["docs/a.txt", 5], ["docs/b.txt", 5],
                                                 ["docs/sub/c.txt", 9]]
    out = runner.artifacts.data_path(runner.outputs["upper"]["out/"])
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt", "c.txt"]
    assert (out / "c.txt").read_text() == "sub/c.txt"


def test_two_batches_writing_one_file_is_an_error_naming_both(tmp_path):
    runner, records = run(tmp_path, [
        "%%step make --outputs nums\nnums = [1, 2, 3]",
        "%%step clash --foreach nums --inputs nums --outputs out/\nimport os\n"
        "os.makedirs('out')\nopen(f'out/{nums[0] % 2}.txt', 'w').write('x')",
    ])
    assert runner.state == "failed"
    assert records.steps["clash"]["reason"] == (
        "step `clash`: `out/1.txt` was written by mini-batch 0 (item 0) and mini-batch 2 "
        "(item 2)")


FAILING = ("%%step score --foreach nums --batch-size 2 --max-failures {n} --inputs nums "
           "--outputs doubled\nif 3 in nums or 7 in nums:\n    raise ValueError(f'bad {{nums}}')"
           "\ndoubled = [x * 2 for x in nums]")


def test_failures_within_max_failures_leave_out_their_items(tmp_path):
    runner, records = run(tmp_path, ["%%step make --outputs nums\nnums = list(range(10))",
                                     FAILING.format(n=2)])
    assert runner.state == "succeeded", records.steps
    assert value(runner, "score", "doubled") == [0, 2, 8, 10, 16, 18]
    fanout = records.steps["score"]["fanout"]
    assert fanout["batches"] == {"total": 5, "succeeded": 3, "failed": 2, "cached": 0}
    assert [(f["items"], f["ename"], f["evalue"], f["line"]) for f in fanout["failures"]] == [
        ([2, 3], "ValueError", "bad [2, 3]", 2), ([6, 7], "ValueError", "bad [6, 7]", 2)]
    assert "raise ValueError" in fanout["failures"][0]["traceback"]


def test_failures_beyond_max_failures_fail_the_step_in_one_line(tmp_path):
    runner, records = run(tmp_path, ["%%step make --outputs nums\nnums = list(range(10))",
                                     FAILING.format(n=1)])
    assert runner.state == "failed"
    step = records.steps["score"]
    assert step["reason"] == ("step `score`: 2 of 5 mini-batches failed (--max-failures 1); "
                              "first: items 2-3: ValueError: bad [2, 3], line 2")
    assert step["error"]["ename"] == "ValueError"
    assert [f["items"] for f in step["fanout"]["failures"]] == [[2, 3], [6, 7]]
    assert all("raise ValueError" in f["traceback"] for f in step["fanout"]["failures"])


def test_a_hanging_batch_is_killed_and_its_worker_replaced(tmp_path):
    runner, records = run(tmp_path, [
        "%%step make --outputs nums\nnums = list(range(4))",
        "%%step score --foreach nums --workers 1 --item-timeout 3 --max-failures 1 "
        "--inputs nums --outputs out\nimport os, time\nif nums == [1]:\n    time.sleep(600)\n"
        "out = [(nums[0], os.getpid())]",
    ])
    assert runner.state == "succeeded", records.steps
    out = value(runner, "score", "out")
    assert [n for n, _ in out] == [0, 2, 3]
    assert out[0][1] != out[1][1]  # one worker, replaced after the hang
    [failure] = records.steps["score"]["fanout"]["failures"]
    assert (failure["items"], failure["ename"]) == ([1, 1], "TimeoutError")


def test_two_workers_really_run_two_batches_at_once(tmp_path, monkeypatch):
    marks(tmp_path, monkeypatch)
    # each batch waits (bounded) until the other batch has started: only concurrent workers
    # let both see each other; the timestamps they write overlap
    runner, records = run(tmp_path, [
        "%%step make --outputs nums\nnums = [0, 1]",
        "%%step both --foreach nums --workers 2 --inputs nums --outputs spans\n"
        "import os, time\nopen(f'{os.environ[\"MARK\"]}/{nums[0]}', 'w').close()\n"
        "start = time.time()\nother = f'{os.environ[\"MARK\"]}/{1 - nums[0]}'\n"
        "while not os.path.exists(other) and time.time() - start < 30:\n"
        "    time.sleep(0.01)\nspans = [(start, time.time())]",
    ], max_parallel=2)
    assert runner.state == "succeeded", records.steps
    (a0, a1), (b0, b1) = value(runner, "both", "spans")
    assert a0 < b1 and b0 < a1  # the two intervals overlap
    assert a1 - a0 < 30 and b1 - b0 < 30


def test_the_step_record_is_json(tmp_path):
    runner, records = run(tmp_path, ["%%step make --outputs nums\nnums = [1]",
                                     "%%step one --foreach nums --inputs nums --outputs y\n"
                                     "y = nums"])
    assert json.loads(json.dumps(records.steps["one"]["fanout"]))["batches"]["total"] == 1


def test_a_link_a_batch_plants_in_its_outputs_is_refused_not_followed(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the host's secret")
    runner, records = run(tmp_path, [
        "%%step make --outputs nums\nnums = [1, 2]",
        "%%step plant --foreach nums --max-failures 1 --inputs nums --outputs out/\nimport os\n"
        "os.makedirs('out')\n"
        f"if nums[0] == 2:\n    os.symlink({str(secret)!r}, 'out/leak.txt')\n"
        "else:\n    open('out/ok.txt', 'w').write('ok')",
    ])
    assert runner.state == "succeeded", records.steps
    (failure,) = records.steps["plant"]["fanout"]["failures"]
    assert failure["items"] == [1, 1] and failure["ename"] == "Refused"
    assert "symlink" in failure["evalue"], failure
    out = runner.artifacts.data_path(runner.outputs["plant"]["out/"])
    assert sorted(p.name for p in out.iterdir()) == ["ok.txt"]
    kept = [p for p in (tmp_path / ".mlpipe" / "batches").rglob("*") if p.is_symlink()]
    assert kept == []  # nothing the step planted is kept for reuse either
