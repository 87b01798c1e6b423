"""Splitting a stream of output into lines: the one line buffer of the package. A stream comes
in pieces that need not end at a line's end (nor, for bytes, at a character's end).

Import-light (only the standard library): it runs in step containers as well as the runner.
"""

from __future__ import annotations

import codecs


class LineBuffer:
    """Chunks of bytes or of text in, complete lines out; a line ending in `\\r\\n` comes out
    without the `\\r`. Bytes are decoded as UTF-8, a character split across chunks included
    (undecodable bytes become U+FFFD). One buffer takes one kind: bytes or text."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._rest = ""  # the line begun and not ended yet

    def feed(self, chunk: bytes | str) -> list[str]:
        """The lines this chunk completes."""
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        if "\n" not in text:
            self._rest += text
            return []
        *lines, self._rest = (self._rest + text).split("\n")
        return [line.rstrip("\r") for line in lines]

    def flush(self) -> list[str]:
        """At the end of the stream: the last line, when it was not ended (else nothing)."""
        rest = self._rest + self._decoder.decode(b"", final=True)
        self._rest = ""
        return [rest] if rest else []
