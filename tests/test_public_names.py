"""`__all__` says what a module offers (as Hypothesis checks its own): every name listed exists, once, and every
public name a module defines is listed."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import act_equiv

ROOT = Path(act_equiv.__file__).parent


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")


def _defined(tree: ast.Module) -> set[str]:
    """The names a module's top level binds by `def`, `class` or assignment (imports are not definitions)."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names |= {target.id for target in targets if isinstance(target, ast.Name)}
    return names


TREES = {_module_name(path): ast.parse(path.read_text()) for path in sorted(ROOT.rglob("*.py"))}
EXPORTING = sorted(name for name, tree in TREES.items() if "__all__" in _defined(tree))


@pytest.mark.parametrize("name", EXPORTING)
def test_all_lists_each_name_once_and_each_resolves(name: str) -> None:
    """`getattr`, not the module's dict: `act_equiv` itself resolves most of its names lazily."""
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), sorted({n for n in exported if exported.count(n) > 1})
    assert not [n for n in exported if not hasattr(module, n)]


@pytest.mark.parametrize("name", EXPORTING)
def test_all_lists_every_public_name_the_module_defines(name: str) -> None:
    public = {n for n in _defined(TREES[name]) if not n.startswith("_")}
    assert not sorted(public - set(importlib.import_module(name).__all__))


def test_the_package_exports_what_a_user_needs() -> None:
    assert {"ACTConfig", "ACT", "LegacyACT", "Gate", "search", "strategies", "resolve"} <= set(act_equiv.__all__)


def test_importing_the_package_loads_no_torch() -> None:
    """The pytest plugin's entry point imports `act_equiv` in every pytest session."""
    code = "import sys, act_equiv; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
