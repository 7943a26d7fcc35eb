"""A step function over page indexes: how many users hold each page.

Pins are counted per page the way ``pages->pinned_pfns`` shares a pin between every area
and access that covers the page, but stored as ranges so a 1 TiB mapping costs O(1).
"""

from __future__ import annotations

from sortedcontainers import SortedDict


class RangeCount:
    """``count(i)`` for every integer ``i``; changed over whole ranges at once."""

    def __init__(self) -> None:
        self._steps: SortedDict = SortedDict({0: 0})
        self.nonzero = 0

    def _split(self, i: int) -> None:
        if i not in self._steps:
            idx = self._steps.bisect_right(i) - 1
            self._steps[i] = self._steps.peekitem(idx)[1]

    def add(self, first: int, last: int, delta: int) -> list[tuple[int, int]]:
        """Add ``delta`` on ``[first, last]``; return the runs that became held or free."""
        self._split(first)
        self._split(last + 1)
        runs: list[tuple[int, int]] = []
        keys = list(self._steps.irange(first, last))
        for j, k in enumerate(keys):
            end = keys[j + 1] if j + 1 < len(keys) else last + 1
            old = self._steps[k]
            new = old + delta
            if new < 0:
                raise ValueError(f"page {k} would have {new} users")
            if (old == 0) != (new == 0):
                runs.append((k, end - 1))
            self._steps[k] = new
        changed = sum(b - a + 1 for a, b in runs)
        self.nonzero += changed if delta > 0 else -changed
        self._merge(first, last + 1)
        return runs

    def _merge(self, first: int, end: int) -> None:
        idx = max(self._steps.bisect_left(first) - 1, 0)
        keys = list(self._steps.irange(self._steps.keys()[idx], end))
        prev = None
        for k in keys:
            v = self._steps[k]
            if prev is not None and v == prev and k != 0:
                del self._steps[k]
            else:
                prev = v

    def get(self, i: int) -> int:
        idx = self._steps.bisect_right(i) - 1
        return int(self._steps.peekitem(idx)[1])

    def ranges(self) -> list[tuple[int, int, int]]:
        """``(first, last, count)`` for every held run."""
        keys = list(self._steps.keys())
        out = []
        for j, k in enumerate(keys):
            v = self._steps[k]
            if v:
                end = keys[j + 1] - 1 if j + 1 < len(keys) else (1 << 64) - 1
                out.append((k, end, v))
        return out

    def spans(self, first: int, last: int) -> list[tuple[int, int, int]]:
        """``(a, b, count)`` runs of constant count covering ``[first, last]`` exactly."""
        idx = self._steps.bisect_right(first) - 1
        keys = list(self._steps.irange(self._steps.keys()[idx], last))
        out: list[tuple[int, int, int]] = []
        for j, k in enumerate(keys):
            a = max(k, first)
            b = keys[j + 1] - 1 if j + 1 < len(keys) else last
            out.append((a, min(b, last), int(self._steps[k])))
        return out
