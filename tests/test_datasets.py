"""Curating real photographs from Debian wallpaper packages (training/datasets.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("skimage")
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from training import datasets as D  # noqa: E402
from training.data import package_image  # noqa: E402

DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: demo

Files: *
Copyright: 2014 Some Group
License: GPL-2+

Files: photos/lake_by_Ann.jpg
Copyright: Ann Example, 2018
License: CC-BY-4.0

Files: photos/*.png
Copyright: 2020 Bob
License: CC-BY-SA-3.0
 Long licence text that continues
 on further lines.
"""


def test_licence_of_picks_the_last_matching_stanza() -> None:
    stanzas = D.parse_copyright(DEP5)
    assert [s["license"] for s in stanzas] == ["GPL-2+", "CC-BY-4.0", "CC-BY-SA-3.0"]
    assert D.licence_of("backgrounds/photos/lake_by_Ann.jpg", stanzas) == {
        "copyright": "Ann Example, 2018", "license": "CC-BY-4.0"}
    assert D.licence_of("backgrounds/photos/x.png", stanzas)["license"] == "CC-BY-SA-3.0"
    assert D.licence_of("backgrounds/other/y.jpg", stanzas) == {"copyright": "2014 Some Group", "license": "GPL-2+"}


def test_non_dep5_copyright_file_is_kept_as_text() -> None:
    stanzas = D.parse_copyright("This package was debianized by someone.\nCopyright (c) 2001 Jane\n")
    assert stanzas == [{"files": ["*"], "copyright": "This package was debianized by someone. Copyright (c) 2001 Jane",
                        "license": "see copyright file"}]


def gradient(h: int = 600, w: int = 900) -> np.ndarray:
    """A rendered-looking smooth two-colour gradient, float (h, w, 3)."""
    t = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
    return np.broadcast_to((1 - t) * np.array([0.1, 0.3, 0.8]) + t * np.array([0.9, 0.4, 0.6]), (h, w, 3)).astype(np.float32)


def test_photo_test_tells_photos_from_graphics() -> None:
    for name in ("astronaut", "coffee", "stereo_motorcycle"):
        stats = D.photo_statistics(package_image(name))
        assert D.photo_test(stats) is None, (name, stats)
    smooth = D.photo_statistics(gradient())
    assert D.photo_test(smooth).startswith("graphic: texture")  # type: ignore[union-attr]
    flat = np.zeros((600, 900, 3), np.float32)
    flat[:, 450:] = [1.0, 0.5, 0.0]
    flat += np.random.default_rng(0).normal(0, 0.03, flat.shape).astype(np.float32) * (np.arange(900) < 100)[None, :, None]
    reason = D.photo_test(D.photo_statistics(np.clip(flat, 0, 1)))
    assert reason is not None and reason.startswith("graphic")


def save(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)


def test_curate_folder_drops_held_out_copies_artwork_duplicates_and_graphics(tmp_path: Path) -> None:
    moto = package_image("stereo_motorcycle")
    chelsea = package_image("chelsea")
    save(moto, tmp_path / "share/a/moto.png")
    save(moto[::2, ::2], tmp_path / "share/a/moto_small.png")  # the same picture, smaller
    save(chelsea, tmp_path / "share/a/cat.png")  # a held-out evaluation photo
    save(package_image("coffee")[:, ::-1], tmp_path / "share/a/mirrored.png")  # flipped held-out photo
    save(gradient(), tmp_path / "share/a/gradient.png")
    save(moto, tmp_path / "share/mate/abstract/painting.png")  # listed as artwork
    kept, dropped = D.curate_folder(tmp_path / "share", min_size=200, max_side=256,
                                    exclude=("mate/abstract/*",))
    assert [k["file"] for k in kept] == ["a/moto.png"]
    assert max(kept[0]["image"].shape[:2]) == 256
    reasons = {d["file"]: d["reason"].split(":")[0] for d in dropped}
    assert reasons == {"a/moto_small.png": "duplicate", "a/cat.png": "held out", "a/mirrored.png": "held out",
                       "a/gradient.png": "graphic", "mate/abstract/painting.png": "artwork"}


@pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None, reason="needs apt-get and dpkg-deb")
def test_build_from_a_real_package(tmp_path: Path) -> None:
    """lomiri-wallpapers (2.7 MB): two rendered wallpapers, both dropped as graphics, licences from
    its DEP-5 copyright file. Skips when the package registry cannot be reached."""
    try:
        D.apt_download("lomiri-wallpapers", tmp_path / "data" / "debs")
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"apt-get cannot fetch the package here: {exc}")
    manifest = D.build(tmp_path / "data", ["lomiri-wallpapers"])
    assert manifest["sources"][0]["package"] == "lomiri-wallpapers"
    assert len(manifest["sources"][0]["sha256"]) == 64
    files = {Path(d["file"]).name: d for d in manifest["dropped"]}
    assert files["warty-final-ubuntu.png"]["license"] == "CC-BY-SA-3.0"
    assert files["warty-final-ubuntu.png"]["reason"].startswith("graphic")
    assert manifest["counts"]["kept"] == 0
    assert (tmp_path / "data" / "manifest.json").is_file()
