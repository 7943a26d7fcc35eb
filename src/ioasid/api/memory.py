"""``Buffer``: page-aligned user memory to hand to ``IOMMU_IOAS_MAP``."""

from __future__ import annotations

import ctypes
import mmap


class Buffer:
    """Anonymous shared memory (``MAP_SHARED | MAP_ANONYMOUS``), aligned to ``align``.

    Kernel-chosen IOVAs depend on the buffer's address modulo 2 MiB, so the default 2 MiB
    alignment makes them reproducible across runs and backends.
    """

    def __init__(self, length: int, align: int = 2 << 20) -> None:
        if length <= 0:
            raise ValueError(f"buffer length must be positive, not {length}")
        self._map = mmap.mmap(-1, length + align)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._map))
        self._offset = (-base) % align
        self.length = length
        self.address = base + self._offset
        self.view = memoryview(self._map)[self._offset : self._offset + length]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, item: slice) -> bytes:
        return bytes(self.view[item])

    def __setitem__(self, item: slice, data: bytes) -> None:
        self.view[item] = data

    def close(self) -> None:
        self.view.release()
        self._map.close()

    def __enter__(self) -> Buffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Buffer {self.length:#x} bytes at {self.address:#x}>"
