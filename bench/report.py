"""Ratios, targets and the markdown table of a benchmark run."""

from __future__ import annotations

from pathlib import Path

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
DESCRIPTIONS = {
    "W0": "one trivial step, cold (the fixed cost of a run)",
    "W1": "chain of {chain} trivial steps, cold",
    "W2": "{fan} independent steps sleeping {sleep:g} s, parallelism {fan}",
    "W3": "W1 again, every step reusable (whole command)",
    "W4": "parse and assemble {parse} steps, no execution (whole process)",
    "W5-run": "a {long_run}-step chain, cold: runner peak memory",
}
MLPIPE = ("mlpipe-local", "mlpipe-docker")


def _median(results: dict, workload: str, tool: str) -> float | None:
    return results.get(workload, {}).get(tool, {}).get("median_s")


def _rss(results: dict, workload: str, tool: str) -> float | None:
    return results.get(workload, {}).get(tool, {}).get("peak_rss_mb")


def ploomber_best(results: dict, workload: str) -> float | None:
    found = [m for t in ("ploomber-serial", "ploomber-parallel")
             if (m := _median(results, workload, t)) is not None]
    return min(found) if found else None


def ratios(results: dict) -> dict[str, dict[str, float]]:
    """Each mlpipe median over the best Ploomber executor's and over plain papermill's."""
    out: dict[str, dict[str, float]] = {}
    for workload, row in results.items():
        best = ploomber_best(results, workload)
        pm = _median(results, workload, "papermill")
        for tool in row:
            if not tool.startswith("mlpipe") or (mine := _median(results, workload, tool)) is None:
                continue
            if best:
                out.setdefault(workload, {})[f"{tool} / ploomber"] = round(mine / best, 3)
            if pm:
                out.setdefault(workload, {})[f"{tool} / papermill"] = round(mine / pm, 3)
    return out


def targets(results: dict, sizes) -> list[dict]:
    """The issue's targets, each with the measured value, its limit and whether it is met."""
    found: list[dict] = []

    def add(name: str, value: float | None, limit: float | None, unit: str, why: str = "") -> None:
        met = None if value is None or limit is None else value <= limit
        found.append({"target": name, "value": None if value is None else round(value, 3),
                      "limit": None if limit is None else round(limit, 3), "unit": unit,
                      "met": met, **({"note": why} if why and value is None else {})})

    best = ploomber_best(results, "W1")
    for tool, factor in (("mlpipe-local", 0.5), ("mlpipe-docker", 1.0)):
        mine = _median(results, "W1", tool)
        why = results.get("W1", {}).get(tool, {}).get("skipped", "")
        add(f"W1 {tool.split('-')[1]}: at most {factor:g} x Ploomber's wall time",
            mine / best if mine and best else None, factor, "ratio", why)
    for tool in MLPIPE:
        overhead = _median(results, "W0", tool)
        why = results.get("W2", {}).get(tool, {}).get("skipped", "")
        add(f"W2 {tool.split('-')[1]}: within 1.5 x {sizes.sleep:g} s + one step's overhead (W0)",
            _median(results, "W2", tool), 1.5 * sizes.sleep + overhead if overhead else None,
            "s", why)
    for tool in MLPIPE:
        why = results.get("W3", {}).get(tool, {}).get("skipped", "")
        add(f"W3 {tool.split('-')[1]}: whole command under 0.5 s", _median(results, "W3", tool),
            0.5, "s", why)
    add("W4: parse and assemble under 1 s", _median(results, "W4", "mlpipe-local"), 1.0, "s")
    add("W5: runner memory for W4 under 200 MB", _rss(results, "W4", "mlpipe-local"), 200, "MB")
    add(f"W5: runner memory for a {sizes.long_run}-step run under 200 MB",
        _rss(results, "W5-run", "mlpipe-local"), 200, "MB")
    return found


def _cell(entry: dict, memory: bool = False) -> str:
    if "median_s" in entry:
        if memory:
            return f"{entry['peak_rss_mb']:.0f} MB" if entry.get("peak_rss_mb") else "?"
        return f"{entry['median_s']:.2f} s"
    if "error" in entry:
        return "**failed**"
    return "n/a"


def markdown(data: dict) -> str:
    results, sizes = data["results"], data["sizes"]
    tools = list(dict.fromkeys(t for row in results.values() for t in row if "@" not in t))
    m = data["machine"]
    lines = [
        f"Run {data['started']} ({'smoke' if data['smoke'] else 'full'}, "
        f"{data['duration_s']:.0f} s), medians of {data['repetitions']} repetitions "
        "after one untimed warm-up, repetitions interleaved across tools.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, {m['os']}, Python "
        f"{m['python']}, Docker {m['docker']}. Load average {data['load']['before']:.1f} "
        f"before, {data['load']['after']:.1f} after.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()) + ".",
        "",
        "| workload | " + " | ".join(tools) + " |",
        "|---|" + "---|" * len(tools),
    ]
    for workload, row in results.items():
        desc = DESCRIPTIONS.get(workload, workload).format(**sizes)
        memory = workload == "W5-run"
        cells = [_cell(row.get(t, {"skipped": ""}), memory) for t in tools]
        lines.append(f"| {workload}: {desc} | " + " | ".join(cells) + " |")
    if "W4" in results:
        cells = [_cell(results["W4"].get(t, {"skipped": ""}), True) for t in tools]
        lines.append("| W5: W4's peak memory | " + " | ".join(cells) + " |")
    lines += ["", "| target | measured | limit | met |", "|---|---|---|---|"]
    for t in data["targets"]:
        value = "n/a" if t["value"] is None else f"{t['value']:g} {t['unit']}"
        limit = "n/a" if t["limit"] is None else f"{t['limit']:g} {t['unit']}"
        met = {True: "yes", False: "**no**", None: t.get("note") or "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {value} | {limit} | {met} |")
    notes = sorted({f"{t}: {e['skipped']}" for w, row in results.items()
                    for t, e in row.items() if "skipped" in e})
    if notes:
        lines += ["", "n/a:", *[f"- {n}" for n in notes]]
    lines += ablation(data)
    if data["ratios"]:
        lines += ["", "Ratios (mlpipe median / other tool's median; Ploomber: its faster "
                  "executor):", ""]
        for workload, found in data["ratios"].items():
            lines.append(f"- {workload}: " + ", ".join(f"{k} {v:.2f}" for k, v in found.items()))
    return "\n".join(lines) + "\n"


def ablation(data: dict) -> list[str]:
    """mlpipe-local as measured, next to the variants of the same run: `before` (the code before
    this work) and one optimisation turned off at a time."""
    results = data["results"]
    labels = list(dict.fromkeys(t.split("@", 1)[1] for row in results.values() for t in row
                                if t.startswith("mlpipe-local@")))
    if not labels:
        return []
    workloads = [w for w in ("W0", "W1", "W2", "W3") if w in results]
    lines = ["", "mlpipe-local variants, same run (median s; in brackets: the cost of turning that "
             "one optimisation off, against `current`):", "",
             "| variant | " + " | ".join(workloads) + " |", "|---|" + "---|" * len(workloads)]
    for label in ["current", *labels]:
        cells = []
        for w in workloads:
            mine = _median(results, w, "mlpipe-local" + ("" if label == "current" else f"@{label}"))
            cur = _median(results, w, "mlpipe-local")
            if mine is None:
                cells.append("n/a")
            elif label == "current" or cur is None:
                cells.append(f"{mine:.2f}")
            else:
                cells.append(f"{mine:.2f} ({mine - cur:+.2f})")
        env = data.get("variants", {}).get(label, {}).get("env") or {}
        name = label + "".join(f" `{k}={v}`" for k, v in env.items())
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def write_docs(path: Path, data: dict) -> None:
    """Replace the generated block of docs/benchmarks.md, keeping the prose around it."""
    block = f"{BEGIN}\n{markdown(data)}{END}"
    text = path.read_text(encoding="utf-8") if path.exists() else (
        "# Benchmarks\n\nGenerated by `make bench` (bench/run.py).\n\n" + BEGIN + "\n" + END + "\n")
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
