"""`import mlpipe_jupyter.runtime`, as step notebooks exported by mlpipe 0.1 do: the same
module object as `mlpipe_jupyter.step.runtime`, so that old exports keep running."""

import sys

from .step import runtime as _runtime

sys.modules[__name__] = _runtime
