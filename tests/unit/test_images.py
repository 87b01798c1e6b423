"""Runtime image recipes: requirements merging, Dockerfile text, the hash that tags an image,
the build context, and the failing line of a build. Pure: no Docker engine needed."""

from __future__ import annotations

import io
import tarfile

import pytest

from mlpipe_jupyter import __version__
from mlpipe_jupyter.errors import UsageError
from mlpipe_jupyter.executors.images import (
    PYTHON,
    REPOSITORY,
    BuildOutput,
    Recipe,
    package_digest,
    package_files,
    pipeline_requirements,
)
from mlpipe_jupyter.model.spec import PipelineSpec

BASE_ID = "sha256:" + "1" * 64


def recipe(**kw) -> Recipe:
    return Recipe(**{"base": "python:3.11-slim", "base_id": BASE_ID, "requirements": "", **kw})


def test_requirements_merge_file_beside_and_pip(tmp_path):
    (tmp_path / "requirements.txt").write_text("# the model\nscikit-learn\n\npandas>=2\n")
    (tmp_path / "extra.txt").write_text("pyarrow\n")
    spec = PipelineSpec(requirements="extra.txt", pip=("six==1.16.0",))
    text = pipeline_requirements(spec, tmp_path)
    assert text == ("# extra.txt\npyarrow\n# requirements.txt\nscikit-learn\npandas>=2\n"
                    "# %%pipeline_setup --pip\nsix==1.16.0\n")


def test_requirements_named_file_is_not_read_twice(tmp_path):
    (tmp_path / "requirements.txt").write_text("pandas\n")
    spec = PipelineSpec(requirements="requirements.txt")
    assert pipeline_requirements(spec, tmp_path) == "# requirements.txt\npandas\n"


def test_no_requirements_is_empty(tmp_path):
    assert pipeline_requirements(PipelineSpec(), tmp_path) == ""


def test_missing_requirements_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"--requirements reqs.txt: no such file"):
        pipeline_requirements(PipelineSpec(requirements="reqs.txt"), tmp_path)


@pytest.mark.parametrize("line", ["-r other.txt", "--requirement=other.txt", "-e ."])
def test_requirements_naming_other_files_are_refused(tmp_path, line):
    (tmp_path / "requirements.txt").write_text(f"pandas\n{line}\n")
    with pytest.raises(UsageError, match="names another file"):
        pipeline_requirements(PipelineSpec(), tmp_path)


def test_dockerfile_layers_in_cache_friendly_order():
    text = recipe(requirements="# requirements.txt\npandas\n").dockerfile()
    lines = text.splitlines()
    assert lines[1] == "FROM python:3.11-slim"
    assert "RUN python3 -m venv --system-site-packages /opt/mlpipe" in lines
    pip_runtime = next(i for i, line in enumerate(lines) if "papermill==" in line)
    pip_reqs = lines.index("RUN pip install -r /opt/mlpipe-build/requirements.txt")
    package = next(i for i, line in enumerate(lines) if "--no-deps" in line)
    assert pip_runtime < pip_reqs < package  # the package changes most often: last
    for name in ("ipykernel==", "cloudpickle=="):
        assert name in lines[pip_runtime]
    assert PYTHON == "/opt/mlpipe/bin/python"


def test_dockerfile_without_requirements_has_no_requirements_layer():
    assert "requirements.txt" not in recipe().dockerfile()


def test_tag_is_a_stable_hash_of_everything_that_goes_in():
    one = recipe(requirements="pandas\n")
    assert one.tag == recipe(requirements="pandas\n").tag
    assert one.tag.startswith(REPOSITORY + ":") and len(one.tag.split(":")[1]) == 16
    others = [
        recipe(requirements="pandas\nsix\n"),  # requirements
        recipe(requirements="pandas\n", base_id="sha256:" + "2" * 64),  # a rebuilt base
        recipe(requirements="pandas\n", base="debian:12"),  # another base (Dockerfile text)
        recipe(requirements="pandas\n", pins=("papermill==0.1",)),  # runtime packages
        recipe(requirements="pandas\n", files=(*package_files(), ("new.py", b"x = 1\n"))),
    ]
    tags = {r.tag for r in others}
    assert len(tags) == len(others) and one.tag not in tags


def test_package_files_are_this_package_without_caches():
    names = [rel for rel, _ in package_files()]
    assert "__init__.py" in names and "step/runtime.py" in names and "step/main.py" in names
    assert "executors/docker.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


def test_context_holds_dockerfile_package_and_requirements():
    r = recipe(requirements="pandas\n")
    with tarfile.open(fileobj=io.BytesIO(r.context())) as tar:
        names = tar.getnames()
        assert tar.extractfile("Dockerfile").read().decode() == r.dockerfile()
        assert tar.extractfile("requirements.txt").read() == b"pandas\n"
        pyproject = tar.extractfile("package/pyproject.toml").read().decode()
    assert f'version = "{__version__}"' in pyproject and "dependencies" not in pyproject
    assert "package/mlpipe_jupyter/runtime.py" in names
    assert r.context() == r.context()  # reproducible bytes (mtime 0)


def test_labels_name_the_recipe():
    r = recipe()
    assert r.labels() == {"mlpipe.runtime": r.digest(), "mlpipe.version": __version__,
                          "mlpipe.base": "python:3.11-slim", "mlpipe.package": package_digest()}


def test_build_output_finds_the_failing_line():
    lines = []
    out = BuildOutput(lines.append, verbose=False)
    out.feed({"stream": "Step 7/9 : RUN pip install -r /opt/mlpipe-build/requirements.txt\n"})
    out.feed({"stream": " ---> Running in 1234\n"})
    out.feed({"stream": "ERROR: Could not find a version that satisfies the requirement nope\n"})
    out.feed({"stream": "ERROR: No matching distribution found for nope\n"})
    out.feed({"stream": "\n"})
    out.feed({"error": "The command '/bin/sh -c pip install' returned a non-zero code: 1",
              "errorDetail": {"message": "The command returned a non-zero code: 1"}})
    assert lines == ["Step 7/9 : RUN pip install -r /opt/mlpipe-build/requirements.txt"]
    assert out.failing_line() == "ERROR: No matching distribution found for nope"
    assert out.error == "The command returned a non-zero code: 1"


def test_build_output_verbose_and_image_id():
    lines = []
    out = BuildOutput(lines.append, verbose=True)
    out.feed({"stream": "Collecting pandas\n  Downloading pandas.whl\n"})
    out.feed({"aux": {"ID": "sha256:abc"}})
    assert lines == ["Collecting pandas", "  Downloading pandas.whl"]
    assert out.image_id == "sha256:abc"
    assert out.failing_line() == "Downloading pandas.whl"


def test_build_output_joins_pieces_and_strips_colours():
    lines = []
    out = BuildOutput(lines.append, verbose=False)
    out.feed({"stream": "Step 7/9 : RUN pip install x"})
    out.feed({"stream": "\n"})
    out.feed({"stream": "\x1b[91mERROR: No matching distribution found for x\n\x1b[0m"})
    out.feed({"stream": "Removing intermediate container 0d5f07"})
    out.feed({"error": "The command returned a non-zero code: 1"})
    assert lines == ["Step 7/9 : RUN pip install x"]
    assert out.failing_line() == "ERROR: No matching distribution found for x"
