"""Checks an ONNX file before any runtime opens it: where its external data lives and how large
its tensors say they are.

An ONNX file may keep tensors in other files ("external data"), named by a path inside the
model. A hostile file can name ``../../etc/passwd``, an absolute path, a symbolic link leading
out of the model's folder, a device such as ``/dev/zero``, or declare tensors of absurd size.
ONNX Runtime and OpenVINO refuse some of these themselves, in some versions; pyfill checks every
ONNX file it loads (:func:`check_onnx_file`) the same way whatever runtime and version follow.

The file is read with a small protocol-buffer walker (no ``onnx`` package needed) that visits
the graph, its nested graphs (If/Loop bodies) and functions, skipping tensor payloads unread.
"""

from __future__ import annotations

import math
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The most bytes an ONNX model's tensors may declare in all (inline and external): 64 GiB,
# raisable with this environment variable (a number of bytes).
DEFAULT_MAX_MODEL_BYTES = 64 << 30
MAX_MODEL_BYTES_ENV = "PYFILL_MAX_MODEL_BYTES"
_MAX_DEPTH = 32  # nested graphs

# ONNX TensorProto.DataType -> bytes per element (0: strings, sized by their payload).
_ITEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 8: 0, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8,
               15: 16, 16: 2, 17: 1, 18: 1, 19: 1, 20: 1, 21: 1, 22: 1, 23: 1, 24: 1, 25: 1}


class UnsafeModelError(ValueError):
    """An ONNX file that reads outside its folder, declares impossible tensors or is malformed."""


@dataclass
class OnnxSummary:
    """What :func:`check_onnx_file` found: tensors seen, external data files (resolved), and the
    bytes all tensors declare."""

    tensors: int
    external_files: list[Path]
    declared_bytes: int


def max_model_bytes() -> int:
    text = os.environ.get(MAX_MODEL_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_MODEL_BYTES
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_MODEL_BYTES_ENV}={text!r}: expected a positive number of bytes")
    return value


class _Reader:
    """Protocol-buffer wire format over a buffer: (field, wire type, value) of one message."""

    def __init__(self, buf: memoryview | bytes, where: str) -> None:
        self.buf = buf
        self.where = where

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        result, shift = 0, 0
        while True:
            if pos >= end or shift > 63:
                raise UnsafeModelError(f"{self.where}: not a readable ONNX model (malformed protocol buffer: "
                                       "bad varint)")
            b = self.buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result, pos
            shift += 7

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
        """Yield (field number, wire type, value): an int for varints and fixed-width fields,
        (start, end) offsets for length-delimited ones."""
        pos = start
        while pos < end:
            key, pos = self.varint(pos, end)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, pos = self.varint(pos, end)
                yield number, wire, value
            elif wire == 2:
                length, pos = self.varint(pos, end)
                if length > end - pos:
                    raise UnsafeModelError(f"{self.where}: not a readable ONNX model (a field runs past the end "
                                           "of the file: truncated, or not ONNX)")
                yield number, wire, (pos, pos + length)
                pos += length
            elif wire in (1, 5):
                size = 8 if wire == 1 else 4
                if size > end - pos:
                    raise UnsafeModelError(f"{self.where}: not a readable ONNX model (truncated)")
                yield number, wire, int.from_bytes(self.buf[pos:pos + size], "little")
                pos += size
            else:
                raise UnsafeModelError(f"{self.where}: not a readable ONNX model (malformed protocol buffer, "
                                       f"wire type {wire})")

    def text(self, span: tuple[int, int]) -> str:
        return bytes(self.buf[span[0]:span[1]]).decode("utf-8", "replace")


class _Walker:
    def __init__(self, reader: _Reader, folder: Path, where: str) -> None:
        self.r = reader
        self.folder = folder
        self.real_folder = Path(os.path.realpath(folder))
        self.where = where
        self.tensors = 0
        self.declared = 0
        self.external: list[Path] = []

    def model(self, span: tuple[int, int]) -> None:
        start, end = span
        for number, wire, value in self.r.fields(start, end):
            if wire != 2:
                continue
            if number == 7:  # graph
                self.graph(value, 0)
            elif number == 25:  # functions
                self.function(value, 0)

    def function(self, span: tuple[int, int], depth: int) -> None:
        start, end = span
        for number, wire, value in self.r.fields(start, end):
            if number == 7 and wire == 2:
                self.node(value, depth)

    def graph(self, span: tuple[int, int], depth: int) -> None:
        start, end = span
        if depth > _MAX_DEPTH:
            raise UnsafeModelError(f"{self.where}: graphs nested more than {_MAX_DEPTH} deep")
        for number, wire, value in self.r.fields(start, end):
            if wire != 2:
                continue
            if number == 1:
                self.node(value, depth)
            elif number == 5:
                self.tensor(value)
            elif number == 15:
                self.sparse(value)

    def node(self, span: tuple[int, int], depth: int) -> None:
        start, end = span
        for number, wire, value in self.r.fields(start, end):
            if number == 5 and wire == 2:
                self.attribute(value, depth)

    def attribute(self, span: tuple[int, int], depth: int) -> None:
        start, end = span
        for number, wire, value in self.r.fields(start, end):
            if wire != 2:
                continue
            if number in (5, 10):  # t, tensors
                self.tensor(value)
            elif number in (6, 11):  # g, graphs
                self.graph(value, depth + 1)
            elif number in (22, 23):  # sparse_tensor(s)
                self.sparse(value)

    def sparse(self, span: tuple[int, int]) -> None:
        start, end = span
        for number, wire, value in self.r.fields(start, end):
            if number in (1, 2) and wire == 2:
                self.tensor(value)

    def tensor(self, span: tuple[int, int]) -> None:
        start, end = span
        self.tensors += 1
        dims: list[int] = []
        data_type, name, raw, location, external = 0, "?", None, 0, {}
        for number, wire, value in self.r.fields(start, end):
            if number == 1:
                if wire == 0:
                    dims.append(_signed(value))
                elif wire == 2:  # packed
                    pos, stop = value
                    while pos < stop:
                        v, pos = self.r.varint(pos, stop)
                        dims.append(_signed(v))
            elif number == 2 and wire == 0:
                data_type = value
            elif number == 8 and wire == 2:
                name = self.r.text(value)[:200]
            elif number == 9 and wire == 2:
                raw = value[1] - value[0]
            elif number == 13 and wire == 2:
                key, val = "", ""
                for n2, w2, v2 in self.r.fields(*value):
                    if w2 == 2 and n2 == 1:
                        key = self.r.text(v2)
                    elif w2 == 2 and n2 == 2:
                        val = self.r.text(v2)
                external[key] = val
            elif number == 14 and wire == 0:
                location = value
        label = f"{self.where}: tensor {name!r}"
        if any(d < 0 for d in dims):
            raise UnsafeModelError(f"{label} declares a negative dimension {dims}")
        count = math.prod(dims)
        item = _ITEM_BYTES.get(data_type, 0)
        nbytes = count * item
        self.declared += nbytes
        if nbytes > max_model_bytes():
            raise UnsafeModelError(
                f"{label} declares dimensions {dims} ({nbytes:,} bytes), over the limit of {max_model_bytes():,} "
                f"bytes (raise it with the environment variable {MAX_MODEL_BYTES_ENV})")
        if raw is not None and item and raw != nbytes:
            raise UnsafeModelError(f"{label} declares dimensions {dims} ({nbytes:,} bytes) but holds {raw:,} bytes")
        if location == 1 or external:
            self.external_tensor(label, external, nbytes if item else None)

    def external_tensor(self, label: str, info: dict[str, str], nbytes: int | None) -> None:
        loc = info.get("location", "")
        if not loc:
            raise UnsafeModelError(f"{label}: external data without a location")
        pure = Path(loc)
        if "\x00" in loc or pure.is_absolute() or loc.startswith(("/", "\\")) or ":" in loc:
            raise UnsafeModelError(f"{label}: external data path {loc!r} is absolute; it must lie in the "
                                   "model's folder")
        if ".." in Path(loc.replace("\\", "/")).parts:
            raise UnsafeModelError(f"{label}: external data path {loc!r} leads out of the model's folder")
        target = Path(os.path.realpath(self.folder / loc))
        if target != self.real_folder and self.real_folder not in target.parents:
            raise UnsafeModelError(f"{label}: external data path {loc!r} resolves to {target}, outside the model's "
                                   f"folder {self.real_folder}")
        if not target.exists():
            raise UnsafeModelError(f"{label}: external data file {loc!r} not found beside the model")
        if not target.is_file():
            raise UnsafeModelError(f"{label}: external data {loc!r} is not a regular file")
        try:
            offset = int(info.get("offset", "0") or 0)
            length = int(info["length"]) if info.get("length") else None
        except ValueError as exc:
            raise UnsafeModelError(f"{label}: external data offset/length are not integers ({exc})") from exc
        size = target.stat().st_size
        if offset < 0 or (length is not None and length < 0):
            raise UnsafeModelError(f"{label}: negative external data offset or length")
        if nbytes is not None and length is not None and length != nbytes:
            raise UnsafeModelError(f"{label}: external data length {length:,} differs from the {nbytes:,} bytes "
                                   "its dimensions declare")
        need = length if length is not None else (nbytes if nbytes is not None else size - offset)
        if offset + need > size:
            raise UnsafeModelError(f"{label}: external data {loc!r} needs bytes {offset:,}..{offset + need:,} "
                                   f"but the file has {size:,}")
        if target not in self.external:
            self.external.append(target)


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def check_onnx_file(path: str | os.PathLike[str]) -> OnnxSummary:
    """Refuse (:class:`UnsafeModelError`, a ValueError) an ONNX file whose external data lies
    outside its folder (``..``, absolute paths, links leading out), is not a regular file or is
    shorter than declared, or whose tensors declare negative dimensions, more bytes than they
    hold, or more than ``$PYFILL_MAX_MODEL_BYTES`` (default 64 GiB) in all. Reads no external
    data. Returns what it found."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model file not found: {p}")
    where = str(p)
    size = p.stat().st_size
    if size == 0:
        raise UnsafeModelError(f"{where}: not a readable ONNX model (empty file)")
    with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        view = memoryview(mm)
        try:
            walker = _Walker(_Reader(view, where), p.parent, where)
            walker.model((0, size))
            if walker.declared > max_model_bytes():
                raise UnsafeModelError(
                    f"{where}: its tensors declare {walker.declared:,} bytes in all, over the limit of "
                    f"{max_model_bytes():,} (raise it with the environment variable {MAX_MODEL_BYTES_ENV})")
            return OnnxSummary(walker.tensors, walker.external, walker.declared)
        finally:
            view.release()
