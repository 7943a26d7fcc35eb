"""The bridge's parts on their own: the filter, ProcessAddressSpace, the /proc files."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ioasid.bridge import ProcessAddressSpace
from ioasid.bridge import seccomp as sc
from ioasid.bridge.procfs import FailNthFile, kstrtouint, status_text
from ioasid.hw.memory import PAGE_SIZE, SelfAddressSpace
from ioasid.kernel import fail_nth
from ioasid.kernel.process import MmStruct, Task, UserStruct
from ioasid.kernel.rangecount import RangeCount


def test_filter_jumps_stay_inside_the_program() -> None:
    prog = sc.filter_program()
    assert len(prog) % 8 == 0
    n = len(prog) // 8
    for i in range(n):
        code, jt, jf, _k = struct.unpack_from("=HBBI", prog, 8 * i)
        if code & 0x07 == 0x05:  # BPF_JMP
            assert i + 1 + max(jt, jf) < n
    last_two = [struct.unpack_from("=HBBI", prog, 8 * i)[3] for i in (n - 2, n - 1)]
    assert last_two == [sc.SECCOMP_RET_USER_NOTIF, sc.SECCOMP_RET_ALLOW]


@pytest.mark.parametrize(
    ("text", "value"),
    [(b"5", 5), (b"0", 0), (b"12\n", 12), (b"0x10", 16), (b"010", 8), (b"+7", 7),
     (b"4294967295", (1 << 32) - 1)],
)  # fmt: skip
def test_kstrtouint_accepts_what_the_kernel_accepts(text: bytes, value: int) -> None:
    assert kstrtouint(text) == value


@pytest.mark.parametrize(
    ("text", "err"),
    [(b"", errno.EINVAL), (b"x", errno.EINVAL), (b"-1", errno.EINVAL), (b"08", errno.EINVAL),
     (b"3\n\n", errno.EINVAL), (b"0x", errno.EINVAL), (b"4294967296", errno.ERANGE)],
)  # fmt: skip
def test_kstrtouint_refuses_what_the_kernel_refuses(text: bytes, err: int) -> None:
    with pytest.raises(OSError) as e:
        kstrtouint(text)
    assert e.value.errno == err


def test_fail_nth_counts_down_to_the_nth_fault_point() -> None:
    task = Task(1, MmStruct(SelfAddressSpace()), UserStruct(0))
    assert not fail_nth.should_fail(task)
    with fail_nth.injecting(task, 3):
        hits = [fail_nth.should_fail(task) for _ in range(5)]
        assert fail_nth.armed(task) == 0
    assert hits == [False, False, True, False, False]
    fail_nth.arm(task, 2)
    assert fail_nth.armed(task) == 2
    with pytest.raises(ValueError):
        fail_nth.arm(task, 1 << 32)


def test_fail_nth_file_reads_and_writes_the_counter() -> None:
    counter = {"n": 0}

    def access(value: int | None) -> int:
        if value is not None:
            counter["n"] = value
        return counter["n"]

    f = FailNthFile(7, access)
    assert f.pwrite(b"12\n", 99) == 3
    assert (f.pread(16, 0), f.pread(1, 1), f.pread(16, 3)) == (b"12\n", b"2", b"")
    with pytest.raises(OSError) as e:
        f.pwrite(b"nope", 0)
    assert e.value.errno == errno.EINVAL and counter["n"] == 12


def test_status_shows_the_simulated_counters() -> None:
    mm = MmStruct(SelfAddressSpace(), locked_vm=3, pinned_vm=5)
    real = "Name:\tx\nVmLck:\t       0 kB\nVmPin:\t       0 kB\nVmHWM:\t  1 kB\n"
    out = status_text(real, mm).splitlines()
    kb = PAGE_SIZE // 1024
    assert out == [
        "Name:\tx",
        f"VmLck:\t{3 * kb:8d} kB",
        f"VmPin:\t{5 * kb:8d} kB",
        "VmHWM:\t  1 kB",
    ]


@pytest.fixture
def other_process() -> Iterator[tuple[int, int, int]]:
    """A process with one page holding b"page one" at ``addr`` and a hole at ``hole``."""
    code = (
        "import mmap, ctypes, sys\n"
        "m = mmap.mmap(-1, 2 * mmap.PAGESIZE); m[:8] = b'page one'\n"
        "a = ctypes.addressof(ctypes.c_char.from_buffer(m))\n"
        "h = mmap.mmap(-1, mmap.PAGESIZE); hole = ctypes.addressof(ctypes.c_char.from_buffer(h))\n"
        "h.close(); print(a, hole, flush=True); sys.stdin.read()\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert p.stdout is not None
    addr, hole = map(int, p.stdout.readline().split())
    try:
        yield p.pid, addr, hole
    finally:
        p.kill()
        p.wait()


def test_process_address_space_faults_where_the_process_has_no_memory(
    other_process: tuple[int, int, int],
) -> None:
    pid, addr, hole = other_process
    aspace = ProcessAddressSpace(pid)
    assert aspace.read(addr, 8) == b"page one"
    aspace.write(addr + 8, b"!")
    assert aspace.read(addr, 9) == b"page one!"
    aspace.check_pinnable(addr, 2 * PAGE_SIZE, True)
    for probe in (
        lambda: aspace.read(hole, 1),
        lambda: aspace.write(hole, b"x"),
        lambda: aspace.read(hole - 1, 2),
        lambda: aspace.check_pinnable(hole, 1, False),
    ):
        with pytest.raises(OSError) as e:
            probe()
        assert e.value.errno == errno.EFAULT


def test_pinned_pages_outlive_the_mm_new_pins_fault(
    other_process: tuple[int, int, int],
) -> None:
    """fork_gone: what was pinned stays readable and writable (the pin holds the page);
    every other address, and every new pin, is EFAULT."""
    pid, addr, _hole = other_process
    aspace = ProcessAddressSpace(pid)
    pins = RangeCount()
    pins.add(addr // PAGE_SIZE, addr // PAGE_SIZE, 1)
    aspace.keep_pinned(pins)
    aspace.gone()
    assert aspace.read(addr, 8) == b"page one"
    aspace.write(addr, b"PAGE")
    assert aspace.read(addr, 8) == b"PAGE one"
    for probe in (
        lambda: aspace.read(addr + PAGE_SIZE, 1),
        lambda: aspace.read(addr + PAGE_SIZE - 1, 2),
        lambda: aspace.check_pinnable(addr, 1, False),
    ):
        with pytest.raises(OSError) as e:
            probe()
        assert e.value.errno == errno.EFAULT
    assert aspace.vmas() == []


def test_pidfd_getfd_is_the_same_open_file() -> None:
    r, w = os.pipe()
    try:
        pidfd = sc.pidfd_open(os.getpid())
        got = sc.pidfd_getfd(pidfd, w)
        os.write(got, b"x")
        assert os.read(r, 1) == b"x"
        os.close(got)
        with pytest.raises(OSError) as e:
            sc.pidfd_getfd(pidfd, 1 << 20)
        assert e.value.errno == errno.EBADF
        os.close(pidfd)
    finally:
        os.close(r)
        os.close(w)


def test_a_placeholder_is_released_on_its_last_reference_only() -> None:
    from ioasid.bridge.files import OpenFiles

    released: list[str] = []
    files = OpenFiles(lambda ph: released.append(ph.name))
    fd, ph = files.create("x", object())
    dup = os.dup(fd)
    os.ftruncate(fd, PAGE_SIZE)
    mapping = mmap.mmap(dup, PAGE_SIZE)
    os.close(fd)
    files.drain()
    os.close(dup)
    files.drain()
    assert released == []
    assert files.by_key[ph.key] is ph
    mapping.close()
    files.drain()
    assert released == ["x"]
    files.close()
    assert ctypes.sizeof(sc.Notif) == 80
