"""Writing video: a file (written under a temporary name, renamed when closed) or an image
sequence, with the input's timestamps, rotation and colour tags, and copied audio/subtitles."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from pyfill._core import require
from pyfill.video.reader import SEQUENCE_PATTERN

DEFAULT_CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264",
                  ".webm": "libvpx-vp9", ".avi": "mpeg4"}
DEFAULT_PRESET = {"libx264": "veryfast", "libx265": "veryfast"}
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 32, "libvpx": 10, "libsvtav1": 35}
DEFAULT_OPTIONS = {"libvpx-vp9": {"row-mt": "1", "cpu-used": "4"}}
DEFAULT_PIX_FMT = {"ffv1": "bgr0", "png": "rgb24", "libvpx": "yuv420p"}
UNSPECIFIED = {"color_range": 0, "color_primaries": 2, "color_trc": 2, "colorspace": 2}


def _av() -> Any:
    return require("av", "video")


def default_codec(dst: str | Path) -> str:
    """The codec used for ``dst`` when none is given: libx264 (H.264) for mp4/m4v/mov/mkv when
    PyAV's FFmpeg has it, libvpx-vp9 for webm, png for image sequences, else the container's
    default."""
    av = _av()
    suffix = Path(str(dst)).suffix.lower()
    if SEQUENCE_PATTERN.search(Path(str(dst)).name):
        return "png" if suffix == ".png" else {".jpg": "mjpeg", ".jpeg": "mjpeg"}.get(suffix, "png")
    codec = DEFAULT_CODECS.get(suffix)
    if codec is not None and codec in av.codecs_available:
        return codec
    with av.open(os.devnull, "w", format=_format_for(dst)) as probe:
        return str(probe.default_video_codec)


def _format_for(dst: str | Path) -> str | None:
    suffix = Path(str(dst)).suffix.lower()
    if SEQUENCE_PATTERN.search(Path(str(dst)).name):
        return "image2"
    return {".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".mp4": "mp4", ".m4v": "mp4"}.get(suffix)


def partial_path(dst: Path) -> Path:
    """The temporary name a video file is written under until it is closed."""
    return dst.with_name(f".{dst.stem}.partial{dst.suffix}")


class VideoWriter:
    """Encode RGB frames to a video file or an image sequence.

    Args:
        dst: output file (``.mp4``, ``.mkv``, ``.webm``, ``.mov``, ...) or an image sequence
            pattern (``out/frame_%05d.png``; FFmpeg numbers from 1).
        codec: encoder name (default: :func:`default_codec`); ``ffv1`` gives lossless video
            (in ``.mkv``), stored as 8-bit RGB (``bgr0``) unless ``pix_fmt`` says otherwise.
        crf: constant rate factor for libx264/libx265/libvpx*/libsvtav1 (defaults 18 / 20 / 32 /
            35; lower = better quality, larger file).
        pix_fmt: pixel format (default ``yuv420p``; ``bgr0`` for ffv1, ``rgb24`` for png;
            ``yuv444p`` when the frame size is odd and 4:2:0 cannot hold it).
        preset: encoder preset (libx264/libx265: ``ultrafast`` ... ``veryslow``; default
            ``veryfast``, which leaves the CPU to the model: about half the encoding work of
            FFmpeg's ``medium`` for somewhat larger files at the same CRF).
        options: further encoder options (FFmpeg names, string values); libvpx-vp9 gets
            ``row-mt=1`` and ``cpu-used=4`` unless given.
        rate: nominal frame rate (default 25).
        time_base: unit of the timestamps given to :meth:`write` (default ``1 / rate``).
        rotation: display rotation to store, degrees counter-clockwise (the attribute may be
            set until the first frame is written).
        colour: ``color_range`` / ``color_primaries`` / ``color_trc`` / ``colorspace`` of the
            source (FFmpeg enum values); RGB is converted to YUV with that matrix and range and
            the stream is tagged with them.
        copy_streams: input audio/subtitle streams whose packets :meth:`copy` will receive.
        threads: encoder threads (0, the default: the encoder's choice, about one per core).

    A video file is written to a hidden temporary name beside ``dst`` and renamed to ``dst`` by
    :meth:`close`, so ``dst`` only ever holds a finished, playable file.
    """

    def __init__(self, dst: str | Path, *, codec: str | None = None, crf: int | None = None,
                 pix_fmt: str | None = None, preset: str | None = None,
                 options: dict[str, str] | None = None, rate: Fraction | float | None = None,
                 time_base: Fraction | None = None, rotation: int = 0,
                 colour: dict[str, int] | None = None, copy_streams: tuple[Any, ...] | list[Any] = (),
                 threads: int = 0) -> None:
        av = _av()
        if threads < 0:
            raise ValueError(f"threads must be >= 0 (0: the encoder's choice), got {threads}")
        self.threads = threads
        self.dst = Path(dst)
        self.sequence = bool(SEQUENCE_PATTERN.search(self.dst.name))
        self.codec = codec or default_codec(self.dst)
        if self.codec not in av.codecs_available:
            raise ValueError(f"codec {self.codec!r} is not available in PyAV's FFmpeg")
        self.crf = crf if crf is not None else DEFAULT_CRF.get(self.codec)
        self.pix_fmt = pix_fmt
        self.preset, self.options = preset or DEFAULT_PRESET.get(self.codec), dict(options or {})
        self.rate = Fraction(rate).limit_denominator(1_000_000) if rate else Fraction(25)
        self.time_base = time_base or 1 / self.rate
        self.rotation = int(rotation) % 360
        self.colour = {k: v for k, v in (colour or {}).items() if v != UNSPECIFIED.get(k)}
        self.warnings: list[str] = []
        self.frames_written = 0
        self._last_pts: int | None = None
        self._pending: list[Any] = []
        self._stream: Any = None
        self._copied: dict[int, Any] = {}
        self._copy_sources = list(copy_streams)
        self.dst.parent.mkdir(parents=True, exist_ok=True)
        self._target = self.dst if self.sequence else partial_path(self.dst)
        fmt = _format_for(self.dst)
        try:
            self.container = av.open(str(self._target), "w", format=fmt)
        except (av.FFmpegError, ValueError) as exc:
            raise ValueError(f"{self.dst}: cannot write this kind of file ({exc})") from exc

    # ---- setup on the first frame ----------------------------------------------------------
    def _open_streams(self, height: int, width: int) -> None:
        av = _av()
        pix_fmt = self.pix_fmt or DEFAULT_PIX_FMT.get(self.codec, "yuv420p")
        if pix_fmt.startswith(("yuv420", "yuvj420", "nv12")) and (height % 2 or width % 2):
            if self.pix_fmt:
                raise ValueError(f"pix_fmt {pix_fmt} needs an even frame size, the frames are {width}x{height}")
            pix_fmt = "yuv444p"
            self.warnings.append(f"odd frame size {width}x{height}: written as yuv444p instead of yuv420p")
        supported = [f.name for f in av.codec.Codec(self.codec, "w").video_formats or ()]
        if supported and pix_fmt not in supported:
            raise ValueError(f"codec {self.codec} cannot store pix_fmt {pix_fmt!r}; it takes {', '.join(supported)}")
        self.pix_fmt = pix_fmt
        options = {**DEFAULT_OPTIONS.get(self.codec, {}), **self.options}
        if self.crf is not None and self.codec in DEFAULT_CRF:
            options.setdefault("crf", str(self.crf))
            if self.codec.startswith("libvpx"):
                options.setdefault("b", "0")
        if self.preset:
            options.setdefault("preset", self.preset)
        try:
            stream = self.container.add_stream(self.codec, rate=self.rate, options=options)
        except (av.FFmpegError, ValueError) as exc:
            raise ValueError(f"{self.dst}: cannot encode with {self.codec!r} ({exc})") from exc
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        stream.thread_type = "AUTO"
        if self.threads:
            stream.codec_context.thread_count = self.threads
        if not self._is_rgb():
            for key, value in self.colour.items():
                setattr(stream.codec_context, key, value)
        if self.rotation and not self.sequence:
            stream.set_display_rotation(self.rotation)
        self._stream = stream
        for source in self._copy_sources:
            name = source.codec_context.name if source.codec_context else None
            if name not in self.container.supported_codecs:
                self.warnings.append(f"{source.type} stream #{source.index} ({name}) cannot be stored in "
                                     f"{self.dst.suffix or 'this output'}; it was left out")
                continue
            self._copied[source.index] = self.container.add_stream_from_template(source)

    def _is_rgb(self) -> bool:
        return self.pix_fmt in ("rgb24", "bgr24", "gbrp", "bgr0", "rgba", "rgb48le", "gbrp16le")

    # ---- writing ---------------------------------------------------------------------------
    def write(self, image: np.ndarray, pts: int | None = None) -> None:
        """Encode one RGB uint8 (H, W, 3) frame at ``pts`` (in ``time_base`` units; default:
        one frame after the previous one). All frames must have the first frame's size."""
        av = _av()
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
            got = f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}"
            raise TypeError(f"frames to write must be RGB uint8 arrays (H, W, 3); got {got}")
        h, w = image.shape[:2]
        if self._stream is None:
            self._open_streams(h, w)
            for packet in self._pending:
                self.copy(packet)
            self._pending.clear()
        elif (h, w) != (self._stream.height, self._stream.width):
            raise ValueError(f"frame {self.frames_written} is {w}x{h}; the video is "
                             f"{self._stream.width}x{self._stream.height}: all frames must have one size")
        if pts is None:
            pts = 0 if self._last_pts is None else self._last_pts + max(1, round(1 / (self.rate * self.time_base)))
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        if self.pix_fmt != "rgb24":
            frame = frame.reformat(format=self.pix_fmt, dst_colorspace=self.colour.get("colorspace"),
                                   dst_color_range=self.colour.get("color_range"))
        frame.pts, frame.time_base = pts, self.time_base
        self.container.mux(self._stream.encode(frame))
        self._last_pts = pts
        self.frames_written += 1

    def copy(self, packet: Any) -> None:
        """Mux an input audio/subtitle packet untouched (held until the first frame opens the
        output's streams)."""
        if self._stream is None:
            self._pending.append(packet)
            return
        out = self._copied.get(packet.stream.index)
        if out is None:
            return
        packet.stream = out
        self.container.mux(packet)

    def close(self) -> Path | None:
        """Flush the encoder, finish the file and rename it to ``dst``. Returns ``dst``, or None
        (and no file) when no frame was written."""
        if self._stream is None:
            self.container.close()
            if not self.sequence:
                self._target.unlink(missing_ok=True)
            return None
        self.container.mux(self._stream.encode(None))
        self.container.close()
        if not self.sequence:
            os.replace(self._target, self.dst)
        return self.dst
