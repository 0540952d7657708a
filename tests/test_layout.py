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
* Keras' internal modules (``keras.src``) and TFP's internals (its private classes, the
  storage of its bijector cache, ``tensorflow_probability.python``) are used in one place
  only, ``internal/backend.py``.
* No import circle between the package's modules (imports inside functions included).
* Small units: no module over ``MAX_MODULE_LINES`` lines; no function over
  ``MAX_FUNCTION_LINES`` lines (docstring excluded) unless a ``# Long function:`` comment
  right above it gives the reason.
* The README's layer table is the one checked here.
"""

from __future__ import annotations

import ast
import pathlib
import re

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


MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
LONG_FUNCTION_REASON = "# Long function:"


def test_no_module_is_longer_than_the_limit():
    offending = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for path in _python_files(*CHECKED_TREES)
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not offending, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(offending)


def _function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the function's last line, its docstring left out."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def long_functions(path: pathlib.Path) -> list[str]:
    """Functions of ``path`` over the limit that carry no written reason above them."""
    text = path.read_text().splitlines()
    found = []
    for node in ast.walk(_parsed(path)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _function_lines(node) > MAX_FUNCTION_LINES:
            top = min([node.lineno] + [d.lineno for d in node.decorator_list])
            above = text[top - 2].strip() if top >= 2 else ""
            if not above.startswith(LONG_FUNCTION_REASON):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} ({_function_lines(node)} lines)")
    return found


def test_the_function_scan_finds_a_long_function(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    probe = ROOT / "tests" / "_layout_probe_long.py"
    probe.write_text(f'def long():\n    """Doc."""\n{body}\n\n{LONG_FUNCTION_REASON} a table\ndef excused():\n{body}')
    try:
        found = long_functions(probe)
    finally:
        probe.unlink()
    assert len(found) == 1 and ": long (" in found[0], found


def test_no_function_is_longer_than_the_limit_without_a_reason():
    offending = [line for path in _python_files(*CHECKED_TREES) for line in long_functions(path)]
    assert not offending, f"functions over {MAX_FUNCTION_LINES} lines with no '{LONG_FUNCTION_REASON}' reason:\n" + (
        "\n".join(offending)
    )


def _package_modules() -> dict[str, pathlib.Path]:
    return {_module_name(path): path for path in _python_files("tfp_realnvp")}


def import_graph(modules: dict[str, pathlib.Path]) -> dict[str, set[str]]:
    """``module -> modules it imports`` within the package (``from p import m`` of a
    submodule ``m`` counts as importing ``p.m``; imports inside functions count too)."""
    graph = {}
    for name, path in modules.items():
        edges = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(_parsed(path)):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_cycle_scan_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_the_package():
    graph = import_graph(_package_modules())
    # A package's __init__ re-exports its modules; a module that imports its own
    # package's __init__ would close a circle through it, which is counted.
    assert not import_cycles(graph), import_cycles(graph)


TFP_INTERNALS = re.compile(r"tensorflow_probability\.python|\b_Chain\b|\b_Invert\b|_cache\.storage|\.subkey\b")


def test_tfp_internals_are_used_only_by_the_backend_module():
    offending = []
    for path in _python_files(*CHECKED_TREES):
        if path == PACKAGE / "internal" / "backend.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if TFP_INTERNALS.search(line):
                offending.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offending, "\n".join(offending)


def readme_layers() -> dict[str, set[str]]:
    """The README's layer table: ``| package | may import |`` rows under "Layout"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)/` \| ([^|]*) \|", section, flags=re.M)
    return {name: set(re.findall(r"`(\w+)`", allowed)) for name, allowed in rows}


def test_the_readme_states_the_layers_that_are_checked():
    assert readme_layers() == ALLOWED_IMPORTS
