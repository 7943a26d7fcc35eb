"""The record of a run: each step's call and outcomes per backend, the first divergence,
JSON in and out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from ioasid.testing.differential.calls import Call, Json


@dataclass
class Step:
    """One generated call (or final check) with both backends' outcomes and probes."""

    index: int
    phase: str
    call: Call
    results: list[Json]
    probes: list[Call] = field(default_factory=list)
    probe_results: list[list[Json]] = field(default_factory=list)

    def to_json(self) -> Json:
        return {
            "index": self.index,
            "phase": self.phase,
            "call": self.call.to_json(),
            "results": self.results,
            "probes": [p.to_json() for p in self.probes],
            "probe_results": self.probe_results,
        }

    @classmethod
    def from_json(cls, d: Json) -> Step:
        return cls(
            d["index"],
            d["phase"],
            Call.from_json(d["call"]),
            d["results"],
            [Call.from_json(p) for p in d.get("probes", [])],
            d.get("probe_results", []),
        )


@dataclass
class Divergence:
    index: int
    phase: str
    call: Call
    a: Json
    b: Json
    probe: Call | None = None

    def describe(self, names: Sequence[str] = ("A", "B")) -> str:
        where = f"call #{self.index} ({self.phase})"
        what = self.call.describe()
        if self.probe is not None:
            what += f"\n    probe after it: {self.probe.describe()}"
        return (
            f"first divergence at {where}:\n    {what}\n"
            f"    {names[0]}: {json.dumps(self.a, sort_keys=True)}\n"
            f"    {names[1]}: {json.dumps(self.b, sort_keys=True)}"
        )

    def to_json(self) -> Json:
        return {
            "index": self.index,
            "phase": self.phase,
            "call": self.call.to_json(),
            "a": self.a,
            "b": self.b,
            "probe": self.probe.to_json() if self.probe else None,
        }


@dataclass
class DiffResult:
    seed: int | None
    names: tuple[str, ...]
    steps: list[Step]
    divergence: Divergence | None
    devices: bool = False

    @property
    def agree(self) -> bool:
        return self.divergence is None

    def summary(self) -> str:
        n = sum(1 for s in self.steps if s.phase == "call")
        head = f"seed {self.seed}: {n} calls, {len(self.steps) - n} final checks"
        if self.divergence is None:
            return f"{head}: agree ({' vs '.join(self.names)})"
        return f"{head}: DIVERGE\n  " + self.divergence.describe(self.names).replace("\n", "\n  ")

    def errno_histogram(self) -> dict[str, int]:
        hist: dict[str, int] = {}
        for s in self.steps:
            key = f"{s.call.op}:{s.results[0].get('errno', 'ok')}"
            hist[key] = hist.get(key, 0) + 1
        return hist

    def to_json(self) -> Json:
        return {
            "seed": self.seed,
            "names": list(self.names),
            "agree": self.agree,
            "devices": self.devices,
            "divergence": self.divergence.to_json() if self.divergence else None,
            "steps": [s.to_json() for s in self.steps],
        }

    @classmethod
    def from_json(cls, d: Json) -> DiffResult:
        div = d.get("divergence")
        divergence = None
        if div:
            probe = Call.from_json(div["probe"]) if div.get("probe") else None
            divergence = Divergence(
                div["index"], div["phase"], Call.from_json(div["call"]), div["a"], div["b"], probe
            )
        return cls(
            d.get("seed"),
            tuple(d["names"]),
            [Step.from_json(s) for s in d["steps"]],
            divergence,
            bool(d.get("devices", False)),
        )


def first_difference(step: Step) -> Divergence | None:
    a, b = step.results[0], step.results[1]
    if a != b:
        return Divergence(step.index, step.phase, step.call, a, b)
    for probe, (pa, pb) in zip(step.probes, step.probe_results, strict=True):
        if pa != pb:
            return Divergence(step.index, step.phase, step.call, pa, pb, probe)
    return None
