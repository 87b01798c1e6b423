"""DAG assembly: every validation error is refused with one line naming the steps."""

from __future__ import annotations

import pytest

from mlpipe_jupyter.errors import SpecError
from mlpipe_jupyter.model.builder import PipelineBuilder
from mlpipe_jupyter.model.dag import build_dag, generations, select, topo_order
from mlpipe_jupyter.model.spec import PipelineSpec, StepSpec


def spec_of(*steps: tuple[str, str]) -> PipelineSpec:
    b = PipelineBuilder()
    for line, code in steps:
        b.add_step(line, code)
    return b.spec()


def test_edges_carry_artifacts_and_order_follows_the_notebook():
    spec = spec_of(("load --outputs raw", "raw = 1"),
                   ("split --inputs raw --outputs train test", "train = test = raw"),
                   ("b --inputs train", "train"), ("a --inputs train test", "train"))
    g = build_dag(spec)
    assert g.edges["load", "split"]["artifacts"] == ["raw"]
    assert g.edges["split", "a"]["artifacts"] == ["train", "test"]
    assert topo_order(g) == ["load", "split", "b", "a"]
    assert generations(g) == [["load"], ["split"], ["b", "a"]]


@pytest.mark.parametrize("steps, message", [
    ((("a --inputs y --outputs x", "x = y"), ("b --inputs x --outputs y", "y = x")),
     "cycle between steps: a -> b -> a"),
    ((("a --outputs x", "x=1"), ("b --outputs x", "x=2")),
     "steps `a` and `b` both declare output `x`"),
    ((("a --outputs d/", "1"), ("b --outputs d", "2")), "both declare output `d`"),
    ((("a --inputs nothing", "nothing"),), "step `a` reads variable `nothing`, but no step"),
    ((("a --inputs data.csv", "1"),), "no such file exists beside the notebook"),
    ((("a --after ghost", "1"),), "step `a` --after: no step named `ghost`"),
    ((("a --inputs x --outputs x", "x"),), "step `a` reads its own output `x`"),
])
def test_validation_errors(steps, message):
    with pytest.raises(SpecError) as info:
        build_dag(spec_of(*steps))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_duplicate_and_invalid_names_in_a_loaded_spec():
    dup = PipelineSpec(steps=(StepSpec("a", "1"), StepSpec("a", "2")))
    with pytest.raises(SpecError, match="duplicate step name `a`"):
        build_dag(dup)
    with pytest.raises(SpecError, match="invalid step name `b c`"):
        build_dag(PipelineSpec(steps=(StepSpec("b c", "1"),)))
    with pytest.raises(SpecError, match="escapes the step's working directory"):
        build_dag(PipelineSpec(steps=(StepSpec("a", "1", outputs=("../x.csv",)),)))


def test_source_files_beside_the_notebook_are_inputs():
    spec = spec_of(("a --inputs data/in.csv --outputs x", "x = 1"))
    g = build_dag(spec, file_exists=lambda p: p == "data/in.csv")
    assert g.nodes["a"]["sources"] == ("data/in.csv",)


def test_after_orders_without_data():
    g = build_dag(spec_of(("a", "1"), ("b --after a", "2")))
    assert g.edges["a", "b"]["artifacts"] == []


def test_selection():
    g = build_dag(spec_of(("a --outputs x", "x=1"), ("b --inputs x --outputs y", "y=x"),
                          ("c --inputs y", "y"), ("d --inputs x", "x")))
    assert select(g) == {"a", "b", "c", "d"}
    assert select(g, only=["b"]) == {"b"}
    assert select(g, from_="b") == {"b", "c"}
    with pytest.raises(SpecError, match="--from: no step named `zz`"):
        select(g, from_="zz")
