"""The `nedr` command: one subcommand per step of the journey (dehaze, train, eval, export, ...).

Every expected failure (bad file, bad option, missing optional package) ends as one line on
stderr and exit code 2; tracebacks are for bugs.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import __version__
from .commands import COMMANDS
from .errors import UserError, expected_errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nedr", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"nedr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        module.configure(sub.add_parser(name, help=module.HELP, description=module.__doc__.strip().splitlines()[0]))
    return parser


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    args.argv = [parser.prog, *(sys.argv[1:] if argv is None else argv)]  # for reports that record their command
    try:
        return int(args.handler(args) or 0)
    except expected_errors() as exc:
        print(f"{parser.prog}: error: {UserError.describe(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    return _run(build_parser(), argv)


def export_main(argv: Sequence[str] | None = None) -> int:
    """`nedr-export`, the name users ask for: the same as `nedr export`."""
    parser = argparse.ArgumentParser(prog="nedr-export", description="Export NeDR to ONNX")
    COMMANDS["export"].configure(parser)
    return _run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
