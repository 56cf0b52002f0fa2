"""The ``pyfill`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable


def _cmd_doctor(args: argparse.Namespace) -> int:
    from pyfill.runtime import format_runtime_table, runtime_info

    info = runtime_info()
    print(json.dumps(info, indent=2) if args.json else format_runtime_table(info))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from pyfill.export import build_tensorrt_engine, export_onnx

    src = Path(args.model)
    if args.tensorrt:
        if src.suffix.lower() != ".onnx":
            print("pyfill export --tensorrt takes an .onnx file (export the checkpoint first)", file=sys.stderr)
            return 2
        out = build_tensorrt_engine(src, precision=args.precision, out_dir=args.output)
        print(f"TensorRT engine: {out}")
        return 0
    out = Path(args.output) if args.output else src.with_suffix(".onnx")
    export_onnx(src, out, opset=args.opset, dynamic=not args.static)
    print(f"ONNX model: {out}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from pyfill.engine import Engine

    engine = Engine(args.model, backend=args.backend)
    info = engine.info
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    m = info["manifest"]
    print(f"model      {info['model']}" + ("  (no pyfill manifest: default conventions)" if info["foreign_model"] else ""))
    print(f"task       {m['task']}  family {m['family']}  pyfill {m['pyfill_version']}")
    for group in ("inputs", "outputs"):
        for t in m[group]:
            extra = f" classes={t['classes']}" if t["kind"] == "labels" else f" length={t['length']}" if t["kind"] == "vector" else ""
            print(f"{group[:-1]:<10} {t['name']}: {t['kind']} channels={t['channels']} {t['colour_space']} range={t['value_range']}{extra}")
    print(f"size       {m['size']}   tiling {m['tiling']}   fp16 {m['fp16']}")
    print(f"runs on    {info['backend']} / {info['device']} / {info['precision']} ({info['selected_because']})")
    return 0


def _collect_inputs(inputs: Sequence[str]) -> list[tuple[Path, Path]]:
    """(file, path relative to the output folder) for every input file and every image file
    under every input folder (recursive)."""
    from pyfill.images import IMAGE_SUFFIXES

    found: list[tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            found += [(p, p.relative_to(path)) for p in files]
        else:
            found.append((path, Path(path.name)))
    return found


def _progress(done: int, total: int, name: str) -> None:
    width = 30
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {name[-40:]:<40}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _open_engine(args: argparse.Namespace, **kwargs: Any) -> Any:
    """The Engine for ``--model`` (a shipped model's name or a model file) on ``--backend``;
    ``kwargs`` go to :class:`pyfill.Engine`."""
    from pyfill.engine import Engine

    model = Path(args.model)
    if model.suffix:
        return Engine(model, backend=args.backend, **kwargs)
    return Engine.from_pretrained(args.model, backend=args.backend, **kwargs)


def _map_images(command: str, inputs: Sequence[str], output: str,
                convert: Callable[[Any], tuple[Any, Any]]) -> tuple[list[tuple[str, str, Any]], list[str], int]:
    """Run ``convert`` over every input image and write its results.

    ``convert(array) -> (result array, extra)`` takes what :func:`pyfill.images.read_image`
    decodes (uint8/uint16 (H, W), (H, W, 3) or (H, W, 4)). Outputs keep the inputs' relative
    paths under ``output`` (a file name when there is one input image), with a suffix that can
    hold the result. Unreadable or failing files are skipped and reported on stderr; a progress
    bar runs on stderr. Returns ([(input, output, extra)], [failure lines], number of inputs).
    """
    from pyfill.images import output_suffix, read_image, write_image

    jobs = _collect_inputs(inputs)
    if not jobs:
        raise ValueError("no input images found")
    out = Path(output)
    single_file = len(jobs) == 1 and out.suffix != "" and not out.is_dir()
    done: list[tuple[str, str, Any]] = []
    failed: list[str] = []
    for i, (src, rel) in enumerate(jobs, 1):
        try:
            result, extra = convert(read_image(src))
            target = out if single_file else (out / rel).with_suffix(output_suffix(rel.suffix, result))
            write_image(target, result)
            done.append((str(src), str(target), extra))
        except (ValueError, TypeError, OSError) as exc:
            failed.append(f"{src}: {exc}")
        _progress(i, len(jobs), src.name)
    for line in failed:
        print(f"pyfill {command}: skipped {line}", file=sys.stderr)
    return done, failed, len(jobs)


def _split_alpha(arr: Any) -> tuple[Any, Any]:
    """(colour or gray part, alpha (H, W, 1) or None) of a decoded image."""
    if arr.ndim == 3 and arr.shape[-1] == 4:
        return arr[..., :3], arr[..., 3:]
    return arr, None


def _cmd_colorize(args: argparse.Namespace) -> int:
    import numpy as np

    engine = _open_engine(args)

    def convert(arr: Any) -> tuple[Any, float]:
        colour, alpha = _split_alpha(arr)
        result = engine(colour)
        fill = result["fill"] if alpha is None else np.concatenate([result["fill"], alpha], axis=-1)
        return fill, float(np.asarray(result["realness"]).reshape(-1)[0])

    done, failed, total = _map_images("colorize", args.inputs, args.output, convert)
    if args.scores:
        with open(args.scores, "w") as f:
            f.write("input,output,realness\n")
            f.writelines(f"{a},{b},{r:.6f}\n" for a, b, r in done)
    print(f"colourised {len(done)} of {total} images -> {args.output}" + (f"; {len(failed)} skipped" if failed else ""))
    return 1 if failed else 0


def _cmd_restore(args: argparse.Namespace) -> int:
    import numpy as np

    engine = _open_engine(args, tile=None if args.tile < 0 else args.tile)

    def convert(arr: Any) -> tuple[Any, None]:
        colour, alpha = _split_alpha(arr)
        restored = engine(colour)
        if colour.ndim == 2:  # a gray input stays gray: the mean of the restored channels
            restored = np.rint(restored.astype(np.float64).mean(axis=-1)).astype(colour.dtype)
        elif alpha is not None:
            restored = np.concatenate([restored, alpha], axis=-1)
        return restored, None

    done, failed, total = _map_images("restore", args.inputs, args.output, convert)
    print(f"restored {len(done)} of {total} images -> {args.output}" + (f"; {len(failed)} skipped" if failed else ""))
    return 1 if failed else 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from pyfill.engine import Engine
    from pyfill.images import read_image, write_image

    model = Path(args.model)
    engine = Engine(model, backend=args.backend) if model.suffix else Engine.from_pretrained(args.model, backend=args.backend)
    labels = read_image(args.labels)
    if labels.dtype != "uint8":
        raise ValueError(f"{args.labels}: label images are 8-bit (class indices or legend colours)")
    if labels.ndim == 3 and labels.shape[-1] == 4:
        labels = labels[..., :3]
    strokes = read_image(args.strokes) if args.strokes else None
    if strokes is not None and strokes.dtype != "uint8":
        raise ValueError(f"{args.strokes}: stroke images are 8-bit RGB or RGBA")
    image = engine(labels=labels, strokes=strokes)
    write_image(args.output, image)
    print(f"generated {image.shape[1]} x {image.shape[0]} -> {args.output}")
    return 0


def _cmd_board(args: argparse.Namespace) -> int:
    from pyfill.board.server import serve

    serve(args.host, args.port, args.model, args.backend)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from pyfill import __version__

    parser = argparse.ArgumentParser(
        prog="pyfill",
        description="pyfill: inference SDK for GAN image models (colourisation, drawing-board "
        "generation, restoration, text-driven editing, face swapping).",
    )
    parser.add_argument("--version", action="version", version=f"pyfill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    doctor = sub.add_parser("doctor", help="show what this install can use (CPU, CUDA, runtimes)")
    doctor.add_argument("--json", action="store_true", help="print machine-readable JSON")
    doctor.set_defaults(func=_cmd_doctor)

    export = sub.add_parser("export", help="checkpoint -> ONNX, or ONNX -> TensorRT engine")
    export.add_argument("model", help="a .safetensors checkpoint (with its .json), or an .onnx file with --tensorrt")
    export.add_argument("-o", "--output", help="output .onnx file (default: beside the checkpoint); with --tensorrt, an output folder")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    export.add_argument("--static", action="store_true", help="fixed batch and size instead of dynamic axes")
    export.add_argument("--tensorrt", action="store_true", help="build a TensorRT engine from an ONNX file")
    export.add_argument("--precision", choices=("fp32", "fp16"), default="fp16", help="TensorRT precision")
    export.set_defaults(func=_cmd_export)

    info = sub.add_parser("info", help="print a model's manifest and the backend it would run on")
    info.add_argument("model", help="a .onnx, .safetensors or .engine file")
    info.add_argument("--backend", default="auto", help="backend to load it with (default auto)")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(func=_cmd_info)

    colorize = sub.add_parser("colorize", help="colourise gray or colour images (files and folders)")
    colorize.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    colorize.add_argument("-o", "--output", required=True,
                          help="output folder (folder structure kept); a file name when there is one input image")
    colorize.add_argument("--model", default="colorize",
                          help="a shipped model's name or a model file (default: the shipped 'colorize')")
    colorize.add_argument("--backend", default="auto", help="backend (default auto)")
    colorize.add_argument("--scores", help="write each fill's realness score (discriminator) to this CSV file")
    colorize.set_defaults(func=_cmd_colorize)

    restore = sub.add_parser("restore", help="restore degraded images: deblur, denoise, de-JPEG (files and folders)")
    restore.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    restore.add_argument("-o", "--output", required=True,
                         help="output folder (folder structure kept); a file name when there is one input image")
    restore.add_argument("--model", default="restore",
                         help="a shipped model's name or a model file (default: the shipped 'restore')")
    restore.add_argument("--backend", default="auto", help="backend (default auto)")
    restore.add_argument("--tile", type=int, default=-1,
                         help="tile size in pixels for large images (default: the model's advice; 0: never tile)")
    restore.set_defaults(func=_cmd_restore)

    generate = sub.add_parser("generate", help="generate an image from a label map and colour strokes")
    generate.add_argument("labels", metavar="LABELS", help="label map: 8-bit PNG of class indices, or a colour-coded "
                          "image in the model's legend colours")
    generate.add_argument("--strokes", metavar="STROKES", help="RGB colour strokes on black (or RGBA: alpha marks the "
                          "strokes), the label map's size; default: no strokes")
    generate.add_argument("-o", "--output", required=True, help="output image file")
    generate.add_argument("--model", default="generate",
                          help="a shipped model's name or a model file (default: the shipped 'generate')")
    generate.add_argument("--backend", default="auto", help="backend (default auto)")
    generate.set_defaults(func=_cmd_generate)

    board = sub.add_parser("board", help="the drawing board: a local web page to paint labels and strokes and generate")
    board.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    board.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    board.add_argument("--model", default="generate",
                       help="a shipped model's name or a model file (default: the shipped 'generate')")
    board.add_argument("--backend", default="auto", help="backend (default auto)")
    board.set_defaults(func=_cmd_board)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except (ValueError, TypeError, OSError, RuntimeError, ImportError) as exc:
        print(f"pyfill {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
