"""Hostile and unusual image files through pyfill.images.read_image: decompression bombs refused
from their headers, truncated files refused, CMYK / palette / 16-bit / EXIF-rotated / animated
files decoded as Pillow and OpenCV decode them."""

from __future__ import annotations

import io
import resource
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from pyfill.images import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, ImageTooLargeError, max_image_pixels, read_image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int, height: int) -> bytes:
    """A PNG header declaring width x height RGB pixels, followed by a few compressed rows."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * min(width, 64)) * 4)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


def jpeg_bomb(width: int, height: int) -> bytes:
    """A baseline JPEG's markers declaring width x height (SOF0), with no image data."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"".join(bytes([i, 0x11, 0]) for i in (1, 2, 3))
    dqt = b"\x00" + bytes(range(1, 65))
    sos = struct.pack(">B", 3) + b"".join(bytes([i, 0]) for i in (1, 2, 3)) + b"\x00\x3f\x00"

    def seg(marker: int, data: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(data) + 2) + data

    return b"\xff\xd8" + seg(0xDB, dqt) + seg(0xC0, sof) + seg(0xDA, sos) + b"\x00" * 16 + b"\xff\xd9"


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("make,suffix", [(png_bomb, ".png"), (jpeg_bomb, ".jpg")])
def test_decompression_bomb_refused_from_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make,
                                                suffix: str) -> None:
    path = tmp_path / f"bomb{suffix}"
    path.write_bytes(make(50_000, 50_000))
    with monkeypatch.context() as m:
        m.setattr(Image, "MAX_IMAGE_PIXELS", None)
        with Image.open(path) as im:  # the crafted header is what Pillow sees
            assert im.size == (50_000, 50_000)
    before = _max_rss_mb()
    with pytest.raises(ImageTooLargeError, match=r"50000 x 50000 = 2,500,000,000 pixels, over the limit"):
        read_image(path)
    # Decoding would need 7.5 GB; the peak resident memory did not grow by even 64 MB.
    assert _max_rss_mb() - before < 64
    # Also refused from memory (the batch runner reads bytes), and with a raised limit that
    # still stays under the declared size.
    with pytest.raises(ImageTooLargeError, match=MAX_PIXELS_ENV):
        read_image(io.BytesIO(path.read_bytes()), max_pixels=2_000_000_000)


def test_limit_is_raisable_by_argument_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (1200, 1000, 3), np.uint8)
    path = tmp_path / "big.png"
    Image.fromarray(arr).save(path)
    assert max_image_pixels() == DEFAULT_MAX_PIXELS
    with pytest.raises(ImageTooLargeError, match="1000 x 1200 = 1,200,000 pixels, over the limit of 1,000,000"):
        read_image(path, max_pixels=1_000_000)
    assert np.array_equal(read_image(path, max_pixels=1_200_000), arr)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1_000_000")
    with pytest.raises(ImageTooLargeError, match="over the limit of 1,000,000"):
        read_image(path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "2000000")
    assert np.array_equal(read_image(path), arr)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match="PYFILL_MAX_IMAGE_PIXELS='lots': expected a positive number"):
        read_image(path)


def test_limit_above_pillows_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A limit above Pillow's process-wide one is honoured, and Pillow's is left as it was."""
    arr = np.full((900, 1000), 7, np.uint8)
    path = tmp_path / "gray.png"
    Image.fromarray(arr).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    with pytest.raises(Image.DecompressionBombError, match="decompression bomb"):
        Image.open(path)
    assert np.array_equal(read_image(path, max_pixels=1_000_000), arr)
    assert Image.MAX_IMAGE_PIXELS == 100_000


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_truncated_files_refused(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(buf, format=fmt)
    data = buf.getvalue()
    for cut in (len(data) // 2, 40, 3):
        path = tmp_path / f"cut{cut}.{fmt.lower()}"
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a readable image"):
            read_image(path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="image file not found"):
        read_image(tmp_path / "nothing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable image"):
        read_image(tmp_path / "empty.png")


def test_cmyk_jpeg_and_tiff_match_pillow(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    cmyk = Image.fromarray(rng.integers(0, 256, (24, 40, 4), np.uint8), mode="CMYK")
    for name in ("c.jpg", "c.tif"):
        cmyk.save(tmp_path / name)
        got = read_image(tmp_path / name)
        with Image.open(tmp_path / name) as im:
            assert im.mode == "CMYK"
            want = np.asarray(im.convert("RGB"))
        assert got.dtype == np.uint8 and got.shape == (24, 40, 3)
        assert np.array_equal(got, want)


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    im = Image.fromarray(rng.integers(0, 16, (20, 30), np.uint8), mode="P")
    im.putpalette([v for i in range(16) for v in (i * 16, 255 - i * 16, i * 7)])
    im.save(tmp_path / "p.png", transparency=0)
    im.save(tmp_path / "p_opaque.png")
    got = read_image(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as ref:
        assert np.array_equal(got, np.asarray(ref.convert("RGBA")))
    opaque = read_image(tmp_path / "p_opaque.png")
    with Image.open(tmp_path / "p_opaque.png") as ref:
        assert np.array_equal(opaque, np.asarray(ref.convert("RGB")))


def test_sixteen_bit_png_matches_opencv(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    gray = rng.integers(0, 65536, (18, 22), np.uint16)
    rgb = rng.integers(0, 65536, (18, 22, 3), np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), gray)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb[..., ::-1])
    g = read_image(tmp_path / "g16.png")
    assert g.dtype == np.uint16 and np.array_equal(g, cv2.imread(str(tmp_path / "g16.png"), cv2.IMREAD_UNCHANGED))
    c = read_image(tmp_path / "c16.png")
    want = cv2.imread(str(tmp_path / "c16.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert c.dtype == np.uint16 and np.array_equal(c, want)
    rgba = rng.integers(0, 65536, (18, 22, 4), np.uint16)
    cv2.imwrite(str(tmp_path / "a16.png"), rgba[..., [2, 1, 0, 3]])
    assert np.array_equal(read_image(tmp_path / "a16.png"), rgba)


def test_sixteen_bit_colour_png_with_orientation(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 65536, (10, 16, 3), np.uint16)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb[..., ::-1])
    exif = Image.Exif()
    exif[0x0112] = 6
    # Re-save the PNG with an eXIf chunk appended before IEND.
    data = (tmp_path / "c16.png").read_bytes()
    chunk = _chunk(b"eXIf", exif.tobytes())
    (tmp_path / "r16.png").write_bytes(data[:-12] + chunk + data[-12:])
    with Image.open(tmp_path / "r16.png") as im:
        assert im.getexif().get(0x0112) == 6
    assert np.array_equal(read_image(tmp_path / "r16.png"), np.rot90(rgb, -1))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    rng = np.random.default_rng(orientation)
    arr = rng.integers(0, 256, (12, 20, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(arr).save(path, exif=exif)
    got = read_image(path)
    with Image.open(path) as im:
        want = np.asarray(ImageOps.exif_transpose(im))
    assert np.array_equal(got, want)
    # An independent statement of what orientations 6 and 8 mean (rotate 90 deg clockwise / counter).
    if orientation == 6:
        assert np.array_equal(got, np.rot90(arr, k=-1))
    if orientation == 8:
        assert np.array_equal(got, np.rot90(arr, k=1))
    if orientation in (5, 6, 7, 8):
        assert got.shape == (20, 12, 3)


def test_exif_rotated_jpeg(tmp_path: Path) -> None:
    arr = np.zeros((16, 32, 3), np.uint8)
    arr[:, :16] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "r.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=100)
    got = read_image(path)
    with Image.open(path) as im:
        assert np.array_equal(got, np.asarray(ImageOps.exif_transpose(im)))
    assert got.shape == (32, 16, 3)
    assert got[:12].mean() > 240 and got[20:].mean() < 15  # the white half is now on top


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((10, 14, 3), v, np.uint8)) for v in (10, 120, 250)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with pytest.warns(UserWarning, match="animated image of 3 frames; only the first is used"):
        got = read_image(path)
    with Image.open(path) as im:
        assert im.n_frames == 3
        want = np.asarray(im.convert("RGB"))
    assert np.array_equal(got, want)
    assert abs(int(got.mean()) - 10) <= 2


def test_gif_with_a_truncated_extension_after_its_frame(tmp_path: Path) -> None:
    """Found by the fuzz run: Pillow (13.0) looking for a second frame indexes past an extension
    block that ends at once (``!`` as the last byte) and raises IndexError. read_image gives the
    first frame or the usual ValueError, for files and file objects, never another exception."""
    frame = np.arange(48, dtype=np.uint8).reshape(6, 8)
    buf = io.BytesIO()
    Image.fromarray(frame).convert("P").save(buf, "GIF")
    data = buf.getvalue()[:-1] + b"!"  # the trailer replaced by an extension introducer
    path = tmp_path / "cut.gif"
    path.write_bytes(data)
    for source in (path, io.BytesIO(data)):
        try:
            got = read_image(source)
        except ValueError as exc:
            assert "not a readable image" in str(exc)
        else:
            assert np.array_equal(got[..., 0] if got.ndim == 3 else got, frame)
