"""The ``ioasid`` command."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import ParamSpec

from ioasid import __version__


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
        help="IOMMU groups, an I/O address space and device DMA, step by step",
        description="On the embedded simulated host: its IOMMU groups and why, a device "
        "handed to user space (and one refused), an IOAS with memory mapped, device DMA "
        "through the IOMMU into this process's buffer, and peer-to-peer DMA that the PCI "
        "fabric lets around the IOMMU — each step explained.",
    )
    demo.add_argument(
        "--topology",
        metavar="FILE",
        help="boot the simulated host from this topology file instead of the default host "
        "(default: $IOASID_SIM_TOPOLOGY, else the embedded default host)",
    )
    try:
        from ioasid.cli import groups
    except ImportError:
        groups = None  # type: ignore[assignment]
    if groups is not None:
        groups.add_parser(sub)
    from ioasid.cli import run as run_cmd

    run_cmd.add_parser(sub)
    return parser


_P = ParamSpec("_P")

SIGPIPE_STATUS = 128 + 13
"""What a shell reports for a tool killed by ``SIGPIPE`` (Python ignores the signal)."""


def _quiet_on_broken_pipe(fn: Callable[_P, int]) -> Callable[_P, int]:
    """End quietly when the reader goes away (``ioasid groups --json | head -1``), as Unix
    tools do, instead of a ``BrokenPipeError`` traceback."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> int:
        try:
            status = fn(*args, **kwargs)
            sys.stdout.flush()  # the last buffered write would fail at exit, out of reach
            return status
        except BrokenPipeError:
            # the interpreter flushes stdout once more at exit: give it somewhere to go
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return SIGPIPE_STATUS

    return wrapper


@_quiet_on_broken_pipe
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ioasid.cli.demo import run

        return run(args)
    if args.command == "groups":
        from ioasid.cli import groups

        return groups.run(args)
    if args.command == "run":
        from ioasid.cli import run as run_cmd

        return run_cmd.run(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
