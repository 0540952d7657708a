"""The layout the README's "Layout" section promises, read from the source with ``ast``.

* Who may import whom: the bijectors know no model, data, export or command line; the
  networks know no flow; the data package knows nothing else of the package; only the
  entry point imports the command line.
* No module reaches into another's private names: no ``from m import _name``, and no
  ``obj._name`` unless ``_name`` is defined in the same file (a class's own protected
  hooks, called by the module that declares them). ``self._name``, ``cls._name`` and
  ``super()._name`` are a subclass using the protected members it inherits (a
  ``tfb.Bijector``'s ``_cache``, ``OnePassBijector._track_variables``), which is what
  protected members are for.
* Keras' internal modules (``keras.src``) are used in one place only, ``backend.py``.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tfp_realnvp"
# Code whose private-name hygiene is checked (tests may look inside what they test).
CHECKED_TREES = ("tfp_realnvp", "benchmarks", "examples", "scripts")

# The packages each package may import, besides itself: the layers of the README's
# picture, from the bottom (internal) to the top (cli, which may import everything).
ALLOWED_IMPORTS = {
    "internal": set(),
    "networks": {"internal"},
    "bijectors": {"internal", "networks"},
    "data": {"internal"},
    "model": {"internal", "networks", "bijectors", "data"},
    "export": {"internal", "networks", "bijectors", "model"},
    "training": {"internal", "model", "data"},
}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _python_files(*trees: str) -> list[pathlib.Path]:
    files = []
    for tree in trees:
        folder = ROOT / tree
        if folder.is_dir():
            files.extend(sorted(p for p in folder.rglob("*.py") if ".venv" not in p.parts))
    return files


def _imported_modules(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _parsed(path: pathlib.Path) -> ast.AST:
    return ast.parse(path.read_text(), filename=str(path))


@pytest.mark.parametrize("subpackage", sorted(ALLOWED_IMPORTS))
def test_subpackages_import_only_their_allowed_layers(subpackage):
    allowed = {f"tfp_realnvp.{name}" for name in ALLOWED_IMPORTS[subpackage] | {subpackage}}
    offending = []
    for path in _python_files(f"tfp_realnvp/{subpackage}"):
        for module in _imported_modules(_parsed(path)):
            if module == "tfp_realnvp" or module.startswith("tfp_realnvp."):
                layer = ".".join(module.split(".")[:2])
                if layer not in allowed:
                    offending.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offending, "\n".join(offending)


def test_only_the_entry_point_imports_the_command_line():
    offending = []
    for path in _python_files("tfp_realnvp"):
        name = _module_name(path)
        if name == "tfp_realnvp.__main__" or name.startswith("tfp_realnvp.cli"):
            continue
        imports = _imported_modules(_parsed(path))
        if any(m == "tfp_realnvp.cli" or m.startswith("tfp_realnvp.cli.") for m in imports):
            offending.append(str(path.relative_to(ROOT)))
    assert not offending, f"modules below the command line import it: {offending}"


def _names_defined(tree: ast.AST) -> set[str]:
    """Every function, class, attribute (``x.name = ...``) and variable a file defines."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _is_inheritance(base: ast.AST) -> bool:
    """Whether ``base`` is ``self``, ``cls`` or ``super()``."""
    if isinstance(base, ast.Name):
        return base.id in ("self", "cls")
    return isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super"


def private_reaches(path: pathlib.Path) -> list[str]:
    """``from m import _x`` and ``obj._x`` (``_x`` not defined in this file) in ``path``."""
    tree = _parsed(path)
    own = _names_defined(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found.extend(
                f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import {alias.name}"
                for alias in node.names
                if _private(alias.name)
            )
        elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own:
            if _is_inheritance(node.value):
                continue
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_scan_finds_a_private_reach():
    # The check below must be able to fail: a file that reaches into others' names.
    probe = ROOT / "tests" / "_layout_probe.py"
    probe.write_text(
        "import argparse\nfrom os import _exit\n\nparser = argparse.ArgumentParser()\nparser._actions\n"
        "class A:\n    def f(self):\n        return self._inherited, self.other._hidden\n"
    )
    try:
        found = private_reaches(probe)
    finally:
        probe.unlink()
    assert any("import _exit" in line for line in found), found
    assert any("parser._actions" in line for line in found), found
    assert any("self.other._hidden" in line for line in found), found
    assert not any("self._inherited" in line for line in found), found


def test_no_module_reaches_into_private_names():
    offending = [line for path in _python_files(*CHECKED_TREES) for line in private_reaches(path)]
    assert not offending, "\n".join(offending)


def test_keras_internals_are_used_only_by_the_backend_module():
    offending = []
    for path in _python_files(*CHECKED_TREES):
        if path == PACKAGE / "internal" / "backend.py":
            continue
        for module in _imported_modules(_parsed(path)):
            if module == "keras.src" or module.startswith("keras.src."):
                offending.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offending, "\n".join(offending)
