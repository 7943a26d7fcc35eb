"""The fast reader for plain block YAML (``files._fast_block_yaml``) must read every text it
accepts exactly as the YAML loader does, and give up (``None``) on everything else."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ioasid.topology import default_host, dump, files
from ioasid.topology.synthetic import synthetic_fabric


def _loader_result(text: str) -> tuple[str, str]:
    try:
        return ("ok", repr(yaml.load(text, Loader=files._BoundedSafeLoader)))
    except Exception as e:
        return ("error", type(e).__name__)


def _agree(text: str) -> bool:
    """True when the fast reader took the text (and agreed), False when it gave up."""
    try:
        fast = files._fast_block_yaml(text)
    except ValueError:
        assert _loader_result(text)[0] == "error"
        return True
    if fast is None:
        return False
    assert _loader_result(text) == ("ok", repr(fast)), text
    return True


def test_dumped_topologies_take_the_fast_path() -> None:
    for t in (default_host(), synthetic_fabric(400, 3)):
        text = yaml.safe_dump(dump(t), sort_keys=False)
        assert _agree(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\nb:\n- x\n- 'y'''\nc:\n  d: 0x5f\n  e: ~\nf: .inf\ng: -3\nh: 1_000\non: yes\n",
        "- a\n- b: 1\n  c: 2\n- []\n",
        "a:\n\nb: {}\n# comment\n  # indented comment\n",
        "x:\n  a:\n  - 1\n  b: 2\nc: 0b101\n",
        "- a:\n- b\n",
        "Yes: NO\nOFF: Null\nx: NULL\ny: On\nz: .NaN\nw: -.inf\nv: +0x1f\nu: -0b11\n",
        "a: x[1], y=2 it's\nb: b:c\nc: -x\nd: 00:01.0\ne: 0604\nf: 2024-02-30\n",
    ],
)
def test_fast_path_agrees(text: str) -> None:
    assert _agree(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: hello\n  world\n",  # multi-line plain scalar
        "a: 1\n  b: 2\n",  # error
        "a: x #c\n",  # comment after a value
        "a: x: y\n",
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "a: [1, 2]\n",
        "a: |\n  text\n",
        "---\na: 1\n",
        "a:\n\t- 1\n",
        'a: "x\\ty"\n',
        "<<: {a: 1}\n",
        "- - x\n",
        "  a: 1\n",
        "a: 1\n- b\n",
        "a:\n  - x\n  b: 1\n",
    ],
)
def test_fast_path_gives_up(text: str) -> None:
    assert not _agree(text)


_keys = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,8}", fullmatch=True),
    st.sampled_from(["on", "off", "yes", "null", "true", "bdf", "x-y"]),
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**66), max_value=2**66),
    st.floats(),
    st.text(max_size=10),
    st.text(alphabet="0123456789abcdefx:._- ,'\"#[]{}", max_size=10),
    st.sampled_from(["0000:00:01.0", "01:00.0", "0604", "~", "-", "0x", "1_0", ".5", "+1"]),
)
_data = st.recursive(
    _scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(_keys, kids, max_size=4)),
    max_leaves=15,
)


@settings(max_examples=400, deadline=None)
@given(data=_data, flow=st.sampled_from([False, None]), width=st.sampled_from([80, 20]))
def test_fuzz_fast_path_equals_loader(data: Any, flow: bool | None, width: int) -> None:
    _agree(yaml.safe_dump(data, default_flow_style=flow, width=width, sort_keys=False))


@settings(max_examples=400, deadline=None)
@given(
    base=_data,
    edits=st.lists(
        st.tuples(
            st.integers(0, 400),
            st.sampled_from([" ", "  ", "- ", ":", ": ", "\n", "#", "'", '"', "x", "0", "\n- "]),
            st.integers(0, 3),
        ),
        max_size=5,
    ),
)
def test_fuzz_fast_path_on_mutated_text(base: Any, edits: list[tuple[int, str, int]]) -> None:
    text = yaml.safe_dump(base, default_flow_style=False, sort_keys=False)
    for pos, ins, dele in edits:
        pos %= max(len(text), 1)
        text = text[:pos] + ins + text[pos + dele :]
    _agree(text)
