"""The size limits of the code under src/joedefender: no function over 60 lines, no module over 450.

A long function or module is one doing several jobs; this keeps them from growing back. A
function counts from its first decorator (or its `def`) to its last line, docstring and comments
included; a module counts its whole file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "joedefender"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 450


def _modules() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(SOURCE).as_posix()


def long_functions(source: str) -> list[str]:
    """`name:line (N lines)` of every function in `source` longer than the limit."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            lines = (node.end_lineno or node.lineno) - start + 1
            if lines > MAX_FUNCTION_LINES:
                found.append(f"{node.name}:{node.lineno} ({lines} lines)")
    return found


def test_the_limits_see_the_source() -> None:
    names = {_name(p) for p in _modules()}
    assert "pipeline/engine.py" in names


def test_the_function_limit_counts_decorators_and_nested_functions() -> None:
    body = "\n".join(f"        x{n} = {n}" for n in range(MAX_FUNCTION_LINES - 3))
    fits = f"@decorated\ndef outer():\n    def inner():\n{body}\n"  # 1 + 1 + 1 + 57 lines
    assert long_functions(fits) == []
    assert long_functions(fits + "        one_more = 1\n") == ["outer:2 (61 lines)"]
    three_more = "        a = 1\n        b = 2\n        c = 3\n"
    assert long_functions(f"def outer():\n    def inner():\n{body}\n{three_more}") == [
        "outer:1 (62 lines)",
        "inner:2 (61 lines)",
    ]


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_no_module_or_function_is_over_the_limit(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    lines = len(source.splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_name(path)} has {lines} lines"
    assert long_functions(source) == [], _name(path)
