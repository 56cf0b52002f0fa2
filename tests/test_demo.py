"""``pyfill demo``: every shipped system, pictures that show the real results, and a page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pyfill
from pyfill.cli import main
from pyfill.images import read_image


def test_demo_writes_a_picture_per_system_and_a_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "-o", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    page = (tmp_path / "demo" / "index.html").read_text()
    for system in ("restore", "colorize", "generate"):
        assert (tmp_path / "demo" / f"{system}.png").is_file() and f'src="{system}.png"' in page
        assert str(tmp_path / "demo" / f"{system}.png") in out
    assert page.count(" ms on ") == 3 and "index.html" in out

    # The restoration picture is [degraded | restored | original], 256 px tiles 8 px apart: its
    # middle tile is what pyfill.restore makes of its left tile.
    strip = read_image(tmp_path / "demo" / "restore.png")
    degraded, restored = strip[8:264, 8:264], strip[8:264, 272:528]
    assert np.array_equal(restored, pyfill.restore(degraded))
    assert not np.array_equal(degraded, restored)


def test_demo_refuses_an_unknown_system(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "paint", "-o", str(tmp_path)]) == 1
    assert "unknown systems ['paint']" in capsys.readouterr().err


def test_procedural_scene_stands_in_without_scikit_image(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from pyfill.demo import procedural_scene, sample_photo

    monkeypatch.setitem(sys.modules, "skimage", None)
    photo, source = sample_photo("astronaut", (64, 80))
    assert source.startswith("procedural") and photo.shape == (64, 80, 3) and photo.dtype == np.uint8
    assert np.array_equal(photo, procedural_scene(64, 80, seed=sum(map(ord, "astronaut"))))
    assert photo.std() > 20  # a scene, not a flat colour
