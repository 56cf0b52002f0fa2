"""Rules of the test suite itself, checked on its source: every ``pytest.raises`` names the
message it expects (``match=``), so a test cannot pass on an unrelated error of the same type."""

from __future__ import annotations

import ast
from pathlib import Path

HERE = Path(__file__).resolve().parent


def raises_without_match(source: str) -> list[int]:
    """Line numbers of ``pytest.raises(...)`` calls without a ``match`` keyword."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "raises"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "pytest"
                and not any(k.arg == "match" for k in node.keywords)):
            lines.append(node.lineno)
    return lines


def test_the_checker_finds_a_raises_without_match() -> None:
    assert raises_without_match("import pytest\nwith pytest.raises(ValueError):\n    pass\n") == [2]
    assert raises_without_match("import pytest\nwith pytest.raises(ValueError, match='x'):\n    pass\n") == []


def test_every_pytest_raises_has_a_match() -> None:
    files = sorted(HERE.glob("*.py")) + sorted((HERE.parent / "benchmarks").glob("*.py"))
    assert len(files) > 10
    missing = {f.name: raises_without_match(f.read_text()) for f in files}
    assert {k: v for k, v in missing.items() if v} == {}
