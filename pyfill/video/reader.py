"""Reading video: files, image sequences, V4L2 devices and network streams through PyAV.

Every source gives RGB uint8 (H, W, 3) frames with their presentation timestamps; a file's
audio and subtitle packets come out untouched so that a writer can copy them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from pyfill._core import require

CAPTURE_FORMATS = ("v4l2", "video4linux2", "avfoundation", "dshow", "x11grab", "gdigrab", "kmsgrab", "fbdev", "lavfi")
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp")
SEQUENCE_PATTERN = re.compile(r"%0?\d*d")
COPIED_KINDS = ("audio", "subtitle")
MAX_CONSECUTIVE_ERRORS = 64


def _av() -> Any:
    return require("av", "video")


@dataclass
class Frame:
    """One decoded video frame.

    Attributes:
        image: RGB uint8 (H, W, 3), rotation metadata not applied (it is kept as metadata).
        pts: presentation timestamp in units of ``time_base`` (None if the source has none).
        time_base: the unit of ``pts`` in seconds.
        index: 0-based position among the frames the source delivered.
    """

    image: np.ndarray
    pts: int | None
    time_base: Fraction | None
    index: int

    @property
    def time(self) -> float | None:
        """Presentation time in seconds, or None."""
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)


@dataclass
class SourceInfo:
    """What a source says about its video stream.

    ``frames`` is 0 when the container does not say; ``rate`` is the average frame rate (None
    when unknown); ``rotation`` is the display rotation in degrees counter-clockwise, as PyAV's
    ``VideoFrame.rotation`` reads it (known once the first frame is decoded); ``colour`` holds
    FFmpeg's enum values of ``color_range``, ``color_primaries``, ``color_trc`` and
    ``colorspace`` (0 or 2 = unspecified).
    """

    kind: str
    width: int
    height: int
    rate: Fraction | None
    time_base: Fraction | None
    frames: int
    duration: float | None
    codec: str
    live: bool
    rotation: int = 0
    colour: dict[str, int] = field(default_factory=dict)
    copied_streams: list[str] = field(default_factory=list)


def source_kind(src: str | Path) -> str:
    """``file``, ``images`` (a ``%05d``-style pattern), ``device`` (``/dev/video*``) or
    ``stream`` (a URL)."""
    text = str(src)
    if "://" in text and not text.startswith("file://"):
        return "stream"
    if text.startswith("/dev/video"):
        return "device"
    if SEQUENCE_PATTERN.search(Path(text).name):
        return "images"
    return "file"


def _is_live(src: str, kind: str) -> bool:
    return kind == "device" or (kind == "stream" and src.split("://", 1)[0].lower() in LIVE_SCHEMES)


def _check_exists(src: str, kind: str) -> None:
    if kind == "file" and not Path(src).is_file():
        raise FileNotFoundError(f"video file not found: {src}")
    if kind == "images":
        folder = Path(src).parent
        regex = re.compile(SEQUENCE_PATTERN.sub(r"\\d+", re.escape(Path(src).name)))
        if not folder.is_dir() or not any(regex.fullmatch(p.name) for p in folder.iterdir()):
            raise FileNotFoundError(f"no image files match the sequence pattern {src}")
    if kind == "device" and src.startswith("/dev/") and not Path(src).exists():
        raise FileNotFoundError(f"video device not found: {src}")


class VideoReader:
    """Open a video source for decoding.

    Args:
        src: a video file (mp4, mkv, webm, mov, ...), an image sequence pattern such as
            ``frames/frame_%05d.png``, a V4L2 device (``/dev/video0``) or a URL (rtsp, http, ...).
        fps: frame rate of an image sequence (FFmpeg's default is 25); ignored for other sources.
        format: FFmpeg input format to force. A capture format (``v4l2``, ``avfoundation``,
            ``dshow``, ``x11grab``, ``lavfi``, ...) makes ``src`` a device name or filter graph
            for it and the source live.
        options: FFmpeg demuxer options, e.g. ``{"rtsp_transport": "tcp"}`` or
            ``{"video_size": "1280x720"}`` for a webcam.
        timeout: seconds to wait when opening and reading network streams.
        threads: decoder threads (0, the default: FFmpeg's choice, one per core).

    Raises:
        FileNotFoundError: the file, device or images do not exist.
        ValueError: the source is not something FFmpeg can decode, or it has no video stream.
    """

    def __init__(self, src: str | Path, *, fps: float | None = None, format: str | None = None,
                 options: dict[str, str] | None = None, timeout: float | None = 10.0, threads: int = 0) -> None:
        av = _av()
        if threads < 0:
            raise ValueError(f"threads must be >= 0 (0: FFmpeg's choice), got {threads}")
        self.src = str(src)
        self.kind = "device" if format in CAPTURE_FORMATS else source_kind(self.src)
        _check_exists(self.src, self.kind)
        opts = dict(options or {})
        if self.kind == "images" and fps is not None:
            opts.setdefault("framerate", str(fps))
        if self.kind == "device" and format is None:
            format = "v4l2"
        try:
            self.container = av.open(self.src, "r", format=format, options=opts,
                                     timeout=timeout if self.kind == "stream" else None)
        except av.FFmpegError as exc:
            raise ValueError(f"{self.src}: not a video FFmpeg can read ({exc})") from exc
        if not self.container.streams.video:
            self.container.close()
            raise ValueError(f"{self.src}: has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        if threads:
            self.stream.codec_context.thread_count = threads
        self.copied = [s for s in self.container.streams if s.type in COPIED_KINDS]
        self.corrupt = 0
        self.errors: list[str] = []
        self._delivered = 0
        cc = self.stream.codec_context
        rate = self.stream.average_rate or self.stream.guessed_rate
        duration = None
        if self.stream.duration is not None and self.stream.time_base is not None:
            duration = float(self.stream.duration * self.stream.time_base)
        elif self.container.duration is not None:
            duration = self.container.duration / 1e6
        self.info = SourceInfo(
            kind=self.kind, width=cc.width, height=cc.height, rate=Fraction(rate) if rate else None,
            time_base=self.stream.time_base, frames=int(self.stream.frames or 0), duration=duration,
            codec=cc.name, live=_is_live(self.src, self.kind),
            colour={k: int(getattr(cc, k)) for k in ("color_range", "color_primaries", "color_trc", "colorspace")},
            copied_streams=[f"{s.type}:{s.codec_context.name if s.codec_context else '?'}" for s in self.copied],
        )

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the source."""
        self.container.close()

    def __iter__(self) -> Iterator[Frame]:
        for item in self.items():
            if isinstance(item, Frame):
                yield item

    def items(self) -> Iterator[Any]:
        """Frames (:class:`Frame`) and, in demux order, the packets of the audio and subtitle
        streams (``av.Packet``, untouched). Packets or frames that fail to demux or decode, and
        frames the decoder flags as corrupt, are skipped and counted in ``self.corrupt`` with the
        reason in ``self.errors``."""
        av = _av()
        streams = [self.stream, *self.copied]
        packets = self.container.demux(streams)
        failures = 0
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as exc:
                self._record(f"demux: {exc}")
                failures += 1
                if failures > MAX_CONSECUTIVE_ERRORS or isinstance(exc, av.EOFError):
                    break
                packets = self.container.demux(streams)
                continue
            failures = 0
            if packet.stream.type != "video":
                if packet.size:
                    yield packet
                continue
            yield from self._decode(av, packet)
        yield from self._decode(av, None)

    def _decode(self, av: Any, packet: Any) -> Iterator[Frame]:
        try:
            decoded = self.stream.decode(packet)
        except av.EOFError:
            return
        except av.FFmpegError as exc:
            at = f" at pts {packet.pts}" if packet is not None and packet.pts is not None else ""
            self._record(f"decode{at}: {exc}")
            return
        for vf in decoded:
            if vf.is_corrupt:
                self._record(f"corrupt frame at pts {vf.pts}")
                continue
            if self._delivered == 0:
                self.info.rotation = int(vf.rotation)
            yield Frame(self._to_rgb(vf), vf.pts, vf.time_base, self._delivered)
            self._delivered += 1

    @staticmethod
    def _to_rgb(vf: Any) -> np.ndarray:
        # The frame's own matrix and range (unspecified -> BT.601 limited, FFmpeg's default).
        return vf.to_ndarray(format="rgb24", src_colorspace=vf.colorspace or None,
                             src_color_range=vf.color_range or None)

    def _record(self, reason: str) -> None:
        self.corrupt += 1
        if len(self.errors) < 100:
            self.errors.append(reason)


def frames(src: str | Path, **options: Any) -> Iterator[np.ndarray]:
    """Iterate over the frames of ``src`` as RGB uint8 (H, W, 3) arrays, in presentation order
    (corrupt frames skipped). ``options`` are those of :class:`VideoReader`."""
    with VideoReader(src, **options) as reader:
        for frame in reader:
            yield frame.image
