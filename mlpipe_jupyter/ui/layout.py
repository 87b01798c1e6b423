"""Where the widget draws each step: a layered (Sugiyama-style) layout of the DAG, top to bottom.

Pure and import-light (networkx only), computed once per run in the kernel so the browser gets
plain coordinates: layers from `dag.generations`, a virtual node in every layer a long edge
crosses (so edges route around nodes instead of through them), a few barycenter sweeps to reduce
crossings, then x positions pulled toward each node's neighbours.
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from ..model.dag import generations

NODE_W, NODE_H = 196, 58
VIRTUAL_W = 16
GAP_X, GAP_Y = 36, 74
MARGIN = 20
SWEEPS = 6


def layout(graph: nx.DiGraph) -> dict[str, Any]:
    """{"nodes": [{name, layer, x, y, w, h}], "edges": [{source, target, artifacts, points,
    label}], "width", "height"}; x, y are a node's top-left corner in SVG pixels."""
    layers = generations(graph) if len(graph) else []
    if not layers:
        return {"nodes": [], "edges": [], "width": 0, "height": 0}
    rank = {name: i for i, layer in enumerate(layers) for name in layer}
    # a chain of virtual nodes stands in for every edge that skips layers
    chains: dict[tuple[str, str], list[str]] = {}
    for u, v in sorted(graph.edges, key=lambda e: (rank[e[0]], graph.nodes[e[0]]["index"])):
        chain = []
        for r in range(rank[u] + 1, rank[v]):
            vid = f"\0{u}\0{v}\0{r}"
            layers[r].append(vid)
            chain.append(vid)
        chains[(u, v)] = chain
    up: dict[str, list[str]] = {n: [] for layer in layers for n in layer}
    down: dict[str, list[str]] = {n: [] for layer in layers for n in layer}
    for (u, v), chain in chains.items():
        path = [u, *chain, v]
        for a, b in zip(path, path[1:], strict=False):
            down[a].append(b)
            up[b].append(a)
    layers = _order(layers, up, down)
    xs = _positions(layers, up, down)
    width = max(xs[n] + _w(n) for n in xs) + MARGIN
    ys = {n: MARGIN + rank_y * (NODE_H + GAP_Y) for rank_y, layer in enumerate(layers)
          for n in layer}
    nodes = [{"name": n, "layer": r, "x": round(xs[n]), "y": ys[n], "w": NODE_W, "h": NODE_H}
             for r, layer in enumerate(layers) for n in layer if not _virtual(n)]
    edges = [_route(graph, u, v, chain, xs, ys, down, up)
             for (u, v), chain in chains.items()]
    return {"nodes": nodes, "edges": edges, "width": round(width),
            "height": MARGIN + len(layers) * (NODE_H + GAP_Y) - GAP_Y + MARGIN}


def _virtual(name: str) -> bool:
    return name.startswith("\0")


def _w(name: str) -> int:
    return VIRTUAL_W if _virtual(name) else NODE_W


def _crossings(layers: list[list[str]], down: dict[str, list[str]]) -> int:
    total = 0
    for upper, lower in zip(layers, layers[1:], strict=False):
        pos = {n: i for i, n in enumerate(lower)}
        ends = [(i, pos[t]) for i, n in enumerate(upper) for t in down[n]]
        ends.sort()
        # pairs (a, b), (c, d) with a < c and b > d cross; count inversions of the targets
        targets = [t for _, t in ends]
        total += _inversions(targets)
    return total


def _inversions(values: list[int]) -> int:
    if len(values) < 2:
        return 0
    mid = len(values) // 2
    left, right = sorted(values[:mid]), sorted(values[mid:])
    count = _inversions(values[:mid]) + _inversions(values[mid:])
    j = 0
    for x in left:  # merge-count: how many right values are smaller than x
        while j < len(right) and right[j] < x:
            j += 1
        count += j
    return count


def _order(layers: list[list[str]], up: dict[str, list[str]],
           down: dict[str, list[str]]) -> list[list[str]]:
    """Barycenter sweeps, alternately down and up; the order with fewest crossings wins."""
    best = [list(layer) for layer in layers]
    best_cost = _crossings(best, down)
    current = [list(layer) for layer in layers]
    for sweep in range(SWEEPS):
        if best_cost == 0:
            break
        rng = range(1, len(current)) if sweep % 2 == 0 else range(len(current) - 2, -1, -1)
        for r in rng:
            ref = current[r - 1] if sweep % 2 == 0 else current[r + 1]
            pos = {n: i for i, n in enumerate(ref)}
            nbrs = up if sweep % 2 == 0 else down

            def key(item: tuple[int, str], pos=pos, nbrs=nbrs) -> float:
                i, n = item
                linked = [pos[m] for m in nbrs[n]]
                return sum(linked) / len(linked) if linked else float(i)

            current[r] = [n for _, n in sorted(enumerate(current[r]), key=key)]
        cost = _crossings(current, down)
        if cost < best_cost:
            best, best_cost = [list(layer) for layer in current], cost
    return best


def _positions(layers: list[list[str]], up: dict[str, list[str]],
               down: dict[str, list[str]]) -> dict[str, float]:
    """x of each node's left edge: packed and centred, then pulled toward its neighbours."""
    widths = [sum(_w(n) for n in layer) + GAP_X * (len(layer) - 1) for layer in layers]
    widest = max(widths)
    xs: dict[str, float] = {}
    for layer, w in zip(layers, widths, strict=True):
        x = MARGIN + (widest - w) / 2
        for n in layer:
            xs[n] = x
            x += _w(n) + GAP_X
    centre = {n: xs[n] + _w(n) / 2 for n in xs}
    for sweep in range(4):
        rng = range(1, len(layers)) if sweep % 2 == 0 else range(len(layers) - 2, -1, -1)
        nbrs = up if sweep % 2 == 0 else down
        for r in rng:
            layer = layers[r]
            want = [sum(centre[m] for m in nbrs[n]) / len(nbrs[n]) if nbrs[n] else centre[n]
                    for n in layer]
            placed = _pack(layer, want)
            for n, c in zip(layer, placed, strict=True):
                centre[n] = c
    left = min(centre[n] - _w(n) / 2 for n in centre)
    return {n: centre[n] - _w(n) / 2 - left + MARGIN for n in centre}


def _pack(layer: list[str], want: list[float]) -> list[float]:
    """Centres as close to `want` as the order and the minimum gaps allow (two-pass)."""
    n = len(layer)
    sep = [(_w(layer[i]) + _w(layer[i + 1])) / 2 + GAP_X for i in range(n - 1)]
    right = list(want)
    for i in range(1, n):  # push right to clear overlaps
        right[i] = max(right[i], right[i - 1] + sep[i - 1])
    left = list(want)
    for i in range(n - 2, -1, -1):  # push left to clear overlaps
        left[i] = min(left[i], left[i + 1] - sep[i])
    # the average of both passes still respects the gaps, and does not drift to one side
    return [(a + b) / 2 for a, b in zip(left, right, strict=True)]


def _route(graph: nx.DiGraph, u: str, v: str, chain: list[str], xs: dict[str, float],
           ys: dict[str, float], down: dict[str, list[str]],
           up: dict[str, list[str]]) -> dict[str, Any]:
    """Points from u's bottom to v's top through the chain; ports spread along the node edge
    in the order of the far ends, so edges leaving one node do not cross each other."""
    first = chain[0] if chain else v
    last = chain[-1] if chain else u
    start = (_port(u, first, down[u], xs), ys[u] + NODE_H)
    end = (_port(v, last, up[v], xs), ys[v])
    points = [start]
    for vid in chain:
        cx = xs[vid] + VIRTUAL_W / 2
        points += [(cx, ys[vid]), (cx, ys[vid] + NODE_H)]
    points.append(end)
    artifacts = list(graph.edges[u, v].get("artifacts", []))
    return {"source": u, "target": v, "artifacts": artifacts,
            "points": [[round(x, 1), round(y, 1)] for x, y in points],
            "label": _label_at(points)}


def _port(node: str, other: str, others: list[str], xs: dict[str, float]) -> float:
    ordered = sorted(others, key=lambda m: xs[m])
    k, count = ordered.index(other), len(ordered)
    spread = min(18.0, (NODE_W - 40) / max(count - 1, 1))
    return xs[node] + NODE_W / 2 + (k - (count - 1) / 2) * spread


def _label_at(points: list[tuple[float, float]]) -> list[float]:
    """Middle of the first vertical gap: close to the producer, where the artifact leaves."""
    (x0, y0), (x1, y1) = points[0], points[1]
    return [round((x0 + x1) / 2, 1), round((y0 + y1) / 2, 1)]
