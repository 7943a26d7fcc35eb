"""The kernel's mock driver (``CONFIG_IOMMUFD_TEST``, ``IOMMU_TEST_CMD``) as objects.

The same calls work on the embedded kernel and on a real kernel built with the selftest
driver (the oracle guest): mock devices attached to an IOAS or HWPT, and access objects —
in-kernel DMA users, the emulated-IOMMU (mdev) model — that pin, read and write an IOAS.
"""

from __future__ import annotations

import ctypes
import os

from ioasid import uapi
from ioasid.api.hwpt import HwPagetable
from ioasid.api.iommufd import Ioas, Iommufd


def _test_cmd(fd: Iommufd, op: int, obj_id: int, name: str, **fields: object) -> uapi.Struct:
    cmd = uapi.iommu_test_cmd(size=ctypes.sizeof(uapi.iommu_test_cmd), op=op, id=obj_id)
    for path, value in fields.items():
        member, _, field = path.partition("__")
        setattr(getattr(cmd, member), field, value)
    return fd.ioctl(uapi.IOMMU_TEST_CMD, cmd, f"IOMMU_TEST_CMD({name})")


class MockDevice:
    """A mock device bound to ``fd`` and attached (``IOMMU_TEST_OP_MOCK_DOMAIN``)."""

    def __init__(self, fd: Iommufd, pt: Ioas | HwPagetable, dev_flags: int = 0) -> None:
        self.fd = fd
        if dev_flags:
            out = _test_cmd(
                fd,
                uapi.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
                pt.id,
                "MOCK_DOMAIN_FLAGS",
                mock_domain_flags__dev_flags=dev_flags,
            )
        else:
            out = _test_cmd(fd, uapi.IOMMU_TEST_OP_MOCK_DOMAIN, pt.id, "MOCK_DOMAIN")
        self.stdev_id = int(out.mock_domain.out_stdev_id)
        self.id = int(out.mock_domain.out_idev_id)
        self.hwpt = HwPagetable(
            fd, int(out.mock_domain.out_hwpt_id), pt if isinstance(pt, Ioas) else None
        )

    def replace(self, pt: Ioas | HwPagetable) -> HwPagetable:
        """``IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE``."""
        out = _test_cmd(
            self.fd,
            uapi.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE,
            self.stdev_id,
            "MOCK_DOMAIN_REPLACE",
            mock_domain_replace__pt_id=pt.id,
        )
        self.hwpt = HwPagetable(
            self.fd, int(out.mock_domain_replace.pt_id), pt if isinstance(pt, Ioas) else None
        )
        return self.hwpt

    def destroy(self) -> None:
        """Unbind the mock device (destroying its selftest object detaches it)."""
        self.fd.destroy(self.stdev_id)

    def __repr__(self) -> str:
        return f"<MockDevice idev={self.id} stdev={self.stdev_id} hwpt={self.hwpt.id}>"


class Access:
    """An access object on an IOAS (``IOMMU_TEST_OP_CREATE_ACCESS``): closing its fd
    destroys it."""

    def __init__(self, fd: Iommufd, ioas: Ioas, *, needs_pin_pages: bool = True) -> None:
        self.fd = fd
        flags = uapi.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES if needs_pin_pages else 0
        out = _test_cmd(
            fd,
            uapi.IOMMU_TEST_OP_CREATE_ACCESS,
            ioas.id,
            "CREATE_ACCESS",
            create_access__flags=flags,
        )
        self.access_fd = int(out.create_access.out_access_fd)

    def pin(self, iova: int, length: int, user: int, *, writable: bool = True) -> int:
        """``IOMMU_TEST_OP_ACCESS_PAGES``: pin ``[iova, +length)``; the kernel checks that
        the pages are those behind ``user``. Returns the pin's id."""
        out = _test_cmd(
            self.fd,
            uapi.IOMMU_TEST_OP_ACCESS_PAGES,
            self.access_fd,
            "ACCESS_PAGES",
            access_pages__iova=iova,
            access_pages__length=length,
            access_pages__uptr=user,
            access_pages__flags=uapi.MOCK_FLAGS_ACCESS_WRITE if writable else 0,
        )
        return int(out.access_pages.out_access_pages_id)

    def unpin(self, pin_id: int) -> None:
        """``IOMMU_TEST_OP_DESTROY_ACCESS_PAGES``."""
        _test_cmd(
            self.fd,
            uapi.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES,
            self.access_fd,
            "DESTROY_ACCESS_PAGES",
            destroy_access_pages__access_pages_id=pin_id,
        )

    def read(self, iova: int, length: int, *, slow_path: bool = False) -> bytes:
        """``IOMMU_TEST_OP_ACCESS_RW``: the kernel reads the IOAS at ``iova``."""
        buf = ctypes.create_string_buffer(length)
        self._rw(iova, ctypes.addressof(buf), length, slow_path=slow_path, write=False)
        return buf.raw

    def write(self, iova: int, data: bytes, *, slow_path: bool = False) -> None:
        """``IOMMU_TEST_OP_ACCESS_RW`` with ``MOCK_ACCESS_RW_WRITE``."""
        buf = ctypes.create_string_buffer(data, len(data))
        self._rw(iova, ctypes.addressof(buf), len(data), slow_path=slow_path, write=True)

    def _rw(self, iova: int, uptr: int, length: int, *, slow_path: bool, write: bool) -> None:
        flags = (uapi.MOCK_ACCESS_RW_WRITE if write else 0) | (
            uapi.MOCK_ACCESS_RW_SLOW_PATH if slow_path else 0
        )
        _test_cmd(
            self.fd,
            uapi.IOMMU_TEST_OP_ACCESS_RW,
            self.access_fd,
            "ACCESS_RW",
            access_rw__iova=iova,
            access_rw__length=length,
            access_rw__uptr=uptr,
            access_rw__flags=flags,
        )

    def close(self) -> None:
        """Close the access fd: the kernel unpins everything and destroys the access."""
        if self.access_fd >= 0:
            fdno, self.access_fd = self.access_fd, -1
            os.close(fdno)

    def __enter__(self) -> Access:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
