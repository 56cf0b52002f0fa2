"""The ``pyfill`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _cmd_doctor(args: argparse.Namespace) -> int:
    from pyfill.runtime import format_runtime_table, runtime_info

    info = runtime_info()
    print(json.dumps(info, indent=2) if args.json else format_runtime_table(info))
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
