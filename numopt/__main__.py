"""Command line: ``python -m numopt info``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m numopt", description="numopt command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, threads, threading layer, SIMD level, CUDA")
    args = parser.parse_args(argv)
    if args.command == "info":
        from ._info import print_info

        print_info()
    return 0


if __name__ == "__main__":
    sys.exit(main())
