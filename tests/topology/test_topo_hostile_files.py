"""Hostile topology files: every one ends quickly in a ``TopologyError`` naming the file and
the rule (issue 10 item 7), and no garbage makes the loader raise anything else."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ioasid.topology import TopologyError, default_host, dump, group, load
from ioasid.topology.audit import explain, report
from ioasid.topology.files import FIELDS, MAX_DEPTH, MAX_FILE_BYTES


def _write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(data, str):
        p.write_text(data)
    else:
        p.write_bytes(data)
    return p


def _refused(p: Path, match: str) -> str:
    t0 = time.monotonic()
    with pytest.raises(TopologyError, match=match) as ei:
        load(p)
    assert time.monotonic() - t0 < 5
    msg = str(ei.value)
    assert str(p) in msg
    return msg


DEV = '{"bdf": "0000:00:01.0", "id": "1234:5678", "pcie_type": "endpoint", "parent": "root_bus"'


@pytest.mark.parametrize("n", [MAX_DEPTH + 1, 1000, 100_000])
def test_deep_json_is_refused(tmp_path: Path, n: int) -> None:
    p = _write(
        tmp_path, "deep.json", '{"devices": [' + DEV + ', "name": ' + "[" * n + "]" * n + "}]}"
    )
    _refused(p, "nested deeper than")


@pytest.mark.parametrize("n", [MAX_DEPTH + 1, 1000, 100_000])
def test_deep_yaml_flow_and_block_are_refused(tmp_path: Path, n: int) -> None:
    _refused(_write(tmp_path, "flow.yaml", "devices: " + "[" * n + "]" * n), "nested deeper than")
    _refused(_write(tmp_path, "block.yaml", "devices:\n" + "- " * n + "x\n"), "nested deeper than")


def test_deep_yaml_pure_python_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libyaml the composer recurses in Python: our bound must come first."""
    from ioasid.topology import files

    monkeypatch.setattr(files, "_LOADER", None)
    monkeypatch.delattr(yaml, "CSafeLoader")
    p = _write(tmp_path, "deep.yaml", "devices: " + "[" * 5000 + "]" * 5000)
    _refused(p, "nested deeper than")
    assert files._LOADER is files._BoundedSafeLoader
    assert len(load(_write(tmp_path, "ok.yaml", yaml.safe_dump(dump(default_host()))))) > 10


def test_normal_nesting_loads(tmp_path: Path) -> None:
    p = _write(tmp_path, "ok.json", "[" + DEV + ', "x-extra": ' + "[" * 20 + "]" * 20 + "}]")
    assert len(load(p)) == 1


def test_dev_zero_and_oversized_files(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(TopologyError, match=f"larger than {MAX_FILE_BYTES} bytes"):
        load("/dev/zero")
    assert time.monotonic() - t0 < 5
    p = _write(tmp_path, "big.yaml", "devices: []\n" + "#" * 5000)
    _refused_small = pytest.raises(TopologyError, match="larger than 1000 bytes")
    with _refused_small as ei:
        load(p, max_bytes=1000)
    assert str(p) in str(ei.value)
    # a sparse file that claims 1 TiB: never trusted, never read past the cap
    sparse = tmp_path / "sparse.yaml"
    with open(sparse, "wb") as fh:
        fh.truncate(1 << 40)
    _refused(sparse, "larger than")


def test_fifo_without_writer_ends_at_once(tmp_path: Path) -> None:
    f = tmp_path / "fifo.yaml"
    os.mkfifo(f)
    _refused(f, "empty file")


def test_fifo_with_endless_writer_stops_at_the_cap(tmp_path: Path) -> None:
    f = tmp_path / "fifo.yaml"
    os.mkfifo(f)
    stop = threading.Event()

    def writer() -> None:
        try:
            with open(f, "wb") as w:
                chunk = b"# " * 32768
                while not stop.is_set():
                    w.write(chunk)
        except (BrokenPipeError, OSError):
            pass

    # the writer's open() blocks until a reader opens: start it, then read
    th = threading.Thread(target=writer, daemon=True)
    th.start()
    time.sleep(0.05)
    try:
        with pytest.raises(TopologyError, match="larger than 100000 bytes"):
            load(f, max_bytes=100_000)
    finally:
        stop.set()
        # unblock a writer still waiting in open()
        fd = os.open(f, os.O_RDONLY | os.O_NONBLOCK)
        os.close(fd)
        th.join(5)


def _laughs(levels: int) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    lines.append("devices:")
    lines.append('  - {bdf: "0000:00:01.0", id: "1234:5678", pcie_type: endpoint,')
    lines.append(f"     parent: root_bus, name: *l{levels - 1}, acs: *l{levels - 1}}}")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused(tmp_path: Path) -> None:
    msg = _refused(_write(tmp_path, "lol.yaml", _laughs(9)), "aliases expand")
    assert "refused" in msg


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    _refused(_write(tmp_path, "rec.yaml", "devices: &d [*d]\n"), "refers to itself")


def test_modest_aliases_are_fine(tmp_path: Path) -> None:
    text = (
        "full: &full {cap: 0x5f, ctl: 0}\n"
        "devices:\n"
        "  - {bdf: 0000:00:01.0, id: 1234:5678, pcie_type: root_port, parent: root_bus,"
        " acs: *full}\n"
        "  - {bdf: 0000:00:02.0, id: 1234:5678, pcie_type: root_port, parent: root_bus,"
        " acs: *full, class: 0604}\n"
    )
    t = load(_write(tmp_path, "ok.yaml", text))
    # YAML 1.1 would read 0000:00:01.0 as a base-60 number and 0604 as octal
    assert t["0000:00:02.0"].acs is not None and t["0000:00:02.0"].class_code == 0x0604


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty file"),
        (b"  \n# only a comment\n", "empty file"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"just some words", "top level"),
        (b"42", "top level"),
        (
            b'[{"bdf": "0000:00:01.0", "id": "1:2", "pcie_type": "endpoint", "parent": "root_bus",'
            b' "name": "\\ud800"}]',
            "not valid Unicode",
        ),
        (b"devices: 5", "must be a list"),
        (b"devices: [1, 2]", "must be a mapping"),
        (b"{not json", "not valid JSON"),
        (b"devices: [ {bdf: ", "not valid YAML"),
        (b"when: 2024-02-30\ndevices: {a: 1}", "must be a list"),
        (b'{"devices": [], "n": ' + b"1" * 5000 + b"}", "not valid JSON"),
        (
            b"devices:\n - bdf: [1, 2]\n   id: 1:2\n   pcie_type: endpoint\n   parent: root_bus\n",
            "bdf must be a string",
        ),
        (
            b"devices:\n - bdf: 0000:00:01.0\n   id: 1:2\n   pcie_type: {a: 1}\n"
            b"   parent: root_bus\n",
            "pcie_type must be a string",
        ),
    ],
)
def test_garbage_is_one_clear_error(tmp_path: Path, content: bytes, match: str) -> None:
    _refused(_write(tmp_path, "g.yaml", content), match)


# -- fuzzing: random data in every field, mutated files -------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["0000:00:01.0", "00:02.0", "root_bus", "endpoint", "root_port", "0x5f"]),
)
_values = st.recursive(
    _scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=6), kids, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def _device(draw: st.DrawFn) -> Any:
    base: dict[str, Any] = {
        "bdf": draw(st.sampled_from(["0000:00:01.0", "0000:01:00.0", "0000:00:1f.3"])),
        "id": "8086:1234",
        "pcie_type": draw(st.sampled_from(["root_port", "endpoint", "downstream_port", "none"])),
        "parent": draw(st.sampled_from(["root_bus", "0000:00:01.0"])),
    }
    for k in draw(st.lists(st.sampled_from(FIELDS), max_size=6)):
        base[k] = draw(_values)
    if draw(st.booleans()):
        base.pop(draw(st.sampled_from(sorted(base))))
    return base if draw(st.integers(0, 9)) else draw(_values)


_documents = st.one_of(
    st.fixed_dictionaries({"devices": st.lists(_device(), max_size=4)}),
    st.lists(_device(), max_size=4),
    _values,
)


def _load_ok_or_topology_error(p: Path) -> None:
    try:
        t = load(p)
    except TopologyError as e:
        assert str(p) in str(e) or "device #" in str(e) or ":" in str(e)
        return
    gr = group(t)  # whatever loads also groups, reports and explains
    report(gr, acs_override="downstream,multifunction")
    for b in list(t.order)[:3]:
        explain(gr, b)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=_documents, as_json=st.booleans())
def test_fuzz_random_documents(tmp_path: Path, doc: Any, as_json: bool) -> None:
    if as_json:
        p = tmp_path / "f.json"
        p.write_text(json.dumps(doc))
    else:
        p = tmp_path / "f.yaml"
        p.write_text(yaml.safe_dump(doc))
    _load_ok_or_topology_error(p)


_GOOD = yaml.safe_dump(dump(default_host()), sort_keys=False).encode()
#: what a hostile or broken file holds: YAML 1.1 timestamps that cannot exist, numbers past
#: Python's digit limit, deep nesting, aliases, tags, NULs, lone surrogates, invalid UTF-8
_TOKENS = [
    b" 2024-02-30 ",
    b" " + b"9" * 5000 + b" ",
    b"[" * 2000,
    b"- " * 1500,
    b" &a ",
    b" *a ",
    b" !!binary zz== ",
    b" !!python/object:os.system ",
    b"\x00",
    b"\xed\xa0\x80",
    b'"\\ud800"',
    b"\xff",
    b"{",
    b": ",
    b"\n  - ",
    b" 0x" + b"f" * 40 + b" ",
    b" .nan ",
]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, len(_GOOD) - 1),
            st.one_of(st.binary(max_size=4), st.sampled_from(_TOKENS)),
            st.integers(0, 4),
        ),
        min_size=1,
        max_size=6,
    ),
    cut=st.integers(0, len(_GOOD)),
)
def test_fuzz_mutated_files(tmp_path: Path, edits: list[tuple[int, bytes, int]], cut: int) -> None:
    b = bytearray(_GOOD[: max(cut, len(_GOOD) // 2)])
    for pos, ins, dele in edits:
        pos %= max(len(b), 1)
        b[pos : pos + dele] = ins
    p = tmp_path / "m.yaml"
    p.write_bytes(bytes(b))
    _load_ok_or_topology_error(p)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk=st.binary(max_size=300), suffix=st.sampled_from([".yaml", ".json", ""]))
def test_fuzz_binary_junk(tmp_path: Path, junk: bytes, suffix: str) -> None:
    p = tmp_path / f"j{suffix}"
    p.write_bytes(junk)
    _load_ok_or_topology_error(p)


def _nested_block(levels: int, leaf: str = "1") -> str:
    return (
        "".join("  " * i + "b:\n" for i in range(levels - 1)) + "  " * (levels - 1) + f"b: {leaf}\n"
    )


@pytest.mark.parametrize("levels", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 1000])
@pytest.mark.parametrize("leaf", ["1", "[]"])
def test_depth_limit_is_the_same_on_every_path(levels: int, leaf: str) -> None:
    """The fast block reader and the YAML loader (plus the shape check) draw the line at the
    same depth."""
    from ioasid.topology import files

    text = _nested_block(levels, leaf)
    assert files._fast_block_yaml(text[:200]) is not None  # the fast path takes this shape
    outcomes = []
    for decode_text in (text, text.replace("b: " + leaf, "b: &x " + leaf)):  # anchor: libyaml
        try:
            files.decode(decode_text.encode(), source="t.yaml")
            outcomes.append("ok")
        except TopologyError as e:
            assert "nested deeper than" in str(e)
            outcomes.append("deep")
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("levels", [MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH])
@pytest.mark.parametrize("leaf", ["- []", "- x: []", "- x: 1"])
def test_depth_limit_in_sequences(levels: int, leaf: str) -> None:
    from ioasid.topology import files

    text = _nested_block(levels).replace("b: 1\n", "b:\n" + "  " * levels + leaf + "\n")
    outcomes = []
    for t in (text, text.replace("b:\n", "b: !!map\n", 1)):  # a tag: not the fast path
        try:
            files.decode(t.encode(), source="t.yaml")
            outcomes.append("ok")
        except TopologyError as e:
            assert "nested deeper than" in str(e)
            outcomes.append("deep")
    assert outcomes[0] == outcomes[1], outcomes
