"""``pyfill edit IMAGE... --text "a smiling face" [--strength 0.8] [--no-align] -o OUT``.

:func:`add_parser` adds the command to the ``pyfill`` sub-command parsers. Every input image
(files and folders, searched recursively) is edited with :func:`pyfill.tasks.edit.edit`. An
unknown text is refused before any image is read; images without a face are written unchanged
and counted; the exit status is 1 when an input could not be read, edited or written.
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``edit`` to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser("edit", help="edit the faces of images according to a text (\"a smiling face\")")
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files or folders (searched recursively)")
    p.add_argument("--text", required=True, help="what the face should become, e.g. \"a person with glasses\"")
    p.add_argument("--strength", type=float, default=0.8,
                   help="edit strength alpha in [-2, 2] (default 0.8; 0 = the decoder's reconstruction)")
    p.add_argument("--no-align", dest="align", action="store_false",
                   help="the images are aligned face crops: no detection, the whole image is edited")
    p.add_argument("-o", "--output", required=True,
                   help="output folder (folder structure kept); a file name when there is one input image")
    p.add_argument("--format", choices=("png", "jpg", "webp", "tif", "bmp"),
                   help="output format (default: the input's, or PNG where it cannot hold the result)")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 1..100 (default 95)")
    p.add_argument("--skip-existing", action="store_true", help="skip inputs whose output already exists")
    p.set_defaults(func=command)
    return p


def command(args: argparse.Namespace) -> int:
    """Run ``pyfill edit``; returns the exit status."""
    from pyfill.cli import _map_images
    from pyfill.tasks.edit import Editor, check_strength
    from pyfill.tasks.swap import FaceWarning

    check_strength(args.strength)
    editor = Editor()
    editor.tokenizer.words(args.text)  # an unknown text fails here, before any image is read
    models: set[str] = set()

    def convert(arr: Any) -> tuple[Any, tuple[int, int]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FaceWarning)
            result = editor.edit(arr, args.text, args.strength, args.align)
        if result.model:
            models.add(result.model)
        return result.image, (result.faces_found, result.faces_edited)

    done, failed, total = _map_images("edit", args, convert)
    from pyfill.faces.cli import report_faces

    return report_faces("edit", "edited", done, failed, total, str(args.output),
                        f" with {', '.join(sorted(models)) or 'no model'}")
