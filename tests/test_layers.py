"""The layer order is kept: schemas at the bottom, then models, operators, pipeline and train, jobs on top.
Nothing imports a floor above its own and no two modules import each other through any path (function-level
imports included)."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLOOR = {"schemas": 0, "models": 1, "operators": 2, "pipeline": 3, "train": 3, "jobs": 4}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in FLOOR:
        for f in (REPO / pkg).rglob("*.py"):
            mods[".".join(f.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")] = f
    return mods


def _edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for n in names:
                target = next((c for c in (n, n.rsplit(".", 1)[0]) if c in mods and c != m), None)
                if target:
                    edges[m].add(target)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _upward(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {t}" for m, ts in edges.items() for t in ts if FLOOR[t.split(".")[0]] > FLOOR[m.split(".")[0]])


def test_no_upward_imports():
    upward = _upward(_edges(_modules()))
    assert not upward, upward


def test_no_import_circles():
    assert not _cycles(_edges(_modules()))


def test_the_checker_finds_a_circle_and_an_upward_import():
    edges = {"operators.a": {"operators.b"}, "operators.b": {"operators.a"}, "schemas.x": set()}
    assert _cycles(edges) == [["operators.a", "operators.b"]]
    assert _cycles({"a.x": {"a.y"}, "a.y": set()}) == []
    assert _upward({"models.m": {"pipeline.p"}, "pipeline.p": {"models.m"}}) == ["models.m -> pipeline.p"]
