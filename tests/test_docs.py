"""Every ```python example in README.md and docs/*.md runs when copied alone: each block runs in
a fresh namespace, in a fresh temporary directory with an empty ``demo/`` folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
OPTIONAL = {"ray": "pyfill.distributed", "av": "pyfill.video", "dlib": "pyfill.faces", "nncf": "pyfill.quantize",
            "spandrel": "spandrel", "tritonclient": "pyfill.triton"}
BLOCKS = [(doc, i, block) for doc in DOCS for i, block in enumerate(FENCE.findall(doc.read_text()))]


@pytest.mark.parametrize(("doc", "index", "block"), BLOCKS, ids=[f"{d.name}[{i}]" for d, i, _ in BLOCKS])
def test_python_example_runs_alone(doc: Path, index: int, block: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    if "import torch" in block or "pyfill.models" in block or "pyfill.export" in block:
        pytest.importorskip("torch")
    for module, marker in OPTIONAL.items():  # an example of an optional extra needs that extra
        if marker in block:
            pytest.importorskip(module)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYFILL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "demo").mkdir()
    code = compile(block, f"{doc.name}[python block {index}]", "exec")
    exec(code, {"__name__": "__doc_example__"})  # noqa: S102 - the project's own documentation
