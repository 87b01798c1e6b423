"""Run the mlpipe CLI in this process and, at exit, write its wall time and this process's own
CPU seconds (the runner's: kernels and the zygote are not in RUSAGE_SELF) to OUT.json.

    python bench/selfcpu.py OUT.json mlpipe-args...
"""

from __future__ import annotations

import atexit
import json
import resource
import sys
import time

_T0 = time.perf_counter()


def dump(path: str) -> None:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"wall": time.perf_counter() - _T0, "cpu_self": own.ru_utime + own.ru_stime,
                   "cpu_children": kids.ru_utime + kids.ru_stime}, fh)


if __name__ == "__main__":
    atexit.register(dump, sys.argv[1])
    sys.argv = ["mlpipe", *sys.argv[2:]]
    from mlpipe_jupyter.ui.cli import main

    main()
