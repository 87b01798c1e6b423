"""The one line buffer (step/lines.py) and what is built on it: the papermill engine's log
writer, the runtime image build's output, and the tail of a container's output."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlpipe_jupyter.executors.daemon import LogTail
from mlpipe_jupyter.executors.images import BuildOutput
from mlpipe_jupyter.step.engine import LineWriter
from mlpipe_jupyter.step.lines import LineBuffer


def test_bytes_keep_partial_lines_and_utf8_split_across_chunks():
    lines = LineBuffer()
    snow = "❄".encode()
    assert lines.feed(b"one\ntw") == ["one"]
    assert lines.feed(b"o\r\n" + snow[:1]) == ["two"]
    assert lines.feed(snow[1:] + b" flake\nlast") == ["❄ flake"]
    assert lines.flush() == ["last"]
    assert lines.flush() == []


def test_text_keeps_empty_lines_and_a_carriage_return_inside_a_line():
    lines = LineBuffer()
    assert lines.feed("a\n\n") == ["a", ""]
    assert lines.feed(" 10%\r 20%") == []
    assert lines.feed("\r\nb\r") == [" 10%\r 20%"]
    assert lines.flush() == ["b\r"]  # not ended by a newline: kept as it came


def test_undecodable_and_truncated_bytes_become_replacement_characters():
    lines = LineBuffer()
    assert lines.feed(b"bad \xff byte\n") == ["bad \ufffd byte"]
    assert lines.feed("é".encode()[:1]) == []
    assert lines.flush() == ["\ufffd"]


def test_the_engine_writer_forwards_whole_lines_and_the_rest_on_flush():
    seen: list[str] = []
    writer = LineWriter(seen.append)
    assert writer.write("x = 1\ny") == len("x = 1\ny")
    assert seen == ["x = 1"]
    writer.write(" = 2\r\n")
    writer.write("partial")
    writer.flush()
    writer.flush()
    assert seen == ["x = 1", "y = 2", "partial"]


def test_a_build_error_flushes_the_line_it_interrupted():
    out = BuildOutput(lambda line: None, verbose=False)
    out.feed({"stream": "Step 2/3 : RUN pip install nope\n"})
    out.feed({"stream": "\x1b[91mERROR: No matching distribution"})
    out.feed({"stream": " found for nope\x1b[0m"})
    out.feed({"error": "The command returned a non-zero code: 1"})
    assert out.failing_line() == "ERROR: No matching distribution found for nope"


def test_a_log_tail_passes_every_line_and_keeps_the_last_log_lines():
    seen: list[str] = []

    def sink(line: str) -> bool:
        seen.append(line)
        return not line.startswith("##")

    tail = LogTail(sink, keep=2)
    tail.follow(iter([b"one\n##mark 1\ntw", b"o\nthree\n##mark 2\n", b"four"]))
    assert seen == ["one", "##mark 1", "two", "three", "##mark 2", "four"]
    assert tail.lines() == ["three", "four"]


def test_a_broken_stream_passes_its_begun_line_on_then_raises():
    seen: list[str] = []

    def stream() -> Iterator[bytes]:
        yield b"first\nhalf a li"
        raise ConnectionError("the container was removed")

    def sink(line: str) -> bool:
        seen.append(line)
        return True

    tail = LogTail(sink)
    with pytest.raises(ConnectionError, match="removed"):
        tail.follow(stream())
    assert seen == ["first", "half a li"]
    assert tail.lines() == seen
