"""Cache keys and the reasons a step was not reused. Pure.

A step's key covers what can change its result: its code, the setup code, the values of the
parameters it (or the setup code) reads, its inputs' content digests, its own options that
reach the kernel (env), the execution environment (image digest or local fingerprint) and
mlpipe's version. Parameters a step does not read never enter its key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .codeinfo import free_names
from .spec import PipelineSpec, StepSpec


def _h(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def params_read(spec: PipelineSpec, step: StepSpec) -> list[str]:
    names = set(free_names(step.code)) | (set(free_names(spec.setup)) if spec.setup else set())
    return [p for p, _ in spec.params if p in names]


def key_parts(spec: PipelineSpec, step: StepSpec, params: dict[str, Any],
              inputs: dict[str, str], environment: str, runtime: str) -> dict[str, Any]:
    parts = {
        "code": _h(step.code),
        "setup": _h(spec.setup),
        "params": {p: _h(params[p]) for p in params_read(spec, step)},
        "inputs": dict(sorted(inputs.items())),
        "outputs": list(step.outputs),
        "env": _h(dict(step.env)),
        "environment": environment,
        "runtime": runtime,
    }
    if step.foreach is not None:  # only then: the keys of other steps stay what they were
        # what changes the gathered result; --workers and --item-timeout do not
        parts["foreach"] = {"items": step.foreach, "batch_size": step.batch_size,
                            "max_failures": step.max_failures}
    return parts


def batch_key(parts: dict[str, Any], step: StepSpec, items_digest: str) -> str:
    """One mini-batch's key: the step's key without its split input's digest (adding items
    must not change the other batches' keys), plus the digest of the batch's own items."""
    inputs = {k: v for k, v in parts["inputs"].items() if k != step.foreach}
    return cache_key({**parts, "inputs": inputs, "batch": items_digest})


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def miss_reason(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """Why a step re-ran, in one short line: the first difference, and how many more."""
    return short_reason(miss_reasons(old, new))


def short_reason(reasons: list[str]) -> str:
    """`code changed (and 1 more)`: for live displays; the list itself is stored."""
    if not reasons:
        return ""
    return reasons[0] if len(reasons) == 1 else f"{reasons[0]} (and {len(reasons) - 1} more)"


def miss_reasons(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Every reason a step re-ran, compared with its newest reusable run, most telling first."""
    if old is None:
        return ["no earlier run"]
    changed = []
    if old.get("code") != new["code"]:
        changed.append("code changed")
    if old.get("setup") != new["setup"]:
        changed.append("setup code changed")
    old_in, new_in = old.get("inputs", {}), new["inputs"]
    changed += [f"input `{n}` changed" for n in new_in if n in old_in and old_in[n] != new_in[n]]
    changed += [f"input `{n}` added" for n in new_in if n not in old_in]
    changed += [f"input `{n}` removed" for n in old_in if n not in new_in]
    old_p, new_p = old.get("params", {}), new["params"]
    changed += [f"parameter `{n}` changed" for n in new_p if n in old_p and old_p[n] != new_p[n]]
    changed += [f"parameter `{n}` now read" for n in new_p if n not in old_p]
    if old.get("outputs") != new["outputs"]:
        changed.append("outputs changed")
    if old.get("foreach") != new.get("foreach"):
        changed.append("step --foreach options changed")
    if old.get("env") != new["env"]:
        changed.append("step --env changed")
    if old.get("environment") != new["environment"]:
        changed.append("image changed" if new["environment"].startswith("sha256:")
                       else "environment changed")
    if old.get("runtime") != new["runtime"]:
        changed.append("mlpipe version changed")
    return changed or ["earlier result no longer available"]
