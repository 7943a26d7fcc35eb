"""Running a seed on backends in lockstep, and replaying a record on one backend."""

from __future__ import annotations

from collections.abc import Sequence

from ioasid.backends.base import Handle
from ioasid.testing.differential.calls import Call, Opener
from ioasid.testing.differential.execution import Fds, UserMemory, close_fds, execute
from ioasid.testing.differential.generation import Generator
from ioasid.testing.differential.report import DiffResult, Divergence, Step, first_difference


def run_differential(
    seed: int,
    openers: Sequence[Opener],
    *,
    names: Sequence[str] = ("A", "B"),
    calls: int = 300,
    probe: bool = True,
    stop_at_divergence: bool = True,
    memory: UserMemory | None = None,
    devices: bool = False,
) -> DiffResult:
    """Generate ``calls`` ioctls from ``seed`` and run each on every backend in lockstep.

    ``openers`` return fresh handles (two for a comparison; one just records). The generator
    follows backend A's answers. Stops after the first divergence unless told otherwise.
    ``devices`` mixes in the mock driver's devices, HWPTs, dirty tracking and access
    objects (:attr:`Generator.DEVICE_OPS`); the plain mode's sequences stay as they were.
    """
    own_memory = memory is None
    mem = UserMemory(devices=devices) if memory is None else memory
    handles = [open_() for open_ in openers]
    fds: list[Fds] = [{} for _ in handles]
    gen = Generator(seed, devices=devices)
    steps: list[Step] = []
    divergence: Divergence | None = None
    try:
        for i in range(calls):
            call = gen.next_call()
            step = _run_step(i, "call", call, handles, mem, fds)
            gen.observe(call, step.results[0])
            if probe:
                _run_probes(step, gen.probe_calls(), handles, mem, fds)
            steps.append(step)
            if len(handles) > 1 and divergence is None:
                divergence = first_difference(step)
                if divergence is not None and stop_at_divergence:
                    break
        if divergence is None or not stop_at_divergence:
            for j, call in enumerate(gen.final_calls()):
                step = _run_step(calls + j, "final", call, handles, mem, fds)
                steps.append(step)
                if len(handles) > 1 and divergence is None:
                    divergence = first_difference(step)
                    if divergence is not None and stop_at_divergence:
                        break
    finally:
        for table in fds:
            close_fds(table)
        for h in handles:
            h.close()
        if own_memory:
            mem.close()
    return DiffResult(seed, tuple(names), steps, divergence, devices)


def _run_step(
    index: int,
    phase: str,
    call: Call,
    handles: Sequence[Handle],
    mem: UserMemory,
    fds: Sequence[Fds],
) -> Step:
    return Step(
        index, phase, call, [execute(h, mem, call, t) for h, t in zip(handles, fds, strict=True)]
    )


def _run_probes(
    step: Step,
    probes: list[Call],
    handles: Sequence[Handle],
    mem: UserMemory,
    fds: Sequence[Fds],
) -> None:
    step.probes = probes
    step.probe_results = [
        [execute(h, mem, p, t) for h, t in zip(handles, fds, strict=True)] for p in probes
    ]


def replay(
    recorded: DiffResult,
    opener: Opener,
    *,
    column: int = 0,
    name: str = "replay",
    memory: UserMemory | None = None,
) -> DiffResult:
    """Re-run the calls and probes of ``recorded`` on one backend and compare them with the
    recorded results of backend ``column`` (e.g. a guest run of ``linux`` against the sim
    here). The result's backend A is the recording, B the replay."""
    own_memory = memory is None
    mem = UserMemory(devices=recorded.devices) if memory is None else memory
    handle = opener()
    fds: Fds = {}
    steps: list[Step] = []
    divergence: Divergence | None = None
    try:
        for old in recorded.steps:
            result = execute(handle, mem, old.call, fds)
            step = Step(old.index, old.phase, old.call, [old.results[column], result])
            step.probes = old.probes
            step.probe_results = [
                [pr[column], execute(handle, mem, p, fds)]
                for p, pr in zip(old.probes, old.probe_results, strict=True)
            ]
            steps.append(step)
            if divergence is None:
                divergence = first_difference(step)
                if divergence is not None:
                    break
    finally:
        close_fds(fds)
        handle.close()
        if own_memory:
            mem.close()
    return DiffResult(
        recorded.seed, (recorded.names[column], name), steps, divergence, recorded.devices
    )


def backend_opener(name: str, path: str = "/dev/iommu") -> Opener:
    """An opener for ``ioasid.backends.get(name)``: each call opens a fresh handle."""
    from ioasid import backends

    mod = backends.get(name)

    def open_() -> Handle:
        handle: Handle = mod.open(path)
        return handle

    return open_
