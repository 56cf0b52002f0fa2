"""Every ```python example in README.md and docs/*.md runs (blocks of one file run in order, in
one namespace, in a temporary directory)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_python_examples_run(doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = FENCE.findall(doc.read_text())
    if not blocks:
        pytest.skip(f"{doc.name} has no Python examples")
    if any("import torch" in b for b in blocks):
        pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYFILL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "demo").mkdir()
    namespace: dict[str, object] = {"__name__": "__doc_example__"}
    for i, block in enumerate(blocks):
        code = compile(block, f"{doc.name}[python block {i}]", "exec")
        exec(code, namespace)  # noqa: S102 - the project's own documentation
