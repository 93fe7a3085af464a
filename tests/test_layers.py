"""The package's layers hold: every import of src/lft (module level and inside functions) goes
down, and no modules import each other in a cycle.

Layers, lowest first (a package may import its own layer's and any lower layer's; cycles are
refused separately):

0. utilities: ``_version``, ``validation``, ``typed``, ``seeding``, ``safefiles``, ``perf``,
   ``reporting``
1. leaves: ``rules``, ``oracles``, ``models``, ``data``
2. ``tasks`` (task families, UAP victims): models and data
3. ``meta``: the engine (methods, unrolling, meta-training, evaluation)
4. ``checkpoint``, ``optim``, ``rivals``: saved methods, the torch.optim drop-in, external rivals
5. ``resume``, ``pretrained``: run folders, the packaged fine-tuners
6. ``finetuner``: the one-object face
7. ``attacks``, ``analysis``: applications of the library
8. ``experiments``: the paper's reproductions and the artefacts beyond it
9. ``cli``, ``__main__``: the command line, the only importer of the reproductions
10. ``lft`` itself (``lft/__init__.py``, the public API)
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lft"
LAYERS = [
    {"_version", "validation", "typed", "seeding", "safefiles", "perf", "reporting"},
    {"rules", "oracles", "models", "data"},
    {"tasks"},
    {"meta"},
    {"checkpoint", "optim", "rivals"},
    {"resume", "pretrained"},
    {"finetuner"},
    {"attacks", "analysis"},
    {"experiments"},
    {"cli", "__main__"},
    {"lft"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    parts = ("lft", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    """``lft.meta.trainer`` -> ``meta``; ``lft`` -> ``lft``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "lft"


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """Every ``lft`` module ``path`` imports, at module level or inside functions (``from
    lft.x import y`` counts as importing ``lft.x.y`` when that is a module, else ``lft.x``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES
                     else node.module for a in node.names]
        else:
            continue
        out |= {n for n in names if n == "lft" or n.startswith("lft.")}
    return out


GRAPH = {m: imports(p) for m, p in MODULES.items()}


def test_every_package_has_a_layer():
    assert {package_of(m) for m in MODULES} <= set(RANK), \
        sorted({package_of(m) for m in MODULES} - set(RANK))


def test_imports_only_go_down():
    upward = []
    for module, targets in GRAPH.items():
        here = package_of(module)
        for target in targets:
            there = package_of(target)
            if there == here or (target == "lft" and here != "lft"):
                if target == "lft" and here != "lft":
                    upward.append(f"{module} imports the package root lft (import the module "
                                  "that defines what it needs)")
                continue
            if RANK[there] > RANK[here]:
                upward.append(f"{module} ({here}, layer {RANK[here]}) imports {target} "
                              f"({there}, layer {RANK[there]})")
    assert not upward, "\n".join(sorted(upward))


def test_only_the_command_line_imports_the_reproductions():
    importers = {package_of(m) for m, ts in GRAPH.items()
                 if any(package_of(t) == "experiments" for t in ts)} - {"experiments"}
    assert importers <= {"cli"}, importers


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state[nxt] == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state[nxt] == 0 and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state[node] == 0 and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_among_packages():
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in GRAPH.items():
        for target in targets:
            if package_of(target) != package_of(module):
                packages[package_of(module)].add(package_of(target))
    assert _cycle(packages) is None, " -> ".join(_cycle(packages))


def test_no_import_cycle_among_modules():
    """Within a package too (a package's ``__init__`` importing its own modules is not a
    cycle back: only edges between distinct modules, ``__init__`` excluded as a target)."""
    graph = {m: {t for t in ts if t in MODULES and t != m and MODULES[t].name != "__init__.py"}
             for m, ts in GRAPH.items()}
    found = _cycle(graph)
    assert found is None, " -> ".join(found)


@pytest.mark.parametrize("leaf", ["rules", "oracles", "models", "data", "tasks"])
def test_leaves_reach_no_engine_command_line_or_reproduction(leaf):
    """Transitively: nothing a leaf imports reaches meta, cli or experiments."""
    seen, todo = set(), [m for m in MODULES if package_of(m) == leaf]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += [t for t in GRAPH.get(m, ()) if t in MODULES]
    assert not {package_of(m) for m in seen} & {"meta", "cli", "experiments"}


def test_the_image_sources_are_listed_once():
    from lft.data.download import REMOTES
    from lft.data.sources import SOURCES
    from lft.experiments import budgets, table1_spec, table2, uap_rivals_spec
    from lft.tasks import victims

    assert set(REMOTES) == set(SOURCES)
    for module in (budgets, table1_spec, table2, uap_rivals_spec, victims):
        assert module.SOURCES is SOURCES, module.__name__
