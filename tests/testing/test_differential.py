"""The differential harness: runs end to end, is deterministic, finds injected divergences."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, cast

import pytest

from ioasid import uapi
from ioasid.backends import sim
from ioasid.backends.base import Handle, IoctlArg
from ioasid.testing import oracle
from ioasid.testing.differential import (
    DiffResult,
    UserMemory,
    backend_opener,
    replay,
    run_differential,
)

SEEDS = (0, 1, 2)


class Wrapper:
    """The parts of :class:`Handle` a wrapper passes through unchanged."""

    inner: Handle

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def close(self) -> None:
        self.inner.close()


class FlipErrno(Wrapper):
    """A handle that answers the ``nth`` failure of ``request`` with ``new_errno`` instead."""

    def __init__(self, inner: Handle, request: int, old: int, new: int, nth: int) -> None:
        self.inner, self.request, self.old, self.new, self.nth = inner, request, old, new, nth
        self.path = inner.path
        self.seen = 0

    def ioctl(self, request: int, arg: IoctlArg = 0) -> int:
        try:
            return self.inner.ioctl(request, arg)
        except OSError as e:
            if request == self.request and e.errno == self.old:
                self.seen += 1
                if self.seen == self.nth:
                    raise OSError(self.new, os.strerror(self.new)) from None
            raise


class BumpAllocId(Wrapper):
    """A handle whose ``nth`` successful IOMMU_IOAS_ALLOC reports an id one too high."""

    def __init__(self, inner: Handle, nth: int) -> None:
        self.inner, self.nth, self.path, self.seen = inner, nth, inner.path, 0

    def ioctl(self, request: int, arg: IoctlArg = 0) -> int:
        ret = self.inner.ioctl(request, arg)
        if request == uapi.IOMMU_IOAS_ALLOC and isinstance(arg, bytearray):
            self.seen += 1
            if self.seen == self.nth:
                arg[8] += 1
        return ret


def _sim_pair(seed: int, **kw: object) -> DiffResult:
    sim.reset()
    return run_differential(
        seed, [backend_opener("sim"), backend_opener("sim")], names=("sim", "sim"), **kw
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", SEEDS)
def test_sim_vs_sim_agrees(seed: int) -> None:
    result = _sim_pair(seed)
    assert result.agree, result.summary()
    calls = [s for s in result.steps if s.phase == "call"]
    assert len(calls) == 300
    assert any(s.phase == "final" for s in result.steps)
    errnos = {s.results[0].get("errno", "ok") for s in calls}
    assert {"ok", "ENOENT", "EINVAL", "EEXIST", "EOVERFLOW"} <= errnos
    ops = {s.call.op for s in calls}
    assert {"IOMMU_IOAS_ALLOC", "IOMMU_IOAS_MAP", "IOMMU_IOAS_UNMAP", "IOMMU_IOAS_COPY"} <= ops


def test_sequence_is_a_function_of_the_seed() -> None:
    first = _sim_pair(7, calls=200).to_json()
    again = _sim_pair(7, calls=200).to_json()
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    other = _sim_pair(8, calls=200).to_json()
    assert [s["call"] for s in other["steps"]] != [s["call"] for s in first["steps"]]


def test_generator_covers_the_interesting_cases() -> None:
    notes: set[str] = set()
    errnos: set[tuple[str, str]] = set()
    for seed in range(6):
        result = _sim_pair(seed, probe=False)
        for s in result.steps:
            notes.add(s.call.note)
            errnos.add((s.call.op, s.results[0].get("errno", "ok")))
    assert ("IOMMU_IOAS_MAP", "EEXIST") in errnos
    assert ("IOMMU_IOAS_UNMAP", "ENOENT") in errnos
    assert ("IOMMU_IOAS_IOVA_RANGES", "EMSGSIZE") in errnos
    assert ("IOMMU_IOAS_MAP_FILE", "ok") in errnos
    assert ("IOMMU_IOAS_COPY", "ok") in errnos
    assert ("UNKNOWN", "ENOTTY") in errnos
    assert any(op in {"IOMMU_IOAS_MAP", "IOMMU_OPTION"} and e == "E2BIG" for op, e in errnos)
    assert any("partial removal" in n for n in notes)


def test_injected_errno_flip_is_reported_at_its_call() -> None:
    reference = _sim_pair(3)
    enoent_unmaps = [
        s.index
        for s in reference.steps
        if s.call.op == "IOMMU_IOAS_UNMAP" and s.results[0].get("errno") == "ENOENT"
    ]
    assert len(enoent_unmaps) >= 3
    sim.reset()
    opener = backend_opener("sim")
    result = run_differential(
        3,
        [
            opener,
            lambda: cast(
                Handle, FlipErrno(opener(), uapi.IOMMU_IOAS_UNMAP, errno.ENOENT, errno.EINVAL, 3)
            ),
        ],
        names=("sim", "flipped"),
    )
    div = result.divergence
    assert div is not None
    assert div.index == enoent_unmaps[2]
    assert div.phase == "call" and div.probe is None
    assert div.call.op == "IOMMU_IOAS_UNMAP"
    assert div.a["errno"] == "ENOENT" and div.b["errno"] == "EINVAL"
    assert f"call #{div.index}" in result.summary()
    assert result.steps[-1].index == div.index


def test_injected_output_change_is_reported() -> None:
    reference = _sim_pair(4)
    allocs = [
        s.index
        for s in reference.steps
        if s.call.op == "IOMMU_IOAS_ALLOC" and "ret" in s.results[0] and s.call.size is None
    ]
    sim.reset()
    opener = backend_opener("sim")
    result = run_differential(4, [opener, lambda: cast(Handle, BumpAllocId(opener(), 2))])
    div = result.divergence
    assert div is not None and div.index == allocs[1]
    assert div.b["out"]["out_ioas_id"] == div.a["out"]["out_ioas_id"] + 1


def test_json_round_trip_and_replay() -> None:
    recorded = _sim_pair(5, calls=120)
    text = json.dumps(recorded.to_json())
    loaded = DiffResult.from_json(json.loads(text))
    assert loaded.to_json() == recorded.to_json()
    sim.reset()
    with UserMemory() as mem:  # another region: symbolic pointers make that irrelevant
        again = replay(loaded, backend_opener("sim"), memory=mem)
    assert again.agree, again.summary()
    assert len(again.steps) == len(recorded.steps)


def test_replay_finds_a_doctored_recording() -> None:
    recorded = _sim_pair(6, calls=100).to_json()
    target = next(
        s
        for s in recorded["steps"]
        if s["call"]["op"] == "IOMMU_IOAS_MAP" and "ret" in s["results"][0]
    )
    target["results"][0] = {"errno": "EFAULT"}
    sim.reset()
    result = replay(DiffResult.from_json(recorded), backend_opener("sim"))
    assert result.divergence is not None and result.divergence.index == target["index"]


def test_oracle_cli_differential_sim_vs_sim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "d.json"
    status = oracle.main(
        [
            "differential",
            "--a",
            "sim",
            "--b",
            "sim",
            "--seeds",
            "2",
            "--calls",
            "60",
            "--json",
            str(out),
        ]
    )
    assert status == 0
    text = capsys.readouterr().out
    assert "2/2 seeds agree" in text
    data = json.loads(out.read_text())
    assert data["agreed"] == 2 and len(data["runs"]) == 2


def test_oracle_cli_record_and_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    assert (
        oracle.main(
            ["record", "--backend", "sim", "--seeds", "2", "--calls", "50", "--json", str(out)]
        )
        == 0
    )
    assert oracle.main(["compare", "--backend", "sim", "--json", str(out)]) == 0
    assert "2/2 recorded runs agree" in capsys.readouterr().out


def test_oracle_run_wraps_run_guest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "run-guest.sh"
    script.write_text('#!/bin/sh\necho "guest got: $1"\nexit 7\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("IOASID_ORACLE_DIR", str(tmp_path))
    assert oracle.main(["run", "--", "echo", "a b"]) == 7
    assert "guest got: echo 'a b'" in capfd.readouterr().out
    monkeypatch.setenv("IOASID_ORACLE_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError):
        oracle.main(["run", "--", "true"])


@pytest.mark.oracle
@pytest.mark.parametrize("seed", range(5))
def test_sim_matches_backend(seed: int, backend_name: str) -> None:
    """With --backend=linux (in the guest): the simulator against the real kernel."""
    sim.reset()
    result = run_differential(
        seed, [backend_opener("sim"), backend_opener(backend_name)], names=("sim", backend_name)
    )
    assert result.agree, result.summary()


# --- devices mode ---------------------------------------------------------------------------


class FlipTestOp(Wrapper):
    """A handle that answers the ``nth`` successful IOMMU_TEST_CMD of ``op`` with
    ``new_errno`` (after the real call, as a wrong result would look)."""

    def __init__(self, inner: Handle, op: int, new: int, nth: int) -> None:
        self.inner, self.op, self.new, self.nth = inner, op, new, nth
        self.path = inner.path
        self.seen = 0

    def ioctl(self, request: int, arg: IoctlArg = 0) -> int:
        ret = self.inner.ioctl(request, arg)
        if (
            request == uapi.IOMMU_TEST_CMD
            and isinstance(arg, bytearray)
            and int.from_bytes(arg[4:8], "little") == self.op
        ):
            self.seen += 1
            if self.seen == self.nth:
                raise OSError(self.new, os.strerror(self.new))
        return ret


class CorruptRead(Wrapper):
    """A handle whose ``nth`` successful ACCESS_RW read returns one flipped byte."""

    def __init__(self, inner: Handle, nth: int) -> None:
        self.inner, self.nth, self.path, self.seen = inner, nth, inner.path, 0

    def ioctl(self, request: int, arg: IoctlArg = 0) -> int:
        ret = self.inner.ioctl(request, arg)
        if request == uapi.IOMMU_TEST_CMD and isinstance(arg, bytearray):
            cmd = uapi.iommu_test_cmd.from_bytes(bytes(arg[: len(arg)]))
            rw = cmd.access_rw
            if cmd.op == uapi.IOMMU_TEST_OP_ACCESS_RW and not rw.flags & 1:
                self.seen += 1
                if self.seen == self.nth:
                    p = ctypes.c_uint8.from_address(rw.uptr)
                    p.value ^= 0xFF
        return ret


def _sim_devices(seed: int, **kw: object) -> DiffResult:
    return _sim_pair(seed, devices=True, **kw)


@pytest.mark.parametrize("seed", SEEDS)
def test_devices_mode_sim_vs_sim_agrees(seed: int) -> None:
    result = _sim_devices(seed)
    assert result.agree, result.summary()
    assert result.devices
    calls = [s for s in result.steps if s.phase == "call"]
    assert len(calls) == 300
    ops = {s.call.op for s in calls}
    assert "IOMMU_IOAS_MAP" in ops and "IOMMU_TEST_OP_MOCK_DOMAIN" in ops
    final = [s for s in result.steps if s.phase == "final"]
    assert final[-1].call.op == "IOMMU_TEST_OP_MD_CHECK_REFS" and "ret" in final[-1].results[0]


def test_devices_mode_covers_the_device_ops() -> None:
    seen: set[tuple[str, str]] = set()
    data_ops: set[str] = set()
    symbols: set[str] = set()
    for seed in range(8):
        result = _sim_devices(seed, probe=False)
        assert result.agree, result.summary()
        for s in result.steps:
            r = s.results[0]
            seen.add((s.call.op, r.get("errno", "ok")))
            if "data" in r and "ret" in r:
                data_ops.add(s.call.op)
            fd = r.get("out", {}).get("create_access.out_access_fd")
            if isinstance(fd, str):
                symbols.add(fd)
    for op in (
        "IOMMU_TEST_OP_MOCK_DOMAIN",
        "IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS",
        "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE",
        "IOMMU_HWPT_ALLOC",
        "IOMMU_GET_HW_INFO",
        "IOMMU_TEST_OP_MD_CHECK_MAP",
        "IOMMU_TEST_OP_MD_CHECK_REFS",
        "IOMMU_TEST_OP_ADD_RESERVED",
        "IOMMU_HWPT_SET_DIRTY_TRACKING",
        "IOMMU_HWPT_GET_DIRTY_BITMAP",
        "IOMMU_TEST_OP_DIRTY",
        "IOMMU_TEST_OP_CREATE_ACCESS",
        "IOMMU_TEST_OP_ACCESS_PAGES",
        "IOMMU_TEST_OP_ACCESS_RW",
        "IOMMU_TEST_OP_DESTROY_ACCESS_PAGES",
        "CLOSE",
    ):
        assert (op, "ok") in seen, op
    assert ("IOMMU_IOAS_MAP", "EFAULT") in seen  # pinning into the hole / a bad user_va
    assert ("IOMMU_IOAS_MAP_FILE", "EINVAL") in seen
    assert ("IOMMU_TEST_OP_MD_CHECK_REFS", "EFAULT") in seen
    assert ("IOMMU_TEST_OP_ACCESS_RW", "EBADFD") in seen
    assert {"IOMMU_TEST_OP_ACCESS_RW", "IOMMU_GET_HW_INFO"} <= data_ops
    assert symbols and all(s.startswith("access") for s in symbols)


def test_plain_mode_sequence_unchanged_by_devices_mode() -> None:
    """The devices mode adds ops; the plain mode's calls for a seed do not move."""
    plain = _sim_pair(9, calls=80, probe=False)
    ops = {s.call.op for s in plain.steps}
    assert not any(op.startswith("IOMMU_TEST_OP_") or op == "CLOSE" for op in ops)
    assert not plain.devices
    devices = _sim_devices(9, calls=80, probe=False)
    assert [s.call for s in devices.steps] != [s.call for s in plain.steps]


def test_devices_mode_injected_errno_in_a_device_op_is_caught() -> None:
    op = uapi.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE
    reference = _sim_devices(2)
    ok = [
        s.index
        for s in reference.steps
        if s.call.op == "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE" and "ret" in s.results[0]
    ]
    assert len(ok) >= 2
    sim.reset()
    opener = backend_opener("sim")
    result = run_differential(
        2,
        [opener, lambda: cast(Handle, FlipTestOp(opener(), op, errno.EBUSY, 2))],
        names=("sim", "flipped"),
        devices=True,
    )
    div = result.divergence
    assert div is not None and div.index == ok[1] and div.probe is None
    assert div.call.op == "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE"
    assert "ret" in div.a and div.b["errno"] == "EBUSY"


def test_devices_mode_wrong_data_read_is_caught() -> None:
    for seed in range(10):
        reference = _sim_devices(seed, probe=False)
        reads = [
            s.index
            for s in reference.steps
            if s.call.op == "IOMMU_TEST_OP_ACCESS_RW"
            and "ret" in s.results[0]
            and not s.call.fields["access_rw.flags"] & 1
        ]
        if reads:
            break
    assert reads
    sim.reset()
    opener = backend_opener("sim")
    result = run_differential(
        seed,
        [opener, lambda: cast(Handle, CorruptRead(opener(), 1))],
        devices=True,
        probe=False,
    )
    div = result.divergence
    assert div is not None and div.index == reads[0]
    assert div.a["out"] == div.b["out"] and div.a["data"] != div.b["data"]


def test_devices_mode_json_round_trip_and_replay() -> None:
    """Recorded on one sim (two sims in one process share the pages' pin counts, so a
    pair's MD_CHECK_REFS answers are not a single kernel's)."""
    sim.reset()
    recorded = run_differential(4, [backend_opener("sim")], names=("sim",), calls=150, devices=True)
    loaded = DiffResult.from_json(json.loads(json.dumps(recorded.to_json())))
    assert loaded.devices and loaded.to_json() == recorded.to_json()
    sim.reset()
    again = replay(loaded, backend_opener("sim"))
    assert again.agree, again.summary()
    assert len(again.steps) == len(recorded.steps)


def test_oracle_cli_devices_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "d.json"
    argv = ["differential", "--a", "sim", "--b", "sim", "--devices", "--seeds", "2"]
    status = oracle.main([*argv, "--calls", "60", "--json", str(out)])
    assert status == 0
    assert "2/2 seeds agree" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["devices"] is True
    assert any(k.startswith("IOMMU_TEST_OP_") for run in data["runs"] for k in run["errnos"])
