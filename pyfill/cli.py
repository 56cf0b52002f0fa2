"""The ``pyfill`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


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
