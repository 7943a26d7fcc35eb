"""The ``ioasid`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ioasid import __version__, backends


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ioasid",
        description="IOMMUFD (/dev/iommu, born /dev/ioasid) in Python: an embedded faithful "
        "kernel model, real-kernel bindings, and IOMMU-group isolation analysis.",
    )
    parser.add_argument("--version", action="version", version=f"ioasid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="walk through an I/O address space step by step",
        description="Allocate an IOAS, map a real buffer, copy the mapping into a second "
        "IOAS, query usable IOVA ranges, show the kernel's rules failing, and unmap — "
        "printing what each step means.",
    )
    demo.add_argument(
        "--backend",
        choices=backends.NAMES,
        default=backends.DEFAULT,
        help="sim: the embedded kernel (default, no root needed); linux: the real /dev/iommu",
    )
    try:
        from ioasid.cli import groups
    except ImportError:
        groups = None  # type: ignore[assignment]
    if groups is not None:
        groups.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ioasid.cli.demo import run

        return run(args)
    if args.command == "groups":
        from ioasid.cli import groups

        return groups.run(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
