"""The pipelined video runner: decode | infer | encode in three threads with bounded queues."""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pyfill._core import require
from pyfill.video.flicker import ChromaMeter, ChromaSmoother
from pyfill.video.reader import Frame, VideoReader
from pyfill.video.writer import VideoWriter

FrameFn = Callable[[list[np.ndarray]], list[np.ndarray]]
TASKS = ("restore", "colorize", "generate", "swap")
WHOLE_FRAME_PIXELS = 1920 * 1080
BATCH_PIXELS = 1 << 20
_END = object()
_POLL_S = 0.1


@dataclass
class Report:
    """What a :func:`process` run did.

    ``frames_in``: frames decoded; ``frames_out``: frames written; ``frames_expected``: frames
    the source declares (its frame count, else duration x rate; 0 when unknown); ``corrupt``:
    packets or frames skipped as undecodable (reasons in ``errors``); ``dropped``: frames dropped because
    inference fell behind a live source (``drop_late``); ``seconds``: wall-clock time;
    ``chroma_change_in`` / ``chroma_change_out``: mean absolute chroma change between
    consecutive frames of the input and of the output (0..255 units, see
    :mod:`pyfill.video.flicker`); ``scene_cuts``: cuts at which chroma smoothing was reset.
    """

    source: str
    output: str | None
    frames_in: int = 0
    frames_out: int = 0
    corrupt: int = 0
    dropped: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    frames_expected: int = 0
    chroma_change_in: float = 0.0
    chroma_change_out: float = 0.0
    scene_cuts: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Frames written per second of wall-clock time."""
        return self.frames_out / self.seconds if self.seconds > 0 else 0.0

    @property
    def flicker(self) -> float:
        """Chroma change the processing added: ``chroma_change_out - chroma_change_in``."""
        return self.chroma_change_out - self.chroma_change_in

    def summary(self) -> str:
        """One line for people."""
        text = (f"{self.frames_out}/{self.frames_in} frames -> {self.output} in {self.seconds:.1f} s "
                f"({self.fps:.1f} FPS); corrupt skipped {self.corrupt}, dropped {self.dropped}; "
                f"chroma change in {self.chroma_change_in:.2f}, out {self.chroma_change_out:.2f}")
        return text + (" (interrupted)" if self.interrupted else "")


class VideoInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`process`; the frames done were written and ``report`` says how
    many."""

    def __init__(self, report: Report) -> None:
        super().__init__(f"interrupted: {report.summary()}")
        self.report = report


# ---- turning a task into a frame function ----------------------------------------------------
def _first_image(result: Any) -> np.ndarray:
    image = getattr(result, "image", None)
    if image is not None:
        return image
    if isinstance(result, dict):
        return next(v for v in result.values() if isinstance(v, np.ndarray) and v.ndim == 3)
    return result


def _engine_fn(engine: Any) -> FrameFn:
    from pyfill.video.cuda import gpu_frames

    gpu = gpu_frames(engine)  # pinned buffers, copy and compute streams; None off CUDA
    return gpu if gpu is not None else lambda batch: [_first_image(r) for r in engine(list(batch))]


def task_processor(task: str, *, model: str | None = None, backend: str = "auto", **options: Any) -> FrameFn:
    """The frame function of a task name: :func:`pyfill.tasks.frame_processor` with ``model``
    (default: the task's shipped model), ``backend`` and the task's further keyword arguments
    ``options`` (e.g. ``tile`` for restore)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    from pyfill.tasks import TASK_NAMES, frame_processor

    if task not in TASK_NAMES:
        raise ValueError(f"task {task!r} has no model in this version of pyfill "
                         f"(available: {', '.join(TASK_NAMES)})")
    return frame_processor(task, backend=backend, **({"model": model} if model else {}), **options)


def as_frame_fn(task_or_callable: Any, **task_options: Any) -> FrameFn:
    """A batch function ``f(list of RGB uint8 (H, W, 3)) -> list of RGB uint8`` from a task name,
    a :class:`pyfill.Engine` (called with the list; the first image output is used) or such a
    function."""
    if isinstance(task_or_callable, str):
        return task_processor(task_or_callable, **task_options)
    if task_options:
        raise TypeError(f"{sorted(task_options)} apply to task names only")
    if hasattr(task_or_callable, "manifest") and callable(task_or_callable):
        return _engine_fn(task_or_callable)
    if callable(task_or_callable):
        return task_or_callable
    raise TypeError(f"expected a task name, an Engine or a callable, got {type(task_or_callable).__name__}")


def _is_colorize(task_or_callable: Any) -> bool:
    if isinstance(task_or_callable, str):
        return task_or_callable == "colorize"
    manifest = getattr(task_or_callable, "manifest", None)
    return getattr(manifest, "task", None) == "colorize"


def _check_outputs(outs: Any, n: int) -> list[np.ndarray]:
    if not isinstance(outs, (list, tuple)) or len(outs) != n:
        got = f"{type(outs).__name__} of {len(outs)}" if isinstance(outs, (list, tuple)) else type(outs).__name__
        raise TypeError(f"the frame function must return a list of {n} frames, got {got}")
    for i, o in enumerate(outs):
        if not (isinstance(o, np.ndarray) and o.dtype == np.uint8 and o.ndim == 3 and o.shape[2] == 3):
            got = f"{type(o).__name__} {getattr(o, 'dtype', '')} {getattr(o, 'shape', '')}"
            raise TypeError(f"the frame function must return RGB uint8 (H, W, 3) arrays; item {i} is {got}")
    return list(outs)


# ---- the threads -----------------------------------------------------------------------------
class Stages:
    """Decode and inference threads feeding the caller, which is the third stage.

    ``items`` yields :class:`Frame` objects and other items (audio/subtitle packets); the
    decode thread pulls it, frames go through a bounded queue to the inference thread, which
    runs ``fn`` on batches of up to ``batch`` frames (then ``post`` on each result), and
    :meth:`results` yields processed frames (and the other items, unchanged) in order.

    With ``drop_late`` the decode thread never waits: when the frame queue is full the oldest
    queued frame is dropped (counted in ``dropped``) and inference takes the frames that are
    there instead of waiting for a full batch. Without it no frame is dropped or reordered.
    """

    def __init__(self, items: Iterable[Any], fn: FrameFn, *, batch: int, queue_size: int, drop_late: bool,
                 post: Callable[[np.ndarray], np.ndarray] | None = None,
                 on_input: Callable[[np.ndarray], None] | None = None) -> None:
        self.fn, self.batch, self.drop_late, self.post, self.on_input = fn, batch, drop_late, post, on_input
        self.frames_in = self.dropped = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._frames: queue.Queue = queue.Queue(maxsize=max(queue_size, batch))
        self._out: queue.Queue = queue.Queue(maxsize=max(queue_size, batch) * 2 + 64)
        self._threads = [threading.Thread(target=self._decode, args=(items,), name="pyfill-video-decode", daemon=True),
                         threading.Thread(target=self._infer, name="pyfill-video-infer", daemon=True)]
        for t in self._threads:
            t.start()

    def _put(self, q: queue.Queue, item: Any) -> None:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _get(self, q: queue.Queue) -> Any:
        while not self._stop.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return _END

    def _put_dropping_oldest(self, frame: Frame) -> None:
        while True:
            try:
                self._frames.put_nowait(frame)
                return
            except queue.Full:
                try:
                    self._frames.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    continue

    def _decode(self, items: Iterable[Any]) -> None:
        try:
            for item in items:
                if self._stop.is_set():
                    break
                if not isinstance(item, Frame):
                    self._put(self._out, item)
                    continue
                self.frames_in += 1
                if self.on_input is not None:
                    self.on_input(item.image)
                if self.drop_late:
                    self._put_dropping_oldest(item)
                else:
                    self._put(self._frames, item)
        except BaseException as exc:  # handed to the caller's thread
            self.error = self.error or exc
        finally:
            self._put(self._frames, _END)

    def _next_batch(self) -> tuple[list[Frame], bool]:
        first = self._get(self._frames)
        if first is _END:
            return [], True
        batch = [first]
        while len(batch) < self.batch:
            if self.drop_late:
                try:
                    item = self._frames.get_nowait()
                except queue.Empty:
                    break
            else:
                item = self._get(self._frames)
            if item is _END:
                return batch, True
            batch.append(item)
        return batch, False

    def _emit(self, batch: list[Frame], outs: Any) -> None:
        for f, out in zip(batch, _check_outputs(outs, len(batch)), strict=True):
            if self.post is not None:
                out = self.post(out)
            self._put(self._out, Frame(out, f.pts, f.time_base, f.index))

    def _infer(self) -> None:
        # A function with submit/collect (the GPU path, pyfill.video.cuda) keeps one batch in
        # flight: batch k + 1 is submitted before batch k is collected.
        pipelined = hasattr(self.fn, "submit") and hasattr(self.fn, "collect")
        pending: tuple[list[Frame], Any] | None = None
        try:
            done = False
            while not done and not self._stop.is_set():
                batch, done = self._next_batch()
                if not batch:
                    break
                if not pipelined:
                    self._emit(batch, self.fn([f.image for f in batch]))
                    continue
                handle = self.fn.submit([f.image for f in batch])  # type: ignore[attr-defined]
                if pending is not None:
                    self._emit(pending[0], self.fn.collect(pending[1]))  # type: ignore[attr-defined]
                pending = (batch, handle)
            if pending is not None and not self._stop.is_set():
                self._emit(pending[0], self.fn.collect(pending[1]))  # type: ignore[attr-defined]
        except BaseException as exc:  # handed to the caller's thread
            self.error = self.error or exc
        finally:
            self._put(self._out, _END)

    def results(self) -> Iterator[Any]:
        """Processed frames (:class:`Frame`) and passed-through items, in order; raises the
        decode or inference thread's exception after the items done before it."""
        try:
            while True:
                item = self._get(self._out)
                if item is _END:
                    break
                yield item
            if self.error is not None:
                raise self.error
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop both threads and wait for them (an inference call in progress finishes)."""
        self._stop.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()


# ---- public entry points ---------------------------------------------------------------------
def stream(engine_or_callable: Any, frames: Iterable[np.ndarray], batch: int = 4, *, smooth: bool = False,
           queue_size: int = 8) -> Iterator[np.ndarray]:
    """Process a stream of frames that the caller owns, pipelined: the iterable is read in one
    thread, the model runs on batches in another, and the caller receives the results in order.

    Args:
        engine_or_callable: a :class:`pyfill.Engine`, a task name, or ``f(list of frames) ->
            list of frames``.
        frames: RGB uint8 (H, W, 3) arrays.
        batch: frames per model call.
        smooth: temporal chroma smoothing (:class:`pyfill.video.flicker.ChromaSmoother`).
        queue_size: frames held between stages.

    Yields:
        RGB uint8 (H', W', 3) arrays, one per input frame, in input order.
    """
    fn = as_frame_fn(engine_or_callable)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    return _stream(fn, frames, batch, smooth, queue_size)


def _stream(fn: FrameFn, frames: Iterable[np.ndarray], batch: int, smooth: bool,
            queue_size: int) -> Iterator[np.ndarray]:
    items = (Frame(image, None, None, i) for i, image in enumerate(frames))
    stages = Stages(items, fn, batch=batch, queue_size=queue_size, drop_late=False,
                    post=ChromaSmoother() if smooth else None)
    for item in stages.results():
        yield item.image


def _progress_bar(enabled: bool | None, total: int, name: str) -> Any:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    tqdm = require("tqdm", "video")
    return tqdm.tqdm(total=total or None, unit="frame", desc=name, file=sys.stderr, dynamic_ncols=True)


def _expected_frames(info: Any) -> int:
    if info.live:
        return 0
    if info.frames:
        return info.frames
    if info.duration and info.rate:
        return int(info.duration * info.rate)
    return 0


def _note(exc: BaseException, text: str) -> None:
    if hasattr(exc, "add_note"):
        exc.add_note(text)


def auto_batch(width: int, height: int) -> int:
    """Frames per model call when none is given: as many as make about one megapixel, 2 to 8
    (4 at 640 x 360, 2 at 1280 x 720 and above). At least 2 so that OpenVINO's throughput mode
    (the task engines' mode for video) has frames to run side by side; larger
    batches of large frames ran slower per frame on the CPU (memory traffic)."""
    return max(2, min(8, BATCH_PIXELS // max(width * height, 1)))


def process(src: str | Path, dst: str | Path, task_or_callable: Any, *, batch: int | None = None,
            model: str | None = None, backend: str = "auto", codec: str | None = None, crf: int | None = None,
            pix_fmt: str | None = None, preset: str | None = None, encoder_options: dict[str, str] | None = None,
            smooth: bool | None = None,
            drop_late: bool | None = None, queue_size: int = 8, progress: bool | None = None,
            fps: float | None = None, input_format: str | None = None,
            input_options: dict[str, str] | None = None, task_options: dict[str, Any] | None = None,
            codec_threads: int | None = None) -> Report:
    """Decode ``src``, run ``task_or_callable`` on its frames and encode the results to ``dst``,
    with decoding, inference and encoding in three threads.

    Args:
        src: video file, image sequence pattern (``frame_%05d.png``), ``/dev/video0`` or URL.
        dst: output video file or image sequence pattern; a file is written under a temporary
            name and renamed when finished.
        task_or_callable: ``restore`` | ``colorize`` | ``generate`` | ``swap``, a
            :class:`pyfill.Engine`, or ``f(list of RGB uint8 (H, W, 3)) -> list of the same length``.
        batch: frames per model call (default :func:`auto_batch` of the frame size).
        model, backend: the model name or file and backend for a task name.
        codec, crf, pix_fmt, preset, encoder_options: encoder settings (see
            :class:`~pyfill.video.writer.VideoWriter`; ``encoder_options`` is its ``options``).
        smooth: temporal chroma smoothing; default on for ``colorize``, off otherwise.
        drop_late: drop frames when inference falls behind; default on for live sources (devices
            and rtsp/rtmp/udp/srt/tcp/rtp URLs), off for files, which never lose a frame.
        queue_size: frames held between stages.
        progress: a tqdm bar on stderr (frames, FPS, ETA); default only when stderr is a terminal.
        fps: frame rate of an image sequence input.
        input_format, input_options: FFmpeg demuxer name and options (e.g. ``v4l2``,
            ``{"video_size": "1280x720"}``).
        task_options: further keyword arguments of a task name's processor, e.g.
            ``{"tile": 512}`` for ``restore``. ``restore`` runs frames of up to 1920 x 1080
            whole (``tile=0``) unless told otherwise: video frames fit in memory, and tiles
            cost 2-4x more compute (overlaps) for results within one grey level.
        codec_threads: threads for each of the decoder and the encoder (default: FFmpeg's
            choice, one per core each).

    Returns:
        A :class:`Report`.

    Raises:
        FileNotFoundError, ValueError: a missing or unreadable source, an unknown task, bad
            options (before anything is written).
        VideoInterrupted: Ctrl-C; the frames done are in ``dst``, a playable file, and the
            exception's ``report`` counts them. Any other error during the run (the model
            failing, say) is raised as it is, after ``dst`` was finished the same way.
    """
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if Path(str(src)).resolve() == Path(str(dst)).resolve():
        raise ValueError(f"the output {dst} would overwrite the input")
    threads = 0 if codec_threads is None else codec_threads
    reader = VideoReader(src, fps=fps, format=input_format, options=input_options, threads=threads)
    info = reader.info
    options = dict(task_options or {})
    if task_or_callable == "restore" and info.width * info.height <= WHOLE_FRAME_PIXELS:
        options.setdefault("tile", 0)
    try:
        if isinstance(task_or_callable, str):
            fn = as_frame_fn(task_or_callable, model=model, backend=backend, **options)
        else:
            fn = as_frame_fn(task_or_callable, **options)
        writer = VideoWriter(dst, codec=codec, crf=crf, pix_fmt=pix_fmt, preset=preset, options=encoder_options,
                             rate=info.rate, time_base=info.time_base, colour=info.colour,
                             copy_streams=reader.copied, threads=threads)
    except BaseException:
        reader.close()
        raise
    drop_late = info.live if drop_late is None else drop_late
    smoother = ChromaSmoother() if (_is_colorize(task_or_callable) if smooth is None else smooth) else None
    meter_in, meter_out = ChromaMeter(), ChromaMeter()
    report = Report(str(src), None)
    bar = _progress_bar(progress, info.frames, Path(str(dst)).name)
    failure: BaseException | None = None
    start = time.perf_counter()
    stages = Stages(reader.items(), fn, batch=batch or auto_batch(info.width, info.height),
                    queue_size=queue_size, drop_late=drop_late,
                    post=smoother, on_input=meter_in.add)
    first_pts: int | None = None
    try:
        for item in stages.results():
            if not isinstance(item, Frame):
                writer.copy(item)
                continue
            if writer.frames_written == 0:
                writer.rotation = info.rotation
                first_pts = item.pts if info.live else 0
            pts = None if item.pts is None else item.pts - (first_pts or 0)
            writer.write(item.image, pts)
            meter_out.add(item.image)
            if bar is not None:
                bar.update(1)
    except BaseException as exc:
        failure = exc
    finally:
        stages.stop()
        if bar is not None:
            bar.close()
        try:
            output = writer.close()
        finally:
            reader.close()
    report.output = str(output) if output else None
    report.frames_in, report.frames_out, report.dropped = stages.frames_in, writer.frames_written, stages.dropped
    report.corrupt, report.errors, report.warnings = reader.corrupt, reader.errors, writer.warnings
    report.seconds = time.perf_counter() - start
    report.chroma_change_in, report.chroma_change_out = meter_in.value, meter_out.value
    report.scene_cuts = smoother.cuts if smoother else 0
    report.frames_expected = _expected_frames(info)
    if failure is None and report.frames_expected and report.frames_in + report.corrupt < report.frames_expected - 1:
        report.warnings.append(f"the source declares about {report.frames_expected} frames but {report.frames_in} "
                               "were decoded: it is truncated or damaged")
    if isinstance(failure, KeyboardInterrupt):
        report.interrupted = True
        raise VideoInterrupted(report) from failure
    if failure is not None:
        _note(failure, f"pyfill.video: stopped after {report.frames_out} frames; "
                       f"{'they are in ' + report.output if report.output else 'no output was written'}")
        raise failure
    return report
