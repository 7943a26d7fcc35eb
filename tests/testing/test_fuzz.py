"""The fuzzer: a small budget in CI (the long run is ``python -m ioasid.testing.fuzz``), proof
that each of its checks fires, and the findings of its campaigns as regression tests."""

from __future__ import annotations

import ctypes
import errno
import time
import tracemalloc
from collections.abc import Iterator
from types import ModuleType

import pytest

from ioasid import Buffer, Device, Iommufd, uapi
from ioasid.backends import sim
from ioasid.kernel import dispatch
from ioasid.kernel.private import Handler, Ucmd
from ioasid.testing import edu
from ioasid.testing.differential import Generator
from ioasid.testing.fuzz import FuzzResult, run_fuzz
from ioasid.testing.fuzz.__main__ import main
from ioasid.uapi import sim as simapi
from ioasid.uapi._abi import _IOC_NR

EDU = "/dev/vfio/devices/vfio0"


@pytest.fixture(autouse=True)
def fresh_host() -> Iterator[None]:
    yield
    sim.reset()


def _ops(result: FuzzResult) -> set[str]:
    return {key.rsplit(":", 1)[0] for key in result.errnos}


def test_small_campaign_finds_nothing_and_reaches_every_kind_of_ioctl() -> None:
    result = run_fuzz(1200, seed=0, sequence=300)
    assert result.ok, result.summary()
    assert result.calls == 1200 and result.sequences == 4
    ops = _ops(result)
    table = {d.name for d in uapi.IOMMUFD_IOCTLS}
    assert len(table & ops) >= len(table) - 2, sorted(table - ops)
    assert len({op for op in ops if op.startswith("IOMMU_TEST_OP_")}) >= 18
    assert {"VFIO_IOMMU_MAP_DMA", "VFIO_IOMMU_UNMAP_DMA", "VFIO_IOMMU_GET_INFO"} & ops
    assert {"VFIO_CHECK_EXTENSION", "VFIO_DEVICE_BIND_IOMMUFD"} <= ops
    assert {"VFIO_DEVICE_ATTACH_IOMMUFD_PT", "IOASID_SIM_DEVICE_DMA"} <= ops
    errnos = {key.rsplit(":", 1)[1] for key in result.errnos}
    assert {"ok", "EFAULT", "E2BIG", "EINVAL", "ENOENT", "EBADF", "EBADFD"} <= errnos


def test_threads_on_one_iommufd() -> None:
    result = run_fuzz(800, seed=5, threads=4, sequence=400)
    assert result.ok, result.summary()
    assert result.calls == 800


def test_a_seed_gives_the_same_sequence() -> None:
    a = run_fuzz(300, seed=11, trace=False)
    b = run_fuzz(300, seed=11, trace=False)
    assert a.errnos == b.errnos
    assert run_fuzz(300, seed=12, trace=False).errnos != a.errnos


def test_the_generator_fills_every_field_of_every_struct() -> None:
    """Fuzz mode sets every integer field of the structs it builds: a call of each table
    entry names all of them (in ``fields`` or ``refs``)."""
    gen = Generator(3, devices=True, fuzz=True)
    seen: dict[str, set[str]] = {}
    for _ in range(3000):
        call = gen._gen_any_iommufd()
        seen.setdefault(call.op, set()).update(call.fields, call.refs)
    for d in uapi.IOMMUFD_IOCTLS:
        scalars = {f[0] for f in d.struct._fields_ if issubclass(f[1], ctypes._SimpleCData)} - {
            "size"
        }
        assert scalars <= seen[d.name], (d.name, scalars - seen[d.name])
    assert "in_data_type" in seen["IOMMU_GET_HW_INFO"]  # of an anonymous union


# -- each check fires -----------------------------------------------------------------------


def _replace_handler(monkeypatch: pytest.MonkeyPatch, request: int, fn: Handler) -> Handler:
    nr = _IOC_NR(request)
    op, real, size = dispatch.TABLE[nr]
    monkeypatch.setitem(dispatch.TABLE, nr, (op, fn, size))
    return real


def test_a_non_oserror_in_the_kernel_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(ucmd: Ucmd) -> int:
        if ucmd.cmd.flags == 0:
            raise ValueError("injected")
        return real(ucmd)

    real = _replace_handler(monkeypatch, uapi.IOMMU_IOAS_ALLOC, broken)
    result = run_fuzz(200, seed=1, trace=False)
    bugs = [f for f in result.findings.values() if f.kind == "kernel-bug"]
    assert bugs and bugs[0].op == "IOMMU_IOAS_ALLOC", result.summary()
    assert "ValueError: injected" in bugs[0].detail and "broken" in bugs[0].detail


def test_a_call_that_allocates_what_it_is_told_is_a_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def greedy(ucmd: Ucmd) -> int:
        if ucmd.cmd.op == uapi.IOMMU_TEST_OP_MD_CHECK_REFS:
            bytearray(64 << 20)  # as if it had believed a declared length
        return real(ucmd)

    real = _replace_handler(monkeypatch, uapi.IOMMU_TEST_CMD, greedy)
    result = run_fuzz(600, seed=2)
    memory = [f for f in result.findings.values() if f.kind == "memory"]
    assert memory and memory[0].op == "IOMMU_TEST_OP_MD_CHECK_REFS", result.summary()


def test_a_leak_at_teardown_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    def leaky(ucmd: Ucmd) -> int:
        ucmd.ictx.kernel.processes.current.mm.pinned_vm += 1
        return real(ucmd)

    real = _replace_handler(monkeypatch, uapi.IOMMU_IOAS_ALLOC, leaky)
    result = run_fuzz(200, seed=3, trace=False)
    leaks = [f for f in result.findings.values() if f.kind == "leak"]
    assert leaks and "mm.pinned_vm" in leaks[0].detail, result.summary()


def test_cli_runs_and_fails_on_a_finding(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--n", "150", "--seed", "4", "--quiet", "--no-trace"]) == 0
    assert "150 calls" in capsys.readouterr().out

    def broken(ucmd: Ucmd) -> int:
        raise KeyError("injected")

    _replace_handler(monkeypatch, uapi.IOMMU_IOAS_ALLOC, broken)
    assert main(["--n", "150", "--seed", "4", "--quiet", "--no-trace"]) == 1
    assert "[kernel-bug] IOMMU_IOAS_ALLOC" in capsys.readouterr().out


# -- what the campaigns found ----------------------------------------------------------------


def _sim_dma(dev: Device, flags: int, iova: int, length: int, uptr: int) -> tuple[int, int]:
    st = simapi.ioasid_sim_dma
    cmd = st(argsz=ctypes.sizeof(st), flags=flags, iova=iova, length=length, uptr=uptr)
    buf = cmd.to_bytearray()
    try:
        dev.handle.ioctl(simapi.IOASID_SIM_DEVICE_DMA, buf)
        err = 0
    except OSError as e:
        assert e.errno != errno.ENOTRECOVERABLE, e
        err = e.errno or 0
    return err, st.from_bytes(buf).out_done


@pytest.mark.parametrize("length", [1 << 63, 1 << 45, 1 << 32])
@pytest.mark.parametrize("flags", [0, simapi.IOASID_SIM_DMA_WRITE])
def test_sim_dma_of_any_length_moves_what_is_mapped_then_faults(flags: int, length: int) -> None:
    """``IOASID_SIM_DEVICE_DMA`` of a declared 2^63 bytes over a 1 MiB mapping allocates next
    to nothing (it copied the whole declared length from the caller first before: 4 GiB
    and 20 s for 2^32, MemoryError above)."""
    with Iommufd(sim) as fd, Device(fd, EDU) as dev, Buffer(1 << 20) as ram:
        ioas = fd.ioas_alloc()
        dev.attach(ioas)
        iova = ioas.map(ram)
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            err, done = _sim_dma(dev, flags, iova, length, ram.address)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # moved what is mapped, then faulted; or (a simulator that caps a transfer at
        # 1 GiB) refused before any work: bounded either way
        assert (err, done) == (errno.EIO, 1 << 20) or (err, length > 1 << 30) == (
            errno.EINVAL,
            True,
        )
        assert peak < 4 << 20 and time.perf_counter() - t0 < 5


def test_sim_dma_from_a_hole_in_the_callers_memory_is_efault() -> None:
    with Iommufd(sim) as fd, Device(fd, EDU) as dev, Buffer(1 << 20) as ram:
        ioas = fd.ioas_alloc()
        dev.attach(ioas)
        iova = ioas.map(ram)
        assert _sim_dma(dev, simapi.IOASID_SIM_DMA_WRITE, iova, 1 << 20, 1 << 47)[0] == errno.EFAULT


@pytest.mark.oracle
def test_bar_read_is_cut_at_the_end_of_the_bar(backend: ModuleType) -> None:
    """``vfio_pci_bar_rw``: from the BAR's end on EINVAL; a read across it is cut there, so
    a read of 2^64 bytes returns the BAR (it raised MemoryError before)."""
    with Iommufd(backend) as fd, Device(fd, edu.cdev_path(backend)) as dev:
        size = dev.region(0).size
        assert len(dev.read(0, size - 2, 8)) == 2
        with pytest.raises(OSError) as e:
            dev.read(0, size, 4)
        assert e.value.errno == errno.EINVAL
        if backend.NAME == "sim":  # os.pread takes a C ssize_t
            assert len(dev.read(0, 0, 1 << 64)) == size


def test_config_access_past_the_config_space_is_efault() -> None:
    """``vfio_pci_config_rw_single``: ``*ppos + count > cfg_size`` → EFAULT."""
    with Iommufd(sim) as fd, Device(fd, EDU) as dev:
        with pytest.raises(OSError) as e:
            dev.read(uapi.VFIO_PCI_CONFIG_REGION_INDEX, 0, 1 << 64)
        assert e.value.errno == errno.EFAULT
        assert len(dev.read(uapi.VFIO_PCI_CONFIG_REGION_INDEX, 0, 64)) == 64


def _bind(backend: ModuleType, dev: object, iommufd: int) -> int:
    st = uapi.vfio_device_bind_iommufd
    cmd = st(argsz=ctypes.sizeof(st), iommufd=iommufd).to_bytearray()
    dev.ioctl(uapi.VFIO_DEVICE_BIND_IOMMUFD, cmd)  # type: ignore[attr-defined]
    return int(st.from_bytes(cmd).out_devid)


@pytest.mark.oracle
def test_a_bound_cdev_keeps_its_iommufd_alive(backend: ModuleType) -> None:
    """``vfio_df_ioctl_bind_iommufd`` holds the iommufd (``iommufd_ctx_from_fd``) until
    the device is unbound: closing the iommufd first destroys nothing, the device still
    attaches to an IOAS made before; closing the cdev then frees it all, and a new bind
    gets id 1 again. The simulator destroyed every object at the iommufd's close, the
    bound device's too, and left the group's attachment behind."""
    path = edu.cdev_path(backend)
    fd, dev = backend.open("/dev/iommu"), backend.open(path)
    try:
        assert _bind(backend, dev, fd.fileno()) == 1
        alloc = uapi.iommu_ioas_alloc(size=ctypes.sizeof(uapi.iommu_ioas_alloc)).to_bytearray()
        fd.ioctl(uapi.IOMMU_IOAS_ALLOC, alloc)
        ioas_id = uapi.iommu_ioas_alloc.from_bytes(alloc).out_ioas_id
        fd.close()
        st = uapi.vfio_device_attach_iommufd_pt
        attach = st(argsz=ctypes.sizeof(st), pt_id=ioas_id).to_bytearray()
        assert dev.ioctl(uapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT, attach) == 0
    finally:
        fd.close()
        dev.close()
    with backend.open("/dev/iommu") as fd, backend.open(path) as dev:
        assert _bind(backend, dev, fd.fileno()) == 1
    if backend.NAME == "sim":
        assert not any(g.attached or g.owner_cnt for g in sim.kernel().groups.values())
