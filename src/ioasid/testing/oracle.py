"""The oracle runner: compare the simulator with the real Linux 7.3 kernel.

Inside the oracle guest (or on any host with ``/dev/iommu``)::

    python -m ioasid.testing.oracle differential --seeds 50 [--calls 300] [--json OUT]

runs the differential harness (:mod:`ioasid.testing.differential`) for each seed with the
``sim`` backend as A and ``linux`` as B, in one process, and prints agree/diverge per seed
with the first divergence. ``record`` runs one backend and saves the sequence, ``compare``
replays a saved sequence on another backend (a guest recording against the sim here).

From the host, one command boots the guest and runs the differential there::

    python -m ioasid.testing.oracle guest-differential --seeds 50
    python -m ioasid.testing.oracle guest-differential --devices --seeds 30 --calls 300
    python -m ioasid.testing.oracle run -- /work/main/.venv/bin/python -m pytest -m oracle \\
        --backend=linux tests

``run`` wraps ``run-guest.sh`` from ``$IOASID_ORACLE_DIR`` (default ``/work/shared/oracle``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ioasid.testing.differential import (
    DiffResult,
    backend_opener,
    replay,
    run_differential,
)

DEFAULT_ORACLE_DIR = "/work/shared/oracle"
GUEST_JSON = "differential.json"


def oracle_dir() -> Path:
    return Path(os.environ.get("IOASID_ORACLE_DIR", DEFAULT_ORACLE_DIR))


def run_guest_script() -> Path:
    script = oracle_dir() / "run-guest.sh"
    if not script.exists():
        raise FileNotFoundError(
            f"{script} not found: set IOASID_ORACLE_DIR to the folder holding run-guest.sh"
        )
    return script


def run_in_guest(command: str, *, env: dict[str, str] | None = None) -> int:
    """Run ``command`` (a shell command line) as root in a fresh oracle guest; its status.

    The guest's root is this host's root, so absolute paths (``sys.executable``) work;
    255 means the oracle itself failed (see ``run-guest.sh --help``).
    """
    full_env = {**os.environ, **(env or {})}
    return subprocess.call([str(run_guest_script()), command], env=full_env)


def _reset_sim(names: Sequence[str]) -> None:
    if "sim" in names:
        from ioasid.backends import sim

        sim.reset()


def cmd_differential(args: argparse.Namespace) -> int:
    names = (args.a, args.b)
    runs: list[dict[str, Any]] = []
    agreed = 0
    t0 = time.perf_counter()
    for seed in range(args.start, args.start + args.seeds):
        _reset_sim(names)
        t = time.perf_counter()
        result = run_differential(
            seed,
            [backend_opener(args.a), backend_opener(args.b)],
            names=names,
            calls=args.calls,
            probe=not args.no_probe,
            devices=args.devices,
        )
        agreed += result.agree
        print(f"{result.summary()}  [{time.perf_counter() - t:.1f}s]", flush=True)
        runs.append(_run_record(result, full=args.full))
    mode = ", devices mode" if args.devices else ""
    print(
        f"{agreed}/{args.seeds} seeds agree ({names[0]} vs {names[1]}, {args.calls} calls each"
        f"{mode}, {time.perf_counter() - t0:.0f}s)",
        flush=True,
    )
    if args.json:
        _write_json(
            args.json,
            {
                "kind": "differential",
                "names": list(names),
                "calls": args.calls,
                "devices": args.devices,
                "seeds": args.seeds,
                "agreed": agreed,
                "runs": runs,
            },
        )
    return 0 if agreed == args.seeds else 1


def _run_record(result: DiffResult, *, full: bool) -> dict[str, Any]:
    if full or not result.agree:
        return result.to_json()
    return {
        "seed": result.seed,
        "names": list(result.names),
        "agree": True,
        "steps_run": len(result.steps),
        "errnos": result.errno_histogram(),
    }


def cmd_record(args: argparse.Namespace) -> int:
    runs = []
    for seed in range(args.start, args.start + args.seeds):
        _reset_sim([args.backend])
        result = run_differential(
            seed,
            [backend_opener(args.backend)],
            names=(args.backend,),
            calls=args.calls,
            probe=not args.no_probe,
            devices=args.devices,
        )
        print(f"seed {seed}: recorded {len(result.steps)} steps on {args.backend}", flush=True)
        runs.append(result.to_json())
    _write_json(args.json, {"kind": "record", "runs": runs})
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    data = json.loads(Path(args.json).read_text())
    agreed = total = 0
    for run in data["runs"]:
        if "steps" not in run:
            continue
        recorded = DiffResult.from_json(run)
        _reset_sim([args.backend])
        result = replay(
            recorded, backend_opener(args.backend), column=args.column, name=args.backend
        )
        total += 1
        agreed += result.agree
        print(result.summary(), flush=True)
    print(f"{agreed}/{total} recorded runs agree with {args.backend}")
    return 0 if agreed == total else 1


def cmd_run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("oracle run: give a command after --", file=sys.stderr)
        return 2
    line = command[0] if len(command) == 1 else shlex.join(command)
    return run_in_guest(line)


def cmd_guest_differential(args: argparse.Namespace) -> int:
    keep = args.json is not None
    scratch = Path(tempfile.mkdtemp(prefix="ioasid-oracle-"))
    out = scratch / GUEST_JSON
    inner = [
        sys.executable,
        "-m",
        "ioasid.testing.oracle",
        "differential",
        "--seeds",
        str(args.seeds),
        "--start",
        str(args.start),
        "--calls",
        str(args.calls),
        "--json",
        str(out),
    ]
    if args.no_probe:
        inner.append("--no-probe")
    if args.devices:
        inner.append("--devices")
    if args.full:
        inner.append("--full")
    env = {"ORACLE_SCRATCH": str(scratch), "ORACLE_KEEP_SCRATCH": "1"}
    if "ORACLE_TIMEOUT" not in os.environ:
        env["ORACLE_TIMEOUT"] = str(max(600, 60 * args.seeds))
    status = run_in_guest(f"cd {shlex.quote(os.getcwd())} && {shlex.join(inner)}", env=env)
    if status == 255:
        print("oracle guest failed to run (status 255)", file=sys.stderr)
        return 255
    if out.exists():
        data = json.loads(out.read_text())
        print(
            f"guest summary: {data['agreed']}/{data['seeds']} seeds agree "
            f"({' vs '.join(data['names'])})"
        )
        if keep:
            Path(args.json).write_text(out.read_text())
            print(f"JSON written to {args.json}")
    else:
        print(f"no result file from the guest ({out})", file=sys.stderr)
    return status


def _write_json(path: str, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=int, default=10, help="how many seeds (default 10)")
    p.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--calls", type=int, default=300, help="ioctls per seed (default 300)")
    p.add_argument("--no-probe", action="store_true", help="skip the state probe after each call")
    p.add_argument(
        "--devices",
        action="store_true",
        help="devices mode: mix in mock devices, HWPTs, dirty tracking and access objects",
    )


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m ioasid.testing.oracle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command_name", required=True)

    p = sub.add_parser("differential", help="sim vs linux in this process, per seed")
    _common(p)
    p.add_argument("--json", help="write the results (full steps of diverging seeds) here")
    p.add_argument("--full", action="store_true", help="keep every step of every seed in --json")
    p.add_argument("--a", default="sim", help="backend A (default sim; the generator follows it)")
    p.add_argument("--b", default="linux", help="backend B (default linux)")
    p.set_defaults(func=cmd_differential)

    p = sub.add_parser("record", help="record sequences and results on one backend")
    _common(p)
    p.add_argument("--backend", default="linux")
    p.add_argument("--json", required=True)
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("compare", help="replay recorded sequences on a backend and compare")
    p.add_argument("--json", required=True, help="a file from record or differential --full")
    p.add_argument("--backend", default="sim")
    p.add_argument("--column", type=int, default=0, help="which recorded backend to compare with")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("run", help="run a command in the oracle guest (run-guest.sh)")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("guest-differential", help="boot the guest and run differential there")
    _common(p)
    p.add_argument("--json", help="copy the guest's JSON result here")
    p.add_argument("--full", action="store_true")
    p.set_defaults(func=cmd_guest_differential)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
