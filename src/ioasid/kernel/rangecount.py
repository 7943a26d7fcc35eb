"""A step function over page indexes: how many users hold each page.

Pins are counted per page the way ``pages->pinned_pfns`` shares a pin between every area
and access that covers the page, but stored as ranges so a 1 TiB mapping costs O(1).
"""

from __future__ import annotations

from sortedcontainers import SortedList


class RangeCount:
    """``count(i)`` for every integer ``i``; changed over whole ranges at once.

    The steps are a sorted list of keys (where the count changes) and a dict of their
    counts; adjacent steps never hold the same count (key 0 always exists). Both are cheap
    to create: every pinned mapping has one."""

    __slots__ = ("_keys", "_vals", "nonzero")

    def __init__(self) -> None:
        self._keys = SortedList()
        self._keys.add(0)
        self._vals: dict[int, int] = {0: 0}
        self.nonzero = 0

    def add(self, first: int, last: int, delta: int) -> list[tuple[int, int]]:
        """Add ``delta`` on ``[first, last]``; return the runs that became held or free
        (one per step of the old counts that crossed zero). Nothing changes on error."""
        keys, vals = self._keys, self._vals
        end = last + 1
        lo = keys.bisect_right(first) - 1
        hi = keys.bisect_right(end) - 1
        if lo == hi and delta:
            return self._add_within(first, end, delta, lo)
        if hi == lo + 1 and delta and keys[lo] == first and keys[hi] == end:
            return self._add_step(first, end, delta, lo)
        inner = [k for k in keys.islice(lo + 1, hi + 1) if k < end]
        seg_keys = [first, *inner]
        seg_vals = [vals[keys[lo]], *(vals[k] for k in inner)]
        if delta < 0:
            for k, v in zip(seg_keys, seg_vals, strict=True):
                if v + delta < 0:
                    raise ValueError(f"page {k} would have {v + delta} users")
        runs: list[tuple[int, int]] = []
        bounds = [*inner, end]
        for k, v, b in zip(seg_keys, seg_vals, bounds, strict=True):
            if (v == 0) != (v + delta == 0):
                runs.append((k, b - 1))
        changed = sum(b - a + 1 for a, b in runs)
        self.nonzero += changed if delta > 0 else -changed
        v_end = vals[keys[hi]]
        lo_key = keys[lo]
        if lo_key == first:
            before = vals[keys[lo - 1]] if lo > 0 else None
        else:
            before = vals[lo_key]
        doomed = inner
        if lo_key == first:
            doomed = [first, *doomed]
        if keys[hi] == end and end != first:
            doomed.append(end)
        for k in doomed:
            keys.remove(k)
            del vals[k]
        prev = before
        for k, v in zip(seg_keys, seg_vals, strict=True):
            nv = v + delta
            if k == 0 or nv != prev:
                keys.add(k)
                vals[k] = nv
                prev = nv
        if v_end != prev:
            keys.add(end)
            vals[end] = v_end
        return runs

    def _add_within(self, first: int, end: int, delta: int, lo: int) -> list[tuple[int, int]]:
        """:meth:`add` when ``[first, end]`` holds no step but maybe one at ``first``."""
        keys, vals = self._keys, self._vals
        lo_key = keys[lo]
        v = vals[lo_key]
        nv = v + delta
        if nv < 0:
            raise ValueError(f"page {first} would have {nv} users")
        if lo_key == first:
            if first != 0 and lo > 0 and vals[keys[lo - 1]] == nv:
                keys.remove(first)
                del vals[first]
            else:
                vals[first] = nv
        else:
            keys.add(first)
            vals[first] = nv
        keys.add(end)
        vals[end] = v
        if (v == 0) == (nv == 0):
            return []
        self.nonzero += end - first if delta > 0 else first - end
        return [(first, end - 1)]

    def _add_step(self, first: int, end: int, delta: int, lo: int) -> list[tuple[int, int]]:
        """:meth:`add` on exactly one whole step ``[first, end)`` (an unpin of what one
        pin made)."""
        keys, vals = self._keys, self._vals
        v = vals[first]
        nv = v + delta
        if nv < 0:
            raise ValueError(f"page {first} would have {nv} users")
        left = vals[keys[lo - 1]] if lo > 0 else None
        if first != 0 and left == nv:
            keys.remove(first)
            del vals[first]
        else:
            vals[first] = nv
            left = nv
        if vals[end] == left:
            keys.remove(end)
            del vals[end]
        if (v == 0) == (nv == 0):
            return []
        self.nonzero += end - first if delta > 0 else first - end
        return [(first, end - 1)]

    def get(self, i: int) -> int:
        keys = self._keys
        return self._vals[keys[keys.bisect_right(i) - 1]]

    def ranges(self) -> list[tuple[int, int, int]]:
        """``(first, last, count)`` for every held run."""
        keys = list(self._keys)
        vals = self._vals
        out = []
        for j, k in enumerate(keys):
            v = vals[k]
            if v:
                end = keys[j + 1] - 1 if j + 1 < len(keys) else (1 << 64) - 1
                out.append((k, end, v))
        return out

    def spans(self, first: int, last: int) -> list[tuple[int, int, int]]:
        """``(a, b, count)`` runs of constant count covering ``[first, last]`` exactly."""
        keys_all = self._keys
        idx = keys_all.bisect_right(first) - 1
        keys = list(keys_all.islice(idx, keys_all.bisect_right(last)))
        vals = self._vals
        out: list[tuple[int, int, int]] = []
        for j, k in enumerate(keys):
            a = max(k, first)
            b = keys[j + 1] - 1 if j + 1 < len(keys) else last
            out.append((a, min(b, last), vals[k]))
        return out
