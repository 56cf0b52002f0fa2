"""Batch runs lose no work: outputs are written whole or not at all, --skip-existing skips
finished outputs without decoding their inputs, and no input is ever overwritten."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pyfill
from pyfill.cli import main
from pyfill.images import read_image, write_image


def _photos(folder: Path, n: int, size: int = 24) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"p{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(p)
        paths.append(p)
    return paths


def test_write_image_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.png"
    old = np.full((8, 8, 3), 9, np.uint8)
    write_image(target, old)
    # A failure half-way through the encoder leaves the previous file and no temporary behind.
    from PIL import Image as PILImage

    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(PILImage.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_image(target, np.zeros((8, 8, 3), np.uint8))
    monkeypatch.undo()
    assert np.array_equal(read_image(target), old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_skip_existing_does_not_decode_finished_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    src = _photos(tmp_path / "in", 4)
    out = tmp_path / "out"
    assert main(["restore", str(tmp_path / "in"), "-o", str(out)]) == 0
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert sorted(first) == [p.name for p in src]
    (out / "p01.png").unlink()
    decoded: list[str] = []
    import pyfill.images as images

    real = images.read_image

    def counting(path, *a, **k):
        decoded.append(Path(path).name)
        return real(path, *a, **k)

    monkeypatch.setattr(images, "read_image", counting)
    time.sleep(0.01)
    assert main(["restore", str(tmp_path / "in"), "-o", str(out), "--skip-existing"]) == 0
    assert decoded == ["p01.png"]  # only the missing one was read and redone
    again = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert {k: v for k, v in again.items() if k != "p01.png"} == {k: v for k, v in first.items() if k != "p01.png"}
    assert np.array_equal(read_image(out / "p01.png"), pyfill.restore(read_image(src[1])))
    assert "restored 4 of 4 images" in capsys.readouterr().out


def test_inputs_are_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _photos(tmp_path / "in", 2)
    before = [p.read_bytes() for p in src]
    # -o is the input folder itself: every output would land on its input.
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "in")]) == 1
    assert "would overwrite an input" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "in"), "--skip-existing"]) == 1
    assert [p.read_bytes() for p in src] == before
    # Two inputs that differ only in suffix map to one output: the second is refused, not overwritten.
    both = tmp_path / "both"
    both.mkdir()
    Image.fromarray(np.full((16, 16, 3), 50, np.uint8)).save(both / "a.bmp")
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(both / "a.tif")
    assert main(["restore", str(both), "-o", str(tmp_path / "o2"), "--format", "png"]) == 1
    assert "was already written for" in capsys.readouterr().err
    assert np.array_equal(read_image(tmp_path / "o2" / "a.png"), pyfill.restore(read_image(both / "a.bmp")))
    # generate: -o naming the label map.
    labels = tmp_path / "labels.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(labels)
    data = labels.read_bytes()
    assert main(["generate", str(labels), "-o", str(labels)]) == 1
    assert "would overwrite an input" in capsys.readouterr().err
    assert labels.read_bytes() == data


def test_killed_batch_resumes_with_skip_existing(tmp_path: Path) -> None:
    """Kill a batch run part-way; outputs on disk are complete images, and a --skip-existing run
    finishes the rest."""
    _photos(tmp_path / "in", 40, size=64)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pyfill", "restore", str(tmp_path / "in"), "-o", str(out), "--skip-existing"]

    def outputs() -> list[Path]:  # a killed write may leave a hidden temporary, never a named output
        return [p for p in out.glob("*.png") if not p.name.startswith(".")]

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(outputs()) < 3:  # named outputs only: temporaries are
        time.sleep(0.01)                                       # also *.png to glob
    proc.kill()
    proc.wait()

    assert 3 <= len(outputs()) < 40
    for p in outputs():
        read_image(p)  # every output present is a complete image
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
    assert len(outputs()) == 40
    for p in sorted((tmp_path / "in").iterdir()):
        assert np.array_equal(read_image(out / p.name), pyfill.restore(read_image(p)))
