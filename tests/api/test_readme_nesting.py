"""The README's "Nesting and vIOMMU" examples run as written (on the simulated host)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from ioasid.backends import sim

README = Path(__file__).resolve().parents[2] / "README.md"


def _examples() -> list[str]:
    text = README.read_text()
    section = text.split("## Nesting and vIOMMU", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.mark.parametrize("index", range(2))
def test_readme_nesting_example_runs(index: int) -> None:
    examples = _examples()
    assert len(examples) == 2
    sim.reset()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(examples[index], f"README example {index}", "exec"), {})
    expected = ["b'through both stages'", "round 1: resend pages [7]"][index]
    assert expected in out.getvalue()
