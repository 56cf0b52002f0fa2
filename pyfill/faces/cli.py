"""``pyfill swap --source FACE.jpg TARGET... -o OUT [--reference REF.jpg] [--model M] [--restore [--restore-model M]]``.

:func:`add_parser` adds the command to the ``pyfill`` sub-command parsers; its function swaps
the faces of every target image (files and folders, searched recursively) with the one source
identity. Targets without a face are written unchanged and counted; the exit status stays 0
for them (1 only when an input could not be read or written).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``swap`` to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    from pyfill.cli import _add_image_outputs

    p = subparsers.add_parser("swap", help="put the identity of a source face onto the faces of target images")
    p.add_argument("--source", required=True, metavar="FACE", help="image with the source face")
    _add_image_outputs(p)
    p.add_argument("--reference", metavar="REF", help="swap only target faces of the person in this image")
    p.add_argument("--model", default="swap", help="swapper name or ONNX file (default: the shipped 'swap')")
    p.add_argument("--embedder", help="ArcFace-style ONNX embedder the swapper takes (default: pyfill's 'face_id' "
                                      "for pyfill's swappers)")
    p.add_argument("--no-colour-match", dest="colour_match", action="store_false",
                   help="do not match the swapped face's colours to the replaced face")
    p.add_argument("--restore", action="store_true",
                   help="run a restoration model on each swapped face before pasting it back")
    p.add_argument("--restore-model", default="restore", metavar="MODEL",
                   help="the restoration model for --restore (default: the shipped 'restore')")
    p.set_defaults(func=command)
    return p


def command(args: argparse.Namespace) -> int:
    """Run ``pyfill swap``; returns the exit status."""
    from pyfill.cli import _map_images
    from pyfill.images import read_image
    from pyfill.tasks.swap import FaceWarning, Swapper

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FaceWarning)
        swapper = Swapper(read_image(args.source), model=args.model, embedder=args.embedder,
                          reference=read_image(args.reference) if args.reference else None,
                          colour_match=args.colour_match,
                          restore=args.restore_model if args.restore else None)
    for w in caught:
        print(f"pyfill swap: note: {w.message}", file=sys.stderr)

    def convert(arr: Any) -> tuple[Any, tuple[int, int]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FaceWarning)
            result = swapper.swap_image(arr)
        return result.image, (result.faces_found, result.faces_swapped)

    done, failed, total = _map_images("swap", args, convert)
    return report_faces("swap", "swapped", done, failed, total, str(args.output))


def report_faces(command: str, verb: str, done: list, failed: list, total: int, output: str, how: str = "") -> int:
    """The summary of a face command's batch run (``done`` rows carry (faces found, faces
    changed)): a note per image without a face on stderr, one line on stdout; returns the exit
    status (1 only when an input could not be read or written)."""
    counted = [(src, extra) for src, _, extra in done if extra is not None]
    no_face = [src for src, (found, _) in counted if found == 0]
    for src in no_face:
        print(f"pyfill {command}: note: no face found in {src}; written unchanged", file=sys.stderr)
    changed = sum(n for _, (_, n) in counted)
    print(f"{verb} {changed} faces in {sum(1 for _, (_, n) in counted if n)} of {total} images{how} -> {output}; "
          f"{len(no_face)} without a face" + (f"; {len(failed)} skipped" if failed else ""))
    return 1 if failed else 0
