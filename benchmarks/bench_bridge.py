"""The cost of an ioctl through the bridge (``ioasid run``), against the same ioctl on the
in-process ``sim`` backend, and the kernel's iommufd selftest binary's wall time.

    python benchmarks/bench_bridge.py [N]

* a C program issues ``IOMMU_OPTION`` GET (read the size, read the struct, write the answer
  back) N times on the simulated ``/dev/iommu`` through ``ioasid run`` and reports the wall
  time per call (clock_gettime around the loop: trap, supervisor, simulator, reply);
* the same ioctl, the same struct, on the sim backend in this process (raw pointer), wall
  time per call;
* ``ioasid run -- /work/shared/oracle/selftests/iommufd`` (if present): wall time and the
  pass count (the guest's real kernel: ~10 s).

Needs a C compiler. The ratio is what the goal (<= 2x) is stated in.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ioasid import uapi
from ioasid.backends import sim

REPO = Path(__file__).resolve().parent.parent
SELFTEST = Path("/work/shared/oracle/selftests/iommufd")

LOOP_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <linux/iommufd.h>

int main(int argc, char **argv)
{
    long n = atol(argv[1]), i;
    struct iommu_option opt = { .size = sizeof(opt), .option_id = IOMMU_OPTION_RLIMIT_MODE,
                                .op = IOMMU_OPTION_OP_GET };
    struct timespec a, b;
    int fd = open("/dev/iommu", O_RDWR);

    if (fd < 0 || ioctl(fd, IOMMU_OPTION, &opt))
        return 1;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (i = 0; i < n; i++)
        ioctl(fd, IOMMU_OPTION, &opt);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.3f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n / 1e3);
    return 0;
}
"""


def ioasid_run(*argv: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "ioasid.cli", "run", "--", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def bridge_us(n: int, rounds: int = 3) -> float:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("bench_bridge: needs a C compiler")
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp, "loop.c"), Path(tmp, "loop")
        src.write_text(LOOP_C)
        inc = REPO / "tests/uapi/include"
        subprocess.run([cc, "-O2", "-I", str(inc), "-o", str(exe), str(src)], check=True)
        best = float("inf")
        for _ in range(rounds):
            r = ioasid_run(str(exe), str(n))
            if r.returncode:
                raise SystemExit(f"bench_bridge: loop failed: {r.stderr}")
            best = min(best, float(r.stdout))
        return best


def in_process_us(n: int, rounds: int = 3) -> float:
    handle = sim.open("/dev/iommu")
    opt = uapi.iommu_option(
        size=ctypes.sizeof(uapi.iommu_option),
        option_id=uapi.IOMMU_OPTION_RLIMIT_MODE,
        op=uapi.IOMMU_OPTION_OP_GET,
    )
    addr = ctypes.addressof(opt)
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            handle.ioctl(uapi.IOMMU_OPTION, addr)
        best = min(best, (time.perf_counter() - t) / n)
    handle.close()
    return best * 1e6


def selftest() -> tuple[float, str] | None:
    if not SELFTEST.exists():
        return None
    t = time.perf_counter()
    r = ioasid_run(str(SELFTEST))
    wall = time.perf_counter() - t
    m = re.search(r"^# Totals: .*$", r.stdout, re.M)
    return wall, m.group(0) if m else "(no totals)"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    print(f"host: {os.uname().release}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    inproc = in_process_us(n)
    through = bridge_us(n)
    print(f"IOMMU_OPTION GET, in process (sim backend): {inproc:8.1f} us/call")
    print(f"IOMMU_OPTION GET, C program through bridge: {through:8.1f} us/call")
    print(f"ratio bridge / in-process: {through / inproc:.2f}x (goal <= 2x)")
    st = selftest()
    if st is not None:
        wall, totals = st
        print(f"selftest binary iommufd through the bridge: {wall:.1f} s wall (goal <= 30 s)")
        print(f"  {totals}")


if __name__ == "__main__":
    main()
