"""Structure-aware fuzz targets (Hypothesis strategies) for pyfill's input boundaries.

Each target pairs a strategy of inputs with a function that feeds one input to pyfill. A target
passes an input when pyfill returns or raises one of the documented, clear exceptions
(ValueError, TypeError and their subclasses); anything else (IndexError, SystemError,
RuntimeError, MemoryError, a crash of the process, or a call that runs longer than the hang
limit) is a defect. Used by tests/test_fuzz.py (a short seeded run) and benchmarks/fuzz.py (the
long run).

Inputs are valid-looking as often as not: image-shaped arrays of the dtypes the ops take next to
arbitrary shapes, dtypes (bool, float16, complex...), non-contiguous and negative strides,
read-only and Fortran-ordered arrays, NaN, infinities, and extreme parameters. Sizes a call
could honestly allocate gigabytes for (a 100,000 x 100,000 resize) are kept out; sizes past what
NumPy can address are kept in.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

ALLOWED = (ValueError, TypeError)
HANG_SECONDS = 10.0

_ALL_DTYPES = [np.uint8, np.uint16, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_,
               np.complex64]
_IMAGE_DTYPES = [np.uint8, np.float32]


def _layout(arr_and_kind: tuple[np.ndarray, str]) -> np.ndarray:
    arr, kind = arr_and_kind
    if arr.ndim == 0 or arr.size == 0:
        return arr
    if kind == "fortran":
        return np.asfortranarray(arr)
    if kind == "strided":  # same shape and values, every other element of a buffer twice as long
        return np.repeat(arr, 2, axis=0)[::2]
    if kind == "reversed":
        return arr[::-1]
    if kind == "readonly":
        arr = arr.copy()
        arr.flags.writeable = False
        return arr
    if kind == "transposed":
        return np.ascontiguousarray(np.swapaxes(arr, 0, -1)).swapaxes(0, -1)
    return arr


_LAYOUTS = st.sampled_from(["c", "fortran", "strided", "reversed", "readonly", "transposed"])


def any_array(max_dims: int = 5, max_side: int = 8) -> st.SearchStrategy[np.ndarray]:
    shapes = hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side)
    base = st.sampled_from(_ALL_DTYPES).flatmap(lambda dt: hnp.arrays(dt, shapes))
    return st.tuples(base, _LAYOUTS).map(_layout)


def image_array(channels: tuple[int, ...] = (3,), batch: bool = True, max_side: int = 24,
                dtypes: list[Any] | None = None) -> st.SearchStrategy[np.ndarray]:
    """(H, W, C) or (B, H, W, C) arrays of image dtypes; float values mostly in [0, 1] with NaN,
    infinities and out-of-range values sometimes."""
    h = st.integers(1, max_side)
    w = st.integers(1, max_side)
    c = st.sampled_from(channels)
    b = st.integers(1, 3)
    shape = st.one_of(st.tuples(h, w, c), st.tuples(b, h, w, c)) if batch else st.tuples(h, w, c)

    def arrays(dt: Any) -> st.SearchStrategy[np.ndarray]:
        if np.dtype(dt).kind == "f":
            elements = st.one_of(st.floats(0, 1, width=32), st.sampled_from([np.nan, np.inf, -np.inf, -0.5, 2.0]))
            return hnp.arrays(dt, shape, elements=elements)
        return hnp.arrays(dt, shape)

    base = st.sampled_from(dtypes or _IMAGE_DTYPES).flatmap(arrays)
    return st.tuples(base, _LAYOUTS).map(_layout)


def pixels(**kw: Any) -> st.SearchStrategy[np.ndarray]:
    """Image-shaped arrays (most inputs) mixed with arbitrary ones."""
    return st.one_of(image_array(**kw), image_array(**kw), image_array(**kw), any_array())


EXTREME_NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63), 0.5, 1e-300, 1e300,
                     np.float32(0.25), np.int64(3), np.uint8(200), float("nan"), float("inf")]),
)
ODD_VALUES = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.just([1, 2]), st.just((3, 3)),
                       st.just({"a": 1}), st.just(np.zeros(2)), st.just(b"x"))


def number(low: float, high: float) -> st.SearchStrategy[Any]:
    """Mostly in-range numbers, sometimes extreme or not numbers at all."""
    return st.one_of(st.floats(low, high), st.floats(low, high), st.integers(int(low), int(high)), EXTREME_NUMBERS,
                     ODD_VALUES)


def size_param(high: int = 64, huge: tuple[int, ...] = (2**62, 2**62 + 1, 2**63, 2**63 + 1, 2**64, 2**64 + 1)
               ) -> st.SearchStrategy[Any]:
    """Sizes: small real ones, and ones past what NumPy can address (never the gigabyte middle,
    unless ``huge`` says so)."""
    return st.one_of(st.integers(-3, high), st.integers(-3, high), st.sampled_from(huge),
                     st.floats(allow_nan=True), ODD_VALUES)


# ---- images and manifests -----------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _seed_images() -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for fmt, mode, kw in [("PNG", "RGB", {}), ("PNG", "RGBA", {}), ("PNG", "L", {}), ("PNG", "P", {}),
                          ("PNG", "I;16", {}), ("JPEG", "RGB", {}), ("JPEG", "CMYK", {}), ("GIF", "P", {}),
                          ("BMP", "RGB", {}), ("TIFF", "RGB", {}), ("WEBP", "RGB", {}), ("PPM", "RGB", {})]:
        arr = rng.integers(0, 256, (6, 7, 4), np.uint8)
        im = Image.fromarray(arr).convert(mode) if mode != "I;16" else Image.fromarray(arr[..., 0].astype(np.uint16) * 257)
        buf = io.BytesIO()
        im.save(buf, format=fmt, **kw)
        out.append(buf.getvalue())
    header = struct.pack(">IIBBBBB", 8, 8, 16, 2, 0, 0, 0)
    raw = zlib.compress(b"".join(b"\x00" + bytes(48) for _ in range(8)))
    out.append(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", raw) + _png_chunk(b"IEND", b""))
    return out


_SEEDS: list[bytes] = []


def seed_images() -> list[bytes]:
    if not _SEEDS:
        _SEEDS.extend(_seed_images())
    return _SEEDS


@st.composite
def image_file_bytes(draw: Any) -> bytes:
    """A valid small image file with some bytes changed, cut, or its declared size rewritten."""
    data = bytearray(draw(st.sampled_from(seed_images())))
    how = draw(st.sampled_from(["flip", "cut", "size", "insert", "flip"]))
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif how == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif how == "insert":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=64))
    elif data.startswith(b"\x89PNG"):  # rewrite the declared width and height, with a valid CRC
        w, h = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))
        ihdr = struct.pack(">II", w, h) + bytes(data[24:29])
        data[16:33] = ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def read_image_target(data: bytes) -> None:
    from pyfill.images import read_image

    out = read_image(io.BytesIO(data), max_pixels=1 << 22)
    assert out.dtype in (np.uint8, np.uint16) and out.ndim in (2, 3)


def _good_manifest() -> dict[str, Any]:
    return {
        "task": "generate", "family": "spade", "config": {"size": 32},
        "inputs": [{"name": "labels", "kind": "labels", "classes": 3, "class_names": ["a", "b", "c"],
                    "palette": [[0, 0, 0], [1, 2, 3], [4, 5, 6]]},
                   {"name": "latent", "kind": "vector", "length": 648, "optional": True,
                    "derive": {"op": "stroke_grid", "from": "strokes", "grid": [9, 9]}},
                   {"name": "tok", "kind": "tokens", "shape": [None]}],
        "outputs": [{"name": "image", "kind": "image", "channels": 3, "value_range": [-1, 1]}],
        "size": {"multiple_of": 8, "min_size": 16, "fixed": [32, 32], "resize": "letterbox"},
        "tiling": {"supported": True, "tile": 256, "overlap": 16},
        "format_version": 2,
    }


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@st.composite
def manifest_dicts(draw: Any) -> Any:
    """The good manifest with one to four fields replaced by arbitrary JSON, or removed."""
    d = _good_manifest()
    for _ in range(draw(st.integers(1, 4))):
        node: Any = d
        path = []
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
            path.append((node, key))
            node = node[key]
        if not path:
            key = draw(st.sampled_from(sorted(d)))
            path.append((d, key))
        parent, key = path[-1]
        if isinstance(parent, dict) and draw(st.integers(0, 4)) == 0:
            parent.pop(key, None)
        else:
            parent[key] = draw(JSON_VALUES)
    return d


def manifest_target(case: Any) -> None:
    from pyfill.manifest import Manifest

    if isinstance(case, str):
        Manifest.from_json(case)
    else:
        m = Manifest.from_dict(case)
        assert Manifest.from_json(m.to_json()).to_dict() == m.to_dict()


MANIFEST_CASES = st.one_of(manifest_dicts(), manifest_dicts(), manifest_dicts(),
                           st.text(max_size=200), JSON_VALUES.map(json.dumps))


# ---- the board's request parser -------------------------------------------------------------


def _png_b64(arr: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@st.composite
def board_bodies(draw: Any) -> bytes:
    """Draw request bodies: valid ones with odd sizes, modes and mismatches; mutated PNGs;
    arbitrary JSON; raw bytes."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=300))
    if kind == 1:
        return json.dumps(draw(JSON_VALUES)).encode()
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = draw(st.sampled_from([(h, w), (h, w, 3), (h, w, 4), (h, w, 2)]))
    labels = rng.integers(0, 12, shape, np.uint8)
    try:
        body: dict[str, Any] = {"labels": _png_b64(labels if labels.ndim == 2 or labels.shape[-1] != 2 else labels[..., 0])}
    except (ValueError, TypeError, OSError):
        body = {"labels": ""}
    if draw(st.booleans()):
        sh, sw = (h, w) if draw(st.booleans()) else (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
        body["strokes"] = _png_b64(rng.integers(0, 256, (sh, sw, draw(st.sampled_from([3, 4]))), np.uint8))
        if draw(st.booleans()):
            body["occupancy"] = _png_b64(rng.integers(0, 2, (sh, sw), np.uint8) * 255)
    if kind == 3:
        field = draw(st.sampled_from(sorted(body)))
        raw = bytearray(base64.b64decode(body[field]))
        for _ in range(draw(st.integers(1, 6))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        body[field] = base64.b64encode(bytes(raw)).decode()
    if kind == 4:
        body[draw(st.sampled_from(["labels", "strokes", "occupancy", "other"]))] = draw(JSON_VALUES)
    if draw(st.integers(0, 5)) == 0:
        body["labels"] = "data:image/png;base64," + str(body.get("labels"))
    return json.dumps(body).encode()


def board_target(raw: bytes) -> None:
    from pyfill.board.server import MAX_SIDE, MIN_SIDE, parse_body, parse_draw

    inputs = parse_draw(parse_body(raw))
    labels = inputs["labels"]
    assert labels.dtype == np.uint8 and MIN_SIDE <= labels.shape[0] <= MAX_SIDE
    if "strokes" in inputs:
        assert inputs["strokes"].shape[:2] == inputs["occupancy"].shape == labels.shape[:2]


# ---- the Engine's input conversion ------------------------------------------------------------


@st.composite
def engine_input_cases(draw: Any) -> tuple[Any, Any]:
    from pyfill.manifest import TensorSpec

    kind = draw(st.sampled_from(["image", "image", "vector", "tensor", "tokens", "landmarks", "boxes"]))
    if kind == "image":
        spec = TensorSpec("x", "image", draw(st.sampled_from([1, 3, 4])),
                          draw(st.sampled_from(["rgb", "gray", "lab_l", "lab_ab", "none"])),
                          draw(st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0), (-1e30, 1e30)])))
        value = draw(st.one_of(pixels(channels=(1, 2, 3, 4), batch=False,
                                      dtypes=[np.uint8, np.uint16, np.float32, np.float64, np.int32, np.bool_]),
                               any_array(), ODD_VALUES))
    elif kind in ("vector", "tensor"):
        spec = TensorSpec("v", kind, length=4, shape=[4] if kind == "vector" else [None, 3])
        value = draw(st.one_of(any_array(max_dims=3), ODD_VALUES))
    elif kind == "tokens":
        spec = TensorSpec("t", "tokens", shape=[None])
        value = draw(st.one_of(any_array(max_dims=2), ODD_VALUES))
    else:
        spec = TensorSpec("p", kind, shape=[])
        value = draw(st.one_of(any_array(max_dims=3), ODD_VALUES))
    if draw(st.integers(0, 6)) == 0:
        value = draw(st.sampled_from([[[1, 2], [3, 4]], [[1, 2], [3]], "abc", [[np.nan] * 3] * 2]))
    return spec, value


def engine_input_target(case: tuple[Any, Any]) -> None:
    from pyfill.engine import inputs

    spec, value = case
    if spec.kind == "image":
        out, _ = inputs.image(spec, value, "x", bgr=False, keep_torch=False)
        assert out.dtype == np.float32 and out.shape[0] == spec.channels
    else:
        out = inputs.convert(spec, value, "v")
        assert isinstance(out, np.ndarray)


# ---- pyfill.ops -----------------------------------------------------------------------------


def _ops() -> Any:
    import pyfill.ops as ops

    return ops


def _op(name: str, *strategies: st.SearchStrategy[Any]) -> tuple[st.SearchStrategy[Any], Callable[[Any], None]]:
    def run(case: tuple[Any, ...]) -> None:
        getattr(_ops(), name)(*case)

    return st.tuples(*strategies), run


GRIDS = st.one_of(st.tuples(st.integers(-1, 30), st.integers(-1, 30)), st.tuples(st.integers(1, 9), st.integers(1, 9)),
                  ODD_VALUES, st.tuples(EXTREME_NUMBERS, EXTREME_NUMBERS))
KERNELS = st.one_of(hnp.arrays(np.float32, st.sampled_from([(1, 1), (3, 3), (5, 5), (2, 2), (3, 5), (3,), (0, 0)])),
                    any_array(max_dims=3, max_side=5), ODD_VALUES)


# Kernel sizes no image calls for, each odd (as a kernel size must be): refused, not allocated.
_HUGE_ODD = (2**20 + 1, 2**31 + 1, 2**40 + 1, 2**62 + 1, 2**64 + 1)


@dataclass
class Target:
    name: str
    strategy: st.SearchStrategy[Any]
    run: Callable[[Any], None]


def _chw_arrays() -> st.SearchStrategy[Any]:
    shapes = st.tuples(st.integers(1, 4), st.integers(1, 12), st.integers(1, 12))
    return st.one_of(hnp.arrays(np.float32, shapes), any_array(), ODD_VALUES)


def targets() -> list[Target]:
    ops_cases = {
        "image_to_chw": _op("image_to_chw", st.one_of(pixels(channels=(1, 3, 4), batch=False), ODD_VALUES),
                            EXTREME_NUMBERS, EXTREME_NUMBERS),
        "chw_to_image": _op("chw_to_image", st.one_of(_chw_arrays(), st.tuples(_chw_arrays(), _LAYOUTS).map(
            lambda t: _layout(t) if isinstance(t[0], np.ndarray) else t[0])), EXTREME_NUMBERS, EXTREME_NUMBERS),
        "add_gaussian_noise": _op("add_gaussian_noise", pixels(), number(0, 100), number(-50, 50), st.booleans(),
                                  st.one_of(st.integers(0, 2**64 - 1), EXTREME_NUMBERS)),
        "add_poisson_noise": _op("add_poisson_noise", pixels(), number(0, 10), st.booleans(),
                                 st.one_of(st.integers(0, 2**64 - 1), EXTREME_NUMBERS)),
        "add_salt_pepper": _op("add_salt_pepper", pixels(), number(0, 1), st.one_of(st.integers(0, 2**64 - 1),
                                                                                     EXTREME_NUMBERS)),
        "filter2d": _op("filter2d", pixels(), KERNELS),
        "gaussian_blur": _op("gaussian_blur", pixels(), size_param(31, _HUGE_ODD), number(0, 20)),
        "gaussian_kernel": _op("gaussian_kernel", size_param(101, _HUGE_ODD), number(0, 50)),
        "motion_blur": _op("motion_blur", pixels(), number(0, 40), number(-720, 720)),
        "motion_kernel": _op("motion_kernel", number(0, 200), number(-720, 720)),
        "resize": _op("resize", pixels(), st.one_of(st.tuples(size_param(48), size_param(48)), ODD_VALUES),
                      st.sampled_from(["nearest", "bilinear", "bicubic", "area", "lanczos", 1, None])),
        "jpeg": _op("jpeg", pixels(), st.one_of(st.integers(-5, 105), EXTREME_NUMBERS, ODD_VALUES),
                    st.sampled_from(["4:2:0", "4:4:4", "4:2:2", None, 420])),
        "stroke_grid": _op("stroke_grid", pixels(dtypes=[np.uint8, np.float32, np.float64, np.int32, np.uint16]),
                           st.one_of(st.none(), any_array(max_dims=4), hnp.arrays(np.bool_, st.tuples(
                               st.integers(1, 24), st.integers(1, 24)))), GRIDS),
        "stroke_grid_from_image": _op("stroke_grid_from_image",
                                      pixels(dtypes=[np.uint8, np.float32, np.float64, np.int64]), GRIDS,
                                      number(0, 1), st.one_of(st.integers(0, 2**64 - 1), EXTREME_NUMBERS)),
        "stroke_grid_latent": _op("stroke_grid_latent", st.one_of(
            hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.just(8))),
            any_array(), ODD_VALUES)),
    }
    out = [Target(f"ops.{name}", strategy, run) for name, (strategy, run) in ops_cases.items()]
    out += [
        Target("engine.inputs", engine_input_cases(), engine_input_target),
        Target("images.read_image", image_file_bytes(), read_image_target),
        Target("manifest", MANIFEST_CASES, manifest_target),
        Target("board.request", board_bodies(), board_target),
    ]
    return out


def check(target: Target, case: Any) -> None:
    """Feed one input; raise only for a defect (an exception outside :data:`ALLOWED`)."""
    try:
        target.run(case)
    except ALLOWED:
        pass
