"""The local environment fingerprint that keys reuse for the `local` executor."""

from __future__ import annotations

import hashlib
import sys
from functools import lru_cache


@lru_cache(maxsize=1)
def local_environment() -> str:
    """Python version and every installed distribution with its version, hashed."""
    from importlib.metadata import distributions

    names = sorted({f"{d.metadata['Name']}=={d.version}".lower() for d in distributions()
                    if d.metadata["Name"]})
    text = sys.version + "\n" + "\n".join(names)
    return "local:" + hashlib.sha256(text.encode()).hexdigest()[:16]
