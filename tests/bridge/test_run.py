"""``ioasid run``: unmodified programs served by the simulator through the bridge."""

from __future__ import annotations

import csv
import errno
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from ioasid import bridge
from ioasid.kernel.machine import Kernel
from ioasid.testing import edu

HERE = Path(__file__).parent
PROGRAMS = HERE / "programs"
REPO = HERE.parent.parent
SELFTESTS = Path("/work/shared/oracle/selftests")


def ioasid_run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ioasid.cli", "run", "--", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_exit_status_is_the_programs() -> None:
    assert ioasid_run("sh", "-c", "exit 7").returncode == 7
    killed = ioasid_run("sh", "-c", "kill -9 $$")
    assert killed.returncode == 128 + 9


def test_a_program_that_never_opens_dev_iommu_runs_as_unsupervised() -> None:
    script = "cat /proc/self/comm; head -c 5 /etc/passwd; echo; ls -d /dev/null; exit 3"
    direct = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    served = ioasid_run("sh", "-c", script)
    assert (served.returncode, served.stdout, served.stderr) == (
        direct.returncode,
        direct.stdout,
        direct.stderr,
    )


def test_a_filter_that_cannot_be_installed_is_reported_before_the_program_runs() -> None:
    inner = [sys.executable, "-m", "ioasid.cli", "run", "--", "sh", "-c", "echo ran"]
    nested = ioasid_run(*inner)
    assert nested.returncode == 126
    assert "ran" not in nested.stdout
    assert "already under a seccomp listener" in nested.stderr


def test_a_missing_program_is_reported() -> None:
    r = ioasid_run("/nonexistent/program")
    assert r.returncode == 127
    assert "not found" in r.stderr


@pytest.mark.oracle
def test_raw_ioctls_with_bad_input_answer_as_the_in_process_backend(backend: ModuleType) -> None:
    """The same calls, byte for byte, as the in-process backend answers them: EFAULT where
    it gives it, fds passed in structs resolved in the caller's table (EBADF, EBADFD,
    EINVAL for the wrong kind), the access fd at the number the kernel gives and its release
    on the last close (of a dup). On ``--backend=linux`` the program runs on the kernel."""
    program = str(PROGRAMS / "ioctls.py")
    cdev = edu.cdev_path(backend)
    inproc = subprocess.run(
        [sys.executable, program, "--inproc"], capture_output=True, text=True, timeout=120
    )
    assert inproc.returncode == 0, inproc.stderr
    if backend.NAME == "sim":
        served = ioasid_run(sys.executable, program, cdev)
    else:
        served = subprocess.run([sys.executable, program, cdev], capture_output=True, text=True)
    assert served.returncode == 0, served.stderr
    assert served.stdout == inproc.stdout
    assert "errno 14" in served.stdout and "destroy it after the last close: 0" in served.stdout


FAULTQ_OUT = (
    "idle [('fault fd', 4)]\nnothing queued [] True\nqueued [('fault fd', 1)]\n"
    "read 40 0xdeadb000 1\nafter the read []\n"
    "woken by another thread's fault [[('fault fd', 1)]] True\nanswered 8\n"
)


@pytest.mark.oracle
def test_fault_queue_poll_read_write(backend: ModuleType) -> None:
    """A fault fd: writable always, readable while a fault waits (``poll`` with a timeout
    waits, a fault another thread triggers wakes it), one record read, the answer written."""
    argv = [sys.executable, str(PROGRAMS / "faultq.py")]
    r = ioasid_run(*argv) if backend.NAME == "sim" else subprocess.run(
        argv, capture_output=True, text=True, timeout=120
    )  # fmt: skip
    assert (r.returncode, r.stdout) == (0, FAULTQ_OUT), r.stderr


PROCS = {
    "fork": "parent 1\nchild own 1\nchild inherited 2\nchild exit 3\nparent after 3\n",
    "threads": "ids 100 distinct 100 min 1 max 100\n",
    "exec": f"before 1 1\nkept 2\ngone -{errno.EBADF}\nnew fd is the freed number True 1\n",
    "failnth": "read unarmed b'0\\n'\nwrite 5 1\nread b'5\\n' b'\\n' b'5'\n"
    "write b'abc' errno 22\nwrite b'-1' errno 22\nwrite b'4294967296' errno 34\n"
    "thread-self b'5\\n' b''\nhex b'16\\n'\ndisarmed b'0\\n'\n",
    "debugfs": "fail* ['fail_iommufd', 'fail_page_alloc', 'fail_usercopy', 'failslab']\n"
    "wrote 1\nreads back N\n",
    "status": "['VmLck:', 'VmPin:']\nName line kept True\n",
    "mmap": f"private errno {errno.EINVAL}\nexec errno {errno.EPERM}\n"
    f"no object at 0 errno {errno.ENXIO}\nread errno {errno.EINVAL}\nwrite errno {errno.EINVAL}\n",
}


ON_THE_KERNEL_TOO = ("exec", "fork", "mmap", "status", "threads")
"""Cases whose output the real kernel gives too (``fail-nth`` counts the kernel's own fault
points, and its debugfs has more knobs)."""


def _procs(case: str, backend: ModuleType) -> None:
    argv = [sys.executable, str(PROGRAMS / "procs.py"), case]
    r = ioasid_run(*argv) if backend.NAME == "sim" else subprocess.run(
        argv, capture_output=True, text=True, timeout=120
    )  # fmt: skip
    assert (r.returncode, r.stdout) == (0, PROCS[case]), r.stderr


@pytest.mark.oracle
@pytest.mark.parametrize("case", ON_THE_KERNEL_TOO)
def test_processes_threads_exec_and_files(case: str, backend: ModuleType) -> None:
    """fork: the child is its own task (own context: ids from 1) and shares the inherited
    file; threads: one context, ids unique; exec: an O_CLOEXEC iommufd is released, its
    number reused; mmap/read/write of an iommufd as ``iommufd_fops``; VmPin/VmLck."""
    _procs(case, backend)


@pytest.mark.parametrize("case", sorted(set(PROCS) - set(ON_THE_KERNEL_TOO)))
def test_synthesised_files(case: str, backend: ModuleType) -> None:
    """fail-nth as ``fs/proc/base.c``; the fault-injection knobs ``iommufd_fail_nth`` uses."""
    _procs(case, backend)


def test_a_simulator_exception_is_an_errno_and_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kernel = Kernel()

    def broken_open(path: str) -> object:
        raise RuntimeError(f"boom opening {path}")

    kernel.open = broken_open  # type: ignore[assignment,method-assign]
    code = (
        "import os\ntry:\n os.open('/dev/iommu', os.O_RDWR)\nexcept OSError as e:\n"
        " raise SystemExit(e.errno)\n"
    )
    with caplog.at_level(logging.ERROR):
        status = bridge.run([sys.executable, "-c", code], kernel)
    assert status == errno.ENOTRECOVERABLE
    assert any("boom opening /dev/iommu" in r.getMessage() for r in caplog.records)


def _cc() -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (.ci/run installs gcc)")
    return cc


EDU_OUT = (
    "devid 1\nioas 2\nhwpt 3\nident 0x10000ed\ndma ok\nblocked after detach yes\nunmapped 8192\n"
)


@pytest.mark.oracle
def test_c_edu_driver(backend: ModuleType, tmp_path: Path) -> None:
    """examples/c/edu.c: bind, attach, map, DMA through the VT-d unit, check, detach — one
    binary, the same output through ``ioasid run`` and on the real kernel (the guest)."""
    exe = tmp_path / "edu"
    include = REPO / "tests/uapi/include"
    src = REPO / "examples/c/edu.c"
    cmd = [_cc(), "-Wall", "-Werror", "-O2", "-I", str(include), "-o", str(exe), str(src)]
    subprocess.run(cmd, check=True)
    if backend.NAME == "sim":
        r = ioasid_run(str(exe))
    else:
        r = subprocess.run([str(exe), edu.cdev_path(backend)], capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, EDU_OUT), r.stderr


NOT_SIMULATED: dict[str, str] = {}
"""Tests of the 7.3 binary that pass on the kernel but need what the simulator does not
implement yet; everything else that passes on 7.3 must pass through the bridge."""


HUGETLB_TESTS = (
    r"iommufd_mock_domain\.\w+_hugepage\..*|iommufd_dirty_tracking\.\w+_huge\..*"
    r"|iommufd_ioas\.\w+\.access_domain_destory|vfio_compat_mock_domain\.\w+\.huge_map"
)
"""The tests that ``mmap(MAP_HUGETLB)`` their buffer: they fail on any kernel whose
host has no hugetlb pages to give (the oracle guest reserves 64 2-MiB pages)."""


def _free_hugetlb_pages() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("HugePages_Free:"):
                return int(line.split()[1])
    return 0


def test_kernel_selftest_binary_iommufd() -> None:
    binary = SELFTESTS / "iommufd"
    if not binary.exists():
        pytest.skip(f"{binary} (the oracle's 7.3 selftest build) is not on this machine")
    r = ioasid_run(str(binary), timeout=600)
    got = dict(
        (m.group(3), m.group(1) is None)
        for m in re.finditer(r"^(not )?ok (\d+) (\S+)", r.stdout, re.M)
    )
    with open(SELFTESTS / "results.tsv") as f:
        kernel = {
            row["test"]: row["result"]
            for row in csv.DictReader(f, delimiter="\t")
            if row["binary"] == "iommufd"
        }
    not_here = dict(NOT_SIMULATED)
    if _free_hugetlb_pages() < 64:
        # as on the guest without its reservation: mmap(MAP_HUGETLB) fails in the binary
        not_here[HUGETLB_TESTS] = "this host has fewer than 64 free hugetlb pages"
    expected = [
        t
        for t, res in kernel.items()
        if res == "PASS" and not any(re.fullmatch(p, t) for p in not_here)
    ]
    failed = [t for t in expected if not got.get(t)]
    assert not failed, f"{len(failed)} tests that pass on 7.3 fail through the bridge: {failed}"
    assert sum(got.values()) >= 210


def test_kernel_selftest_binary_iommufd_fail_nth(tmp_path: Path) -> None:
    """``iommufd_fail_nth`` 8/8 with injection taking place: the debugfs knobs are served
    (no test skips), ``fail-nth`` is armed, read back and disarmed around every call, and
    the simulator's fault points fire (the bridge's log names each injected failure)."""
    binary = SELFTESTS / "iommufd_fail_nth"
    if not binary.exists():
        pytest.skip(f"{binary} (the oracle's 7.3 selftest build) is not on this machine")
    log = tmp_path / "bridge.log"
    cmd = [sys.executable, "-m", "ioasid.cli", "run", "-v", "--log", str(log), "--"]
    r = subprocess.run([*cmd, str(binary)], capture_output=True, text=True, timeout=600)
    results = dict(
        (m.group(3), m.group(1) is None)
        for m in re.finditer(r"^(not )?ok (\d+) (\S+)", r.stdout, re.M)
    )
    assert len(results) == 8 and all(results.values()), r.stdout
    assert "# SKIP" not in r.stdout
    injected = log.read_text().count("fail-nth:")
    assert injected > 0, "no fault was injected"


def test_topology_option_boots_that_host(tmp_path: Path) -> None:
    """``--topology FILE``: the program sees that host's cdevs, and only those."""
    topo = tmp_path / "host.yaml"
    topo.write_text(
        "source: one edu\ndevices:\n"
        '  - {bdf: "0000:00:00.0", id: "8086:2020", class: "0600", pcie_type: none,\n'
        '     parent: root_bus, name: "Host bridge"}\n'
        '  - {bdf: "0000:00:10.0", id: "1234:11e8", class: "00ff",\n'
        "     pcie_type: rc_integrated_endpoint, parent: root_bus, driver: vfio-pci,\n"
        '     name: "QEMU edu"}\n'
    )
    code = (
        "import os\nfor n in (0, 1):\n try:\n  os.open(f'/dev/vfio/devices/vfio{n}', os.O_RDWR)\n"
        "  print(n, 'ok')\n except OSError as e:\n  print(n, e.errno)\n"
    )
    cmd = [sys.executable, "-m", "ioasid.cli", "run", "--topology", str(topo), "--"]
    one = subprocess.run([*cmd, sys.executable, "-c", code], capture_output=True, text=True)
    default = ioasid_run(sys.executable, "-c", code)
    assert one.stdout == f"0 ok\n1 {errno.ENOENT}\n", one.stderr
    assert default.stdout == "0 ok\n1 ok\n", default.stderr
