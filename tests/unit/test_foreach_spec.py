"""`%%step --foreach` and its options: parsing, the one-line errors, the spec's JSON and keys."""

from __future__ import annotations

import pytest

from mlpipe_jupyter.errors import UsageError
from mlpipe_jupyter.model.cache import batch_key, cache_key, key_parts, miss_reasons
from mlpipe_jupyter.model.options import parse_step_line
from mlpipe_jupyter.model.spec import PipelineSpec, StepSpec


def test_the_five_options_parse_into_the_spec():
    step = parse_step_line("score --foreach rows --batch-size 100 --workers 2 --max-failures 3 "
                           "--item-timeout 1.5 --inputs rows model --outputs preds")
    assert (step.foreach, step.batch_size, step.workers, step.max_failures,
            step.item_timeout) == ("rows", 100, 2, 3, 1.5)
    assert parse_step_line("s --foreach images/ --inputs images/").foreach == "images/"
    plain = parse_step_line("s --inputs rows")
    assert (plain.foreach, plain.batch_size, plain.workers, plain.max_failures,
            plain.item_timeout) == (None, 1, None, 0, None)


@pytest.mark.parametrize(("line", "message"), [
    ("s --foreach rows --inputs x", "step `s` --foreach: `rows` is not one of the step's "
                                    "--inputs (x)"),
    ("s --foreach rows", "step `s` --foreach: `rows` is not one of the step's --inputs (none)"),
    ("s --foreach d.csv --inputs d.csv", "step `s` --foreach: `d.csv` is a file input: only a "
                                         "directory (`d.csv/`) splits into items"),
    ("s --foreach ../x/ --inputs x", "step `s` --foreach: `../x/` escapes the step's working "
                                     "directory"),
    ("s --foreach r --inputs r --batch-size 0", "step `s` --batch-size: must be 1 or more, "
                                                "got 0"),
    ("s --foreach r --inputs r --workers 0", "step `s` --workers: must be 1 or more, got 0"),
    ("s --foreach r --inputs r --max-failures -1", "step `s` --max-failures: must be 0 or more, "
                                                   "got -1"),
    ("s --foreach r --inputs r --item-timeout 0", "step `s` --item-timeout: must be a positive "
                                                  "number of seconds"),
    ("s --batch-size 5 --inputs r", "step `s` --batch-size: only means something with --foreach"),
    ("s --workers 2", "step `s` --workers: only means something with --foreach"),
    ("s --max-failures 1", "step `s` --max-failures: only means something with --foreach"),
    ("s --item-timeout 3", "step `s` --item-timeout: only means something with --foreach"),
])
def test_a_wrong_fanout_is_one_line_naming_step_and_option(line, message):
    with pytest.raises(UsageError) as info:
        parse_step_line(line)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value) and info.value.step == "s"
    assert info.value.option == message.split()[2].rstrip(":")


def test_the_json_round_trip_keeps_the_fanout_and_older_specs_read_the_same():
    step = StepSpec(name="s", code="y = rows", inputs=("rows",), outputs=("y",),
                    foreach="rows", batch_size=10, workers=3, max_failures=2, item_timeout=4.0)
    spec = PipelineSpec(steps=(step,))
    assert PipelineSpec.from_json(spec.to_json()) == spec
    old = {"name": "s", "code": "x = 1", "inputs": [], "outputs": [], "after": [],
           "inputs_inferred": False, "env": {}, "retries": 0, "timeout": None,
           "no_cache": False, "image": None, "cpus": None, "memory": None, "gpus": None,
           "network": None}
    assert StepSpec.from_dict(old).to_dict() == old  # no new keys in a plain step's JSON


def _parts(step: StepSpec, digests: dict[str, str]) -> dict:
    return key_parts(PipelineSpec(steps=(step,)), step, {}, digests, "env", "1")


def test_the_fanout_enters_the_key_and_batch_keys_leave_out_the_split_input():
    plain = StepSpec(name="s", code="y = rows", inputs=("rows", "m"), outputs=("y",))
    fan = StepSpec(name="s", code="y = rows", inputs=("rows", "m"), outputs=("y",),
                   foreach="rows", batch_size=10)
    assert "foreach" not in _parts(plain, {"rows": "a", "m": "b"})  # older keys unchanged
    parts = _parts(fan, {"rows": "a", "m": "b"})
    assert cache_key(parts) != cache_key(_parts(plain, {"rows": "a", "m": "b"}))
    wider = StepSpec(name="s", code="y = rows", inputs=("rows", "m"), outputs=("y",),
                     foreach="rows", batch_size=20)
    assert miss_reasons(parts, _parts(wider, {"rows": "a", "m": "b"})) == [
        "step --foreach options changed"]
    more = _parts(fan, {"rows": "a2", "m": "b"})  # items added to the split input
    assert batch_key(parts, fan, "items1") == batch_key(more, fan, "items1")
    assert batch_key(parts, fan, "items1") != batch_key(parts, fan, "items2")
    assert batch_key(parts, fan, "items1") != batch_key(_parts(fan, {"rows": "a", "m": "c"}),
                                                        fan, "items1")
    workers = StepSpec(name="s", code="y = rows", inputs=("rows", "m"), outputs=("y",),
                       foreach="rows", batch_size=10, workers=4, item_timeout=9.0)
    assert cache_key(_parts(workers, {"rows": "a", "m": "b"})) == cache_key(parts)
