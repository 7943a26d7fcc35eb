"""``python -m ioasid.testing.fuzz --n N [--seed S] [--threads T]``: a long campaign."""

from __future__ import annotations

import argparse
import json
import sys

from ioasid.testing.fuzz.campaign import run_fuzz


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ioasid.testing.fuzz", description=__doc__)
    p.add_argument("--n", type=int, default=10_000, help="calls in all (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="first sequence's seed")
    p.add_argument("--threads", type=int, default=1, help="threads on one iommufd")
    p.add_argument("--sequence", type=int, default=200, help="calls per sequence")
    p.add_argument("--no-trace", action="store_true", help="no tracemalloc (faster)")
    p.add_argument("--json", help="write the findings here")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    result = run_fuzz(
        args.n,
        seed=args.seed,
        threads=args.threads,
        sequence=args.sequence,
        trace=not args.no_trace,
        progress=not args.quiet,
    )
    print(result.summary())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "calls": result.calls,
                    "sequences": result.sequences,
                    "seconds": result.seconds,
                    "errnos": result.errnos,
                    "findings": [vars(x) for x in result.findings.values()],
                },
                f,
                indent=1,
            )
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
