"""``ioasid run [--topology FILE] [--] PROGRAM [ARGS...]``: PROGRAM against the simulator.

PROGRAM's ``/dev/iommu``, ``/dev/vfio/vfio`` and ``/dev/vfio/devices/vfioN`` are the
simulated host's (:mod:`ioasid.bridge`); everything else it does runs on this machine. The
exit status is PROGRAM's (``128 + N`` if signal N killed it); 126 if the bridge cannot be
set up for it, 127 if it is not found.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``run`` on the top-level parser's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run an unmodified program (C, Rust, Go, ...) against the simulated /dev/iommu",
        description="Start PROGRAM under a seccomp user-notification filter: its opens of "
        "/dev/iommu, /dev/vfio/vfio and /dev/vfio/devices/vfioN, and everything it does "
        "with those files, are served by the simulated kernel; the rest runs natively.",
    )
    p.add_argument(
        "--topology",
        metavar="FILE",
        help="boot the simulated host from this topology file instead of the default host "
        "(default: $IOASID_SIM_TOPOLOGY, else the embedded default host)",
    )
    p.add_argument("--log", metavar="FILE", help="write the bridge's log here (default stderr)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every simulator error")
    p.add_argument("program", metavar="PROGRAM", help="the program to run")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="its arguments")
    return p


def run(args: argparse.Namespace) -> int:
    from ioasid import bridge
    from ioasid.backends import sim

    handler: logging.Handler = (
        logging.FileHandler(args.log) if args.log else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("ioasid run: %(message)s"))
    for name in ("ioasid.bridge", "ioasid.kernel"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
        logger.propagate = False
    kernel = sim.reset(args.topology)
    try:
        return bridge.run([args.program, *args.args], kernel)
    except bridge.LaunchError as e:
        print(f"ioasid run: {e}", file=sys.stderr)
        return 127 if "not found" in str(e) else 126
