"""The package's layering, read from the source: every import statement (in functions too) is an edge."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import act_equiv

ROOT = Path(act_equiv.__file__).parent
MODULES = {".".join(p.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__"): p
           for p in ROOT.rglob("*.py")}


def _nodes(node: ast.AST, runtime: bool) -> Iterator[ast.AST]:
    """Every node under `node`; `runtime` skips the body of `if TYPE_CHECKING:`, which never executes."""
    for child in ast.iter_child_nodes(node):
        type_checking = isinstance(child, ast.If) and ast.unparse(child.test).endswith("TYPE_CHECKING")
        for inner in child.orelse if runtime and type_checking else [child]:
            yield inner
            yield from _nodes(inner, runtime)


def imports(name: str, runtime: bool = False) -> set[str]:
    """What module `name` imports: act_equiv modules by full name (`from P import n` names `P.n` where that is a
    module, else `P`; relative names resolved), anything else by its top-level package."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = set()
    for node in _nodes(ast.parse(path.read_text()), runtime):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(filter(None, (package.rsplit(".", node.level - 1)[0] if node.level else "", node.module)))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        edges |= {t if t in MODULES else t.split(".")[0] for t in targets}
    return edges


GRAPH = {name: imports(name) for name in MODULES}
RUNTIME = {name: imports(name, runtime=True) for name in MODULES}


def _within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _edges_from(layer: str) -> list[tuple[str, str]]:
    return [(name, t) for name, edges in sorted(GRAPH.items()) if _within(name, layer) for t in sorted(edges)
            if t in MODULES]


def test_no_import_cycles() -> None:
    """A package's `__init__` importing its own submodules is no cycle (it is how a package re-exports)."""
    graph = {name: {t for t in edges if t in MODULES and not t.startswith(name + ".")} for name, edges in GRAPH.items()}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"import cycle (each imports the next): {' -> '.join(reversed(error.args[1]))}")


@pytest.mark.parametrize(("layer", "allowed"), [
    ("act_equiv.config", ("act_equiv.errors",)),
    ("act_equiv.models", ("act_equiv.config", "act_equiv.errors", "act_equiv.compat", "act_equiv.models")),
    ("act_equiv.strategies", ("act_equiv.config", "act_equiv.errors", "act_equiv.case", "act_equiv.coverage",
                              "act_equiv.strategies")),
])
def test_lower_layers_import_nothing_above_them(layer: str, allowed: tuple[str, ...]) -> None:
    wrong = [f"{name} -> {target}" for name, target in _edges_from(layer) if not _within(target, *allowed)]
    assert not wrong, wrong


def test_running_judges_nothing() -> None:
    wrong = [f"{name} -> {t}" for name, t in _edges_from("act_equiv.run") if _within(t, "act_equiv.oracle")]
    assert not wrong, wrong


TORCH_FREE = ("act_equiv.report", "act_equiv.coverage", "act_equiv.errors", "act_equiv.settings", "act_equiv.forms")
"""Modules that load without torch: the renderers, and the settings and forms every pytest session reads (the
plugin's option table; tests/test_plugin.py runs a foreign session without torch)."""


@pytest.mark.parametrize("module", TORCH_FREE)
def test_torch_free_modules_import_no_torch(module: str) -> None:
    """Through every act_equiv module importing it runs, and the packages above each (their `__init__` runs)."""
    loaded, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in MODULES and name not in loaded:
            loaded.add(name)
            todo += [*RUNTIME[name], *(name.rsplit(".", n)[0] for n in range(1, name.count(".") + 1))]
    importers = [name for name in sorted(loaded) if "torch" in RUNTIME[name]]
    assert not importers, f"{module} loads {sorted(loaded)}, of which {importers} import torch"


def test_torch_free_modules_load_no_torch_in_a_fresh_interpreter() -> None:
    code = f"import sys, {', '.join(TORCH_FREE)}; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
