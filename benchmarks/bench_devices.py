"""Attach cost: devices joining an IOAS that already holds 10^4 areas.

Two cases on the sim backend, with the kernel's mock driver (``IOMMU_TEST_CMD``):

* 100 mock devices attached to the IOAS: the first creates the auto domain and fills it
  with every area (pins + page-table writes); the other 99 reuse it (the kernel's
  ``iommufd_device_auto_get_domain``), so they cost almost nothing.
* 100 HWPTs allocated on the IOAS (``IOMMU_HWPT_ALLOC``): each is a new domain that must be
  filled with all 10^4 areas — the real cost of filling domains.

Reference: a bare ``SortedDict`` insert of the same 10^4 keys, measured in the same run.

    python benchmarks/bench_devices.py [--areas 10000] [--devices 100]
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import time

from sortedcontainers import SortedDict

from ioasid import uapi
from ioasid.backends import sim

PAGE = 4096


def ioctl(h: sim.SimHandle, req: int, s: uapi.Struct) -> uapi.Struct:
    b = s.to_bytearray()
    h.ioctl(req, b)
    return type(s).from_bytes(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--areas", type=int, default=10_000)
    ap.add_argument("--devices", type=int, default=100)
    args = ap.parse_args()
    n, ndev = args.areas, args.devices

    sim.reset()
    buf = mmap.mmap(-1, n * PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    h = sim.open()
    ioas = ioctl(h, uapi.IOMMU_IOAS_ALLOC, uapi.iommu_ioas_alloc(size=12)).out_ioas_id
    t = time.process_time()
    for i in range(n):
        ioctl(
            h,
            uapi.IOMMU_IOAS_MAP,
            uapi.iommu_ioas_map(
                size=40,
                flags=7,
                ioas_id=ioas,
                user_va=base + i * PAGE,
                length=PAGE,
                iova=uapi.MOCK_APERTURE_START + 2 * i * PAGE,
            ),
        )
    t_map = time.process_time() - t

    cmd = uapi.iommu_test_cmd(
        size=ctypes.sizeof(uapi.iommu_test_cmd), op=uapi.IOMMU_TEST_OP_MOCK_DOMAIN, id=ioas
    )
    t = time.process_time()
    first = ioctl(h, uapi.IOMMU_TEST_CMD, cmd)
    t_first = time.process_time() - t
    t = time.process_time()
    for _ in range(ndev - 1):
        ioctl(h, uapi.IOMMU_TEST_CMD, cmd)
    t_rest = time.process_time() - t

    t = time.process_time()
    for _ in range(ndev):
        ioctl(
            h,
            uapi.IOMMU_HWPT_ALLOC,
            uapi.iommu_hwpt_alloc(
                size=ctypes.sizeof(uapi.iommu_hwpt_alloc),
                dev_id=first.mock_domain.out_idev_id,
                pt_id=ioas,
            ),
        )
    t_hwpt = time.process_time() - t

    t = time.process_time()
    sd: SortedDict = SortedDict()
    for i in range(n):
        sd[i * 2 * PAGE] = i
    t_ref = time.process_time() - t
    h.close()

    print(f"| what | total | per item | ratio to SortedDict insert of {n} keys |")
    print("|---|---|---|---|")
    print(
        f"| map {n} x 4 KiB areas (no domain yet) | {t_map:.3f} s | {t_map / n * 1e6:.1f} µs/area"
        f" | {t_map / t_ref:.0f}x |"
    )
    print(
        f"| 1st device attach: auto domain filled with {n} areas | {t_first:.3f} s | "
        f"{t_first / n * 1e6:.1f} µs/area | {t_first / t_ref:.0f}x |"
    )
    print(
        f"| {ndev - 1} more devices (reuse the domain) | {t_rest:.3f} s | "
        f"{t_rest / max(ndev - 1, 1) * 1e3:.2f} ms/device | - |"
    )
    print(
        f"| {ndev} HWPT_ALLOC (each domain filled with {n} areas) | {t_hwpt:.3f} s | "
        f"{t_hwpt / ndev * 1e3:.1f} ms/domain = {t_hwpt / ndev / n * 1e6:.1f} µs/area | "
        f"{t_hwpt / ndev / t_ref:.0f}x per domain |"
    )


if __name__ == "__main__":
    main()
