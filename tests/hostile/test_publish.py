"""What a hostile step can leave for the runner to publish, straight against the artifact store
and a real file system: links that climb out one way or another, links on the way to an
output, special files, setuid bits. The runs in test_symlinks.py show the same refusals reach
the user as one line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mlpipe_jupyter.executors.sandbox import open_dirs, settle
from mlpipe_jupyter.run.artifacts import ArtifactStore
from mlpipe_jupyter.safefs import Refused


@pytest.fixture
def work(tmp_path) -> Path:
    path = tmp_path / "work"
    (path / "data" / "a" / "b").mkdir(parents=True)
    (path / "data" / "x.txt").write_text("x")
    return path


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def publish(store, work, item="data/"):
    return store.publish_output(work, item, label=f"output `{item}`")


@pytest.mark.parametrize(("where", "target"), [
    ("data/up", "../x.txt"),  # one level too far up
    ("data/a/b/up", "../../../../outside.txt"),
    ("data/abs", "/etc/passwd"),
    ("data/self", "."),  # the output itself is inside: fine, see below
])
def test_a_link_that_climbs_out_of_a_directory_output_is_refused(store, work, where, target):
    (work / "outside.txt").write_text("outside")
    (work / where).symlink_to(target)
    if target == ".":
        digest = publish(store, work)
        assert os.readlink(store.data_path(digest) / "self") == "."
        return
    with pytest.raises(Refused) as err:
        publish(store, work)
    assert str(err.value) == (f"output `data/` holds a symlink out of it: `{where}` -> "
                              f"{target!r}")


def test_a_chain_of_links_each_inside_that_leads_out_is_refused(store, work):
    # data/a/b/d -> ../.. is data itself; data/a/b/s -> d/../.. reads as data/a but goes
    # through d first: data/../.. is above the work dir
    (work / "data/a/b/d").symlink_to("../..")
    (work / "data/a/b/s").symlink_to("d/../..")
    with pytest.raises(Refused) as err:
        publish(store, work)
    assert str(err.value) == "output `data/` holds a symlink out of it: `data/a/b/s` -> 'd/../..'"
    assert [p.name for p in store.root.iterdir() if p.name != ".staging"] == []  # nothing


def test_a_link_on_the_way_to_a_file_output_is_refused(store, work, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "model.pkl").write_text("host file")
    (work / "models").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(Refused) as err:
        publish(store, work, "models/model.pkl")
    assert str(err.value) == (f"output `models/model.pkl` goes through a symlink: `models` -> "
                              f"{str(tmp_path / 'elsewhere')!r}")


def test_a_fifo_in_an_output_is_refused_without_blocking(store, work):
    os.mkfifo(work / "data" / "pipe")
    with pytest.raises(Refused) as err:
        publish(store, work)
    assert str(err.value) == ("output `data/` holds a FIFO: `data/pipe`; only files, "
                              "directories and links are published")
    os.mkfifo(work / "out.fifo")
    with pytest.raises(Refused, match="output `out.fifo` is a FIFO, neither a file nor a "
                                      "directory"):
        publish(store, work, "out.fifo")


def test_a_variable_holds_no_link_at_all(store, tmp_path):
    out = tmp_path / "out"
    (out / "v" / "data").mkdir(parents=True)
    (out / "v" / "meta.json").write_text('{"kind": "variable", "serializer": "json"}')
    (out / "v" / "data" / "value.json").write_text("1")
    (out / "v" / "data" / "alias.json").symlink_to("value.json")  # even one pointing inside
    with pytest.raises(Refused) as err:
        store.publish_output_variable(out, "v", label="output `v`")
    assert str(err.value) == "output `v` holds a symlink: `v/data/alias.json` -> 'value.json'"
    (out / "v" / "data" / "alias.json").unlink()
    assert store.load(store.publish_output_variable(out, "v", label="output `v`")) == 1


def test_published_links_are_part_of_the_digest(store, work):
    (work / "data" / "alias").symlink_to("x.txt")
    first = publish(store, work)
    (work / "data" / "alias").unlink()
    (work / "data" / "alias").symlink_to("a")
    assert publish(store, work) != first


def test_settling_a_work_dir_clears_setuid_and_follows_no_link(tmp_path, work):
    (work / "tool").write_text("#!/bin/sh\n")
    (work / "tool").chmod(0o6755)
    (work / "data" / "a").chmod(0o2775)
    outside = tmp_path / "outside"
    outside.write_text("o")
    outside.chmod(0o4755)
    (work / "link").symlink_to(outside)
    owner = (os.getuid(), os.getgid())
    if os.getuid() == 0:  # as the runner does for root: the step's files go back to root
        for path in (work, work / "tool", work / "data", work / "data" / "a"):
            os.chown(path, 65534, 65534)
        os.chown(work / "link", 65534, 65534, follow_symlinks=False)
    settle(open_dirs([work]), owner)
    assert stat.S_IMODE((work / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((work / "data" / "a").stat().st_mode) == 0o775
    assert stat.S_IMODE(outside.stat().st_mode) == 0o4755  # the link's target: untouched
    for path in (work, work / "tool", work / "data", work / "data" / "a", work / "link"):
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == owner, path


def test_a_directory_output_nests_at_most_max_depth_levels(store, tmp_path):
    from mlpipe_jupyter.safefs import MAX_DEPTH

    work = tmp_path / "deep"
    path = work / "data"
    path.mkdir(parents=True)
    for _ in range(MAX_DEPTH):
        path = path / "a"
        path.mkdir()
    (path / "f.txt").write_text("deepest")
    data = store.data_path(publish(store, work))
    assert (data / "/".join(["a"] * MAX_DEPTH) / "f.txt").read_text() == "deepest"
    (path / "a").mkdir()  # one level more
    with pytest.raises(Refused) as err:
        publish(store, work)
    assert str(err.value) == f"output `data/` is nested deeper than {MAX_DEPTH} levels"
    assert [p for p in (store.root / ".staging").rglob("*") if not p.is_dir()] == []
