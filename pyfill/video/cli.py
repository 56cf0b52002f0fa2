"""``pyfill video IN -o OUT --task TASK``: the command-line face of :func:`pyfill.video.process`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pyfill.video.pipeline import TASKS


def add_parser(subparsers: Any) -> None:
    """Add the ``video`` command to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "video", help="run a task over a video file, image sequence, webcam or stream (audio kept)",
        description="Decode IN, run the task on every frame (decode, inference and encoding in "
        "three threads) and write OUT with the input's timestamps, rotation, colour tags, audio and "
        "subtitles. The output is written under a temporary name and renamed when done; Ctrl-C "
        "keeps the frames done so far as a playable file.")
    p.add_argument("input", metavar="IN", help="video file, image sequence pattern "
                   "(frames/frame_%%05d.png), /dev/video0 or a URL (rtsp://, http://, ...)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output video file (.mp4, .mkv, .webm, .mov) or image sequence pattern (out/frame_%%05d.png)")
    p.add_argument("--task", required=True, choices=TASKS, help="what to do with each frame")
    p.add_argument("--model", help="a shipped model's name or a model file (default: the task's shipped model)")
    p.add_argument("--backend", default="auto", help="backend (default auto)")
    p.add_argument("--source", metavar="FACE", help="swap: the image whose face goes onto every frame")
    p.add_argument("--restore-face", action="store_true",
                   help="swap: run a restoration model on each swapped face")
    p.add_argument("--restore-model", default="restore", metavar="MODEL",
                   help="swap: the restoration model for --restore-face (default: the shipped 'restore')")
    p.add_argument("--tile", type=int, help="restore: tile size in pixels (0: whole frames; default: "
                   "whole frames up to 1920 x 1080, the model's advice above)")
    p.add_argument("--batch", type=int, help="frames per model call (default: about one megapixel, "
                   "4 at 640 x 360, 2 at 1280 x 720 and above)")
    p.add_argument("--codec", help="encoder: libx264 (default for mp4/mkv/mov), libvpx-vp9 (webm), "
                   "ffv1 (lossless), ...")
    p.add_argument("--crf", type=int, help="quality, lower is better (libx264 default 18, vp9 32)")
    p.add_argument("--pix-fmt", help="pixel format (default yuv420p; bgr0 for ffv1)")
    p.add_argument("--preset", help="encoder preset (libx264: ultrafast ... veryslow; default veryfast)")
    p.add_argument("--codec-threads", type=int, metavar="N",
                   help="threads for each of the decoder and the encoder (default: FFmpeg's choice)")
    p.add_argument("--fps", type=float, help="frame rate of an image sequence input (default 25)")
    p.add_argument("--no-smooth", action="store_true", help="no temporal chroma smoothing (on by default for colorize)")
    p.add_argument("--drop-late", action="store_true",
                   help="drop frames when inference falls behind (default for webcams and live streams only)")
    p.add_argument("--input-format", help="FFmpeg input format (v4l2, avfoundation, dshow, ...)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p.set_defaults(func=run_video)


def _task_options(args: argparse.Namespace) -> dict[str, Any] | None:
    options: dict[str, Any] = {}
    if args.tile is not None:
        options["tile"] = args.tile
    if args.task == "swap":
        if not args.source:
            raise ValueError("--task swap needs --source FACE (the image whose face goes onto every frame)")
        from pyfill.images import read_image

        options["source"] = read_image(args.source)
        if args.restore_face:
            options["restore"] = args.restore_model
    elif args.source or args.restore_face:
        raise ValueError("--source and --restore-face go with --task swap")
    return options or None


def run_video(args: argparse.Namespace) -> int:
    """Run the ``video`` command; returns the exit status (0 done, 1 error or damaged input,
    130 interrupted)."""
    from pyfill._core import MissingExtraError, require
    from pyfill.video.pipeline import VideoInterrupted, process

    try:
        expected = (OSError, ValueError, TypeError, RuntimeError, require("av", "video").FFmpegError)
    except MissingExtraError as exc:
        print(f"pyfill video: error: {exc}", file=sys.stderr)
        return 1
    try:
        report = process(
            args.input, args.output, args.task, batch=args.batch, model=args.model, backend=args.backend,
            codec=args.codec, crf=args.crf, pix_fmt=args.pix_fmt, preset=args.preset,
            smooth=False if args.no_smooth else None, drop_late=True if args.drop_late else None,
            progress=args.progress, fps=args.fps, input_format=args.input_format,
            task_options=_task_options(args), codec_threads=args.codec_threads)
    except VideoInterrupted as exc:
        print(f"pyfill video: {exc}", file=sys.stderr)
        return 130
    except expected as exc:
        for line in [str(exc), *getattr(exc, "__notes__", [])]:
            print(f"pyfill video: error: {line}", file=sys.stderr)
        return 1
    print(report.summary())
    for line in report.warnings:
        print(f"pyfill video: warning: {line}", file=sys.stderr)
    for line in report.errors:
        print(f"pyfill video: skipped: {line}", file=sys.stderr)
    return 1 if report.corrupt or any("truncated" in w for w in report.warnings) else 0
