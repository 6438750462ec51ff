"""The code stays readable in pieces: no module of ``stunet`` or ``demo`` over 600 lines, no function over 120.

Read from the source (``ast``), not by importing it. A function's length runs from its first decorator to its
last line, docstring and comments included; a nested function counts towards its enclosing one as well as
on its own. Split a module by concern and a function by step (the studio: one module a tab) rather than raise
the limits.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stunet", "demo")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 120


def _sources() -> list[Path]:
    return [f for pkg in PACKAGES for f in sorted((ROOT / pkg).rglob("*.py"))]


def function_lengths(path: Path) -> list[tuple[str, int, int]]:
    """(qualified name, first line, length in lines) of every function and method in the file."""
    out = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                out.append((prefix + child.name, first, child.end_lineno - first + 1))
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(ast.parse(path.read_text(), str(path)), "")
    return out


def test_the_sources_are_found():
    files = {f.relative_to(ROOT).as_posix() for f in _sources()}
    assert {"stunet/model.py", "demo/app.py"} <= files


def test_no_module_over_600_lines():
    long = {f.relative_to(ROOT).as_posix(): n for f in _sources()
            if (n := len(f.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split by concern): {long}"


def test_no_function_over_120_lines():
    long = [f"{f.relative_to(ROOT).as_posix()}:{line} {name} ({n} lines)" for f in _sources()
            for name, line, n in function_lengths(f) if n > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split by step): {long}"


def test_function_lengths_count_decorators_and_nesting(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import functools\n\n\n@functools.cache\ndef outer():\n    def inner():\n        return 1\n"
                 "    return inner\n\n\nclass C:\n    def method(self):\n        pass\n")
    assert function_lengths(f) == [("outer", 4, 5), ("outer.inner", 6, 2), ("C.method", 12, 2)]
