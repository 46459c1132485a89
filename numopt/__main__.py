"""Command line: ``python -m numopt info``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m numopt", description="numopt command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, threads, threading layer, SIMD level, CUDA")
    sub.add_parser("bench", help="step times and GB/s next to torch.optim (--help for options)", add_help=False)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from .bench import run

        run(argv[1:])
        return 0
    args = parser.parse_args(argv)
    if args.command == "info":
        from ._info import print_info

        print_info()
    return 0


if __name__ == "__main__":
    sys.exit(main())
