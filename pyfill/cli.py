"""The ``pyfill`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np


def _cmd_doctor(args: argparse.Namespace) -> int:
    from pyfill.runtime import format_runtime_table, runtime_info

    info = runtime_info()
    print(json.dumps(info, indent=2) if args.json else format_runtime_table(info))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pyfill.demo import PANELS, run_demo

    print(f"pyfill demo: running {', '.join(args.systems or PANELS)} ...", flush=True)
    page = run_demo(args.output, args.systems)
    for png in sorted(page.parent.glob("*.png")):
        print(f"  {png}")
    print(f"open {page.resolve()} in a browser to see them all")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    if args.triton_repo:
        from pyfill.triton import run_cli_export

        return run_cli_export(args)
    if args.int8:
        return _export_int8(args)
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
    if args.size and not args.static:
        raise ValueError("--size goes with --static")
    export_onnx(src, out, opset=args.opset, dynamic=not args.static, static_size=tuple(args.size) if args.size else None)
    print(f"ONNX model: {out}")
    return 0


def _export_int8(args: argparse.Namespace) -> int:
    from pyfill.quantize import quantize_int8

    if not args.calibration or not args.output:
        raise ValueError("pyfill export MODEL --int8 needs --calibration DIR and -o OUT.onnx")
    report = quantize_int8(args.model, args.calibration, args.output, held_out=args.held_out)
    print(f"int8 model: {report.path} ({report.calibration_images} calibration images)")
    where = "held-out" if args.held_out else "calibration (pass --held-out for a fair figure)"
    print(f"PSNR of int8 vs fp32 on {len(report.psnr_db)} {where} images: mean {report.mean_psnr_db:.2f} dB, "
          f"min {min(report.psnr_db):.2f} dB")
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
            extra = (f" classes={t['classes']}" if t["kind"] == "labels"
                     else f" shape={t['shape']}" if not t["kind"] == "image" else "")
            print(f"{group[:-1]:<10} {t['name']}: {t['kind']} channels={t['channels']} {t['colour_space']} "
                  f"range={t['value_range']}{extra}")
    print(f"size       {m['size']}")
    print(f"tiling     {m['tiling']}   ({info['tiling']})")
    print(f"precision  fp16 {m['fp16']}  bf16 {m['bf16']}")
    print(f"runs on    {info['backend']} / {info['device']} / {info['precision']} ({info['selected_because']})")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from pyfill import store

    if args.action == "list":
        models = store.available_models()
        if not models:
            print(f"no models (store: {store.store_dir()})")
        for name, (path, where) in models.items():
            print(f"{name:<24} {where:<8} {path}")
        return 0
    if args.action == "add":
        if not args.file:
            raise ValueError("pyfill models add FILE [--name NAME]")
        target = store.add_model(args.file, args.name, overwrite=args.force)
        print(f"added {target.stem}: {target}")
        return 0
    if not args.file:
        raise ValueError(f"pyfill models {args.action} NAME")
    if args.action == "remove":
        for p in store.remove_model(args.file):
            print(f"removed {p}")
        return 0
    print(store.resolve_model(args.file))
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


class _Progress:
    """A progress line on stderr, only when stderr is a terminal (never written into logs)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.live = sys.stderr.isatty()

    def update(self, done: int, name: str) -> None:
        if not self.live:
            return
        width = 30
        filled = width * done // max(self.total, 1)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {name[-40:]:<40}")
        if done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _tile_progress(done: int, total: int) -> None:
    sys.stderr.write(f"\r  tiles {done}/{total}" + ("\n" if done == total else ""))
    sys.stderr.flush()


# Stands for an 8-bit RGB result when guessing an output's name before decoding its input.
_EIGHT_BIT_RGB = np.zeros((1, 1, 3), np.uint8)


def _target_path(out: Path, rel: Path, single_file: bool, result: Any, fmt: str | None) -> Path:
    from pyfill.images import output_suffix

    if single_file:
        return out
    suffix = output_suffix(f".{fmt}" if fmt else rel.suffix, result)
    return (out / rel).with_suffix(suffix)


def _map_images(command: str, args: argparse.Namespace,
                convert: Callable[[Any], tuple[Any, Any]]) -> tuple[list[tuple[str, str, Any]], list[str], int]:
    """Run ``convert`` over every input image and write its results.

    ``convert(array) -> (result array, extra)`` takes what :func:`pyfill.images.read_image`
    decodes. Outputs keep the inputs' relative paths under ``-o`` (a file name when there is
    one input image) and their format where it can hold the result (``--format`` overrides;
    JPEG and WebP at ``--quality``). An input is never overwritten; with ``--skip-existing``
    finished outputs are not redone. Unreadable or failing files are skipped and reported.
    Returns ([(input, output, extra)], [failure lines], number of inputs).
    """
    import warnings

    from pyfill.images import read_image, write_image

    jobs = _collect_inputs(args.inputs)
    if not jobs:
        raise ValueError("no input images found")
    out = Path(args.output)
    single_file = out.suffix != "" and not out.is_dir()
    if single_file and len(jobs) > 1:
        raise ValueError(f"-o {out} names one file, but there are {len(jobs)} input images: give a folder")
    sources = {src.resolve() for src, _ in jobs}
    written: dict[Path, Path] = {}
    done: list[tuple[str, str, Any]] = []
    failed: list[str] = []
    progress = _Progress(len(jobs))
    for i, (src, rel) in enumerate(jobs, 1):
        try:
            # What exists is checked before decoding: the output of an 8-bit image in the input's
            # (or --format's) format.
            likely = _target_path(out, rel, single_file, _EIGHT_BIT_RGB, args.format)
            if args.skip_existing and likely.resolve() not in sources and likely.is_file():
                done.append((str(src), str(likely), None))
                progress.update(i, src.name)
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                arr = read_image(src)
            for w in caught:
                print(f"pyfill {command}: note: {w.message}", file=sys.stderr)
            target = _target_path(out, rel, single_file, arr, args.format)
            if args.skip_existing and target.resolve() not in sources and target.is_file():
                done.append((str(src), str(target), None))
            else:
                result, extra = convert(arr)
                target = _target_path(out, rel, single_file, result, args.format)
                key = target.resolve()
                if key in sources:
                    raise ValueError(f"the output {target} would overwrite an input; choose another -o")
                if key in written:
                    raise ValueError(f"the output {target} was already written for {written[key]} in this run "
                                     "(two inputs differ only in their suffix); rename one")
                write_image(target, result, quality=args.quality)
                written[key] = src
                done.append((str(src), str(target), extra))
        except (ValueError, TypeError, OSError) as exc:
            failed.append(f"{src}: {exc}")
        progress.update(i, src.name)
    for line in failed:
        print(f"pyfill {command}: skipped {line}", file=sys.stderr)
    return done, failed, len(jobs)


def _cmd_colorize(args: argparse.Namespace) -> int:
    from pyfill.tasks import colorize, colorize_engine

    engine = colorize_engine(args.model, backend=args.backend)

    def convert(arr: Any) -> tuple[Any, float | None]:
        result = colorize(arr, model=engine)
        return result.image, result.realness

    done, failed, total = _map_images("colorize", args, convert)
    if args.scores:
        with open(args.scores, "w") as f:
            f.write("input,output,realness\n")
            f.writelines(f"{a},{b},{'' if r is None else f'{r:.6f}'}\n" for a, b, r in done)
    print(f"colourised {len(done)} of {total} images -> {args.output}" + (f"; {len(failed)} skipped" if failed else ""))
    return 1 if failed else 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from pyfill.tasks import restore, restore_engine

    engine = restore_engine(args.model, backend=args.backend, tile=None if args.tile < 0 else args.tile)
    if sys.stderr.isatty():
        engine.on_tile = _tile_progress
    done, failed, total = _map_images("restore", args, lambda arr: (restore(arr, model=engine), None))
    print(f"restored {len(done)} of {total} images -> {args.output}" + (f"; {len(failed)} skipped" if failed else ""))
    return 1 if failed else 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from pyfill.images import read_image, write_image
    from pyfill.tasks import generate

    output = Path(args.output).resolve()
    if any(p and Path(p).resolve() == output for p in (args.labels, args.strokes)):
        raise ValueError(f"the output {args.output} would overwrite an input; choose another -o")
    strokes = read_image(args.strokes) if args.strokes else None
    image = generate(read_image(args.labels), strokes, model=args.model, backend=args.backend)
    write_image(args.output, image, quality=args.quality)
    print(f"generated {image.shape[1]} x {image.shape[0]} -> {args.output}")
    return 0


def _cmd_board(args: argparse.Namespace) -> int:
    from pyfill.board.server import new_token, serve

    serve(args.host, args.port, args.model, args.backend, tuple(args.allow_host), new_token() if args.token else None)
    return 0


def _add_backend(parser: argparse.ArgumentParser) -> None:
    from pyfill.engine.selection import BACKENDS

    parser.add_argument("--backend", default="auto", choices=BACKENDS,
                        help=f"runtime: {', '.join(BACKENDS)} (default auto: the fastest present)")


def _add_image_outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    parser.add_argument("-o", "--output", required=True,
                        help="output folder (folder structure kept); a file name when there is one input image")
    parser.add_argument("--format", choices=("png", "jpg", "webp", "tif", "bmp"),
                        help="output format (default: the input's, or PNG where it cannot hold the result)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 1..100 (default 95)")
    parser.add_argument("--skip-existing", action="store_true", help="skip inputs whose output already exists")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="run on a Ray cluster (default: RAY_ADDRESS, a running local one, or a new local "
                             "instance); needs pyfill[distributed]")


def build_parser() -> argparse.ArgumentParser:
    from pyfill import __version__

    parser = argparse.ArgumentParser(
        prog="pyfill",
        description="pyfill: inference SDK for GAN image models (colourisation, drawing-board "
        "generation with colour strokes, restoration, face swapping; images and video).",
    )
    parser.add_argument("--version", action="version", version=f"pyfill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="run every shipped system on sample inputs; writes pictures and an HTML page")
    demo.add_argument("-o", "--output", default="pyfill-demo", help="output folder (default pyfill-demo)")
    demo.add_argument("systems", nargs="*", metavar="SYSTEM", help="only these systems (default: all)")
    demo.set_defaults(func=_cmd_demo)

    doctor = sub.add_parser("doctor", help="show what this install can use (CPU, CUDA, runtimes)")
    doctor.add_argument("--json", action="store_true", help="print machine-readable JSON")
    doctor.set_defaults(func=_cmd_doctor)

    export = sub.add_parser("export", help="checkpoint -> ONNX; ONNX -> TensorRT engine, int8 ONNX or Triton repository")
    export.add_argument("model", help="a .safetensors checkpoint (with its .json); an .onnx file or a model name "
                        "with --tensorrt, --int8 or --triton-repo")
    export.add_argument("-o", "--output", help="output .onnx file (default: beside the checkpoint); with --tensorrt, an output folder")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    export.add_argument("--static", action="store_true", help="fixed batch and size instead of dynamic axes")
    export.add_argument("--tensorrt", action="store_true", help="build a TensorRT engine from an ONNX file")
    export.add_argument("--precision", choices=("auto", "fp32", "fp16"), default="auto",
                        help="TensorRT precision (default auto: fp16 where the manifest allows it)")
    export.add_argument("--size", nargs=2, type=int, metavar=("H", "W"),
                        help="with --static: the size to export at (default 512 512, rounded to the model's rules)")
    export.add_argument("--int8", action="store_true",
                        help="quantise an ONNX model (file or name) to int8 with NNCF; needs --calibration and -o")
    export.add_argument("--calibration", metavar="DIR", help="--int8: a folder of calibration images")
    export.add_argument("--held-out", metavar="DIR",
                        help="--int8: images to measure int8 against fp32 on (default: the calibration images)")
    export.add_argument("--triton-repo", metavar="DIR",
                        help="write a Triton Inference Server model repository entry into DIR (MODEL: a file or a name)")
    export.add_argument("--max-batch", type=int, default=8, help="Triton: the largest dynamic batch (default 8)")
    export.add_argument("--force", action="store_true", help="Triton: replace an existing entry of that name")
    export.set_defaults(func=_cmd_export)

    info = sub.add_parser("info", help="print a model's manifest and the backend it would run on")
    info.add_argument("model", help="a model name (pyfill models list) or a .onnx, .safetensors or .engine file")
    _add_backend(info)
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(func=_cmd_info)

    models = sub.add_parser("models", help="list the shipped and stored models; add, remove or locate one")
    models.add_argument("action", choices=("list", "add", "remove", "path"),
                        help="list | add FILE [--name N] | remove NAME | path NAME")
    models.add_argument("file", nargs="?", metavar="FILE_OR_NAME", help="the model file (add) or name (remove, path)")
    models.add_argument("--name", help="name to store the model under (default: the file's stem)")
    models.add_argument("--force", action="store_true", help="replace a stored model of the same name")
    models.set_defaults(func=_cmd_models)

    colorize = sub.add_parser("colorize", help="colourise gray or colour images (files and folders)")
    _add_image_outputs(colorize)
    colorize.add_argument("--model", default="colorize",
                          help="a model name or a model file (default: the shipped 'colorize')")
    _add_backend(colorize)
    colorize.add_argument("--scores", help="write each fill's realness score (discriminator) to this CSV file")
    colorize.set_defaults(func=_cmd_colorize)

    restore = sub.add_parser("restore", help="restore degraded images: deblur, denoise, de-JPEG (files and folders)")
    _add_image_outputs(restore)
    restore.add_argument("--model", default="restore",
                         help="a model name or a model file (default: the shipped 'restore')")
    _add_backend(restore)
    restore.add_argument("--tile", type=int, default=-1,
                         help="tile size in pixels for large images (default: the model's advice; 0: never tile; "
                              "at least 65, twice the 32 px overlap)")
    restore.set_defaults(func=_cmd_restore)

    generate = sub.add_parser("generate", help="generate an image from a label map and colour strokes")
    generate.add_argument("labels", metavar="LABELS", help="label map: 8-bit PNG of class indices, or a colour-coded "
                          "image in the model's legend colours")
    generate.add_argument("--strokes", metavar="STROKES", help="RGB colour strokes on black (or RGBA: alpha marks the "
                          "strokes), the label map's size; default: no strokes")
    generate.add_argument("-o", "--output", required=True, help="output image file")
    generate.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 1..100 (default 95)")
    generate.add_argument("--model", default="generate",
                          help="a model name or a model file (default: the shipped 'generate')")
    _add_backend(generate)
    generate.set_defaults(func=_cmd_generate)

    from pyfill.faces.cli import add_parser as add_swap_parser
    from pyfill.video.cli import add_parser as add_video_parser

    add_swap_parser(sub)
    add_video_parser(sub)

    from pyfill.tasks.edit_cli import add_parser as add_edit_parser

    add_edit_parser(sub)

    board = sub.add_parser("board", help="the drawing board: a local web page to paint labels and strokes and generate")
    board.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    board.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    board.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="a host name the page may be opened by besides IP addresses and localhost (repeatable)")
    board.add_argument("--token", action="store_true",
                       help="require a random token, printed in the URL at start (as Jupyter does)")
    board.add_argument("--model", default="generate",
                       help="a model name or a model file (default: the shipped 'generate')")
    _add_backend(board)
    board.set_defaults(func=_cmd_board)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        if getattr(args, "ray", None) is not None:
            from pyfill.distributed import run_cli_on_ray

            return run_cli_on_ray(args.command, args)
        return int(args.func(args))
    except (ValueError, TypeError, OSError, RuntimeError, ImportError) as exc:
        print(f"pyfill {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
