"""Every code block of ``README.md``, ``CONTRIBUTING.md`` and ``docs/*.md`` runs as written.

The blocks of one file run in order, in one namespace, in a fresh directory, on a freshly
booted default simulated host — as a reader would type them one after the other. What a
fence's info string says decides how a block runs:

* ``python``: executed; ``python pytest``: written to a test file and run by pytest in a
  subprocess (every test must pass); ``python file=NAME``: written to ``NAME`` for a later
  block to run;
* ``sh``: each ``ioasid ...`` line runs the CLI (``python -m ioasid.cli``) and must exit 0;
  any other command makes the block fail, unless it is fenced ``sh norun`` (installation
  steps, commands for another machine);
* ``yaml file=NAME`` / ``json file=NAME``: the file is written for later blocks;
* ``text`` right after a ``python`` or ``sh`` block: every line of it must be a line of
  that block's output (so the shown output is the real one);
* anything else (``c``, ``yaml`` without ``file=``, ``text`` elsewhere): shown, not run.

Relative links must name files of the repository.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ioasid.backends import sim

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@dataclass(frozen=True)
class Block:
    lang: str
    attrs: dict[str, str]
    flags: frozenset[str]
    code: str
    line: int

    @property
    def where(self) -> str:
        return f"line {self.line}"


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        words = m.group(1).split()
        lang = words[0] if words else ""
        attrs = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        flags = frozenset(w for w in words[1:] if "=" not in w)
        out.append(Block(lang, attrs, flags, m.group(2), text.count("\n", 0, m.start()) + 1))
    return out


def run_python(block: Block, namespace: dict[str, object], name: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.code, f"{name} {block.where}", "exec"), namespace)
    return out.getvalue()


def run_pytest(block: Block, tmp: Path, name: str) -> str:
    test = tmp / f"test_block_{block.line}.py"
    test.write_text(block.code)
    # only what installing ioasid registered: no plugins or options of this run
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp,
        env=env,
    )
    assert r.returncode == 0, f"{name} {block.where}: pytest failed\n{r.stdout}{r.stderr}"
    assert re.search(r"\b\d+ passed\b", r.stdout), r.stdout
    return r.stdout


def run_shell(block: Block, tmp: Path, name: str) -> str:
    output = []
    for raw in block.code.splitlines():
        line = raw.strip().removeprefix("$ ")
        if not line or line.startswith("#"):
            continue
        argv = shlex.split(line, comments=True)
        assert argv[0] == "ioasid", (
            f"{name} {block.where}: {line!r} is not an ioasid command: fence the block "
            "`sh norun` if it is not meant to run here"
        )
        r = subprocess.run(
            [sys.executable, "-m", "ioasid.cli", *argv[1:]],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp,
            env={**os.environ, "COLUMNS": "1000"},
        )
        where = f"{name} {block.where}: {line!r}"
        assert r.returncode == 0, f"{where} exited {r.returncode}\n{r.stderr}"
        output.append(r.stdout)
    return "".join(output)


def check_output(expected: Block, got: str, name: str) -> None:
    lines = {line.rstrip() for line in got.splitlines()}
    for want in expected.code.splitlines():
        if want.strip():
            assert want.rstrip() in lines, (
                f"{name} {expected.where}: {want!r} is not a line of the output:\n{got}"
            )


def run_document(path: Path, tmp: Path) -> int:
    """Run the runnable blocks of ``path``; how many ran."""
    name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    sim.reset()
    namespace: dict[str, object] = {"__name__": f"doc:{name}"}
    last: str | None = None
    ran = 0
    for block in blocks(path):
        output: str | None = None
        if "file" in block.attrs:
            (tmp / block.attrs["file"]).write_text(block.code)
        elif block.lang == "python" and "pytest" in block.flags:
            output = run_pytest(block, tmp, name)
        elif block.lang == "python" and "norun" not in block.flags:
            output = run_python(block, namespace, name)
        elif block.lang == "sh" and "norun" not in block.flags:
            output = run_shell(block, tmp, name)
        elif block.lang == "text" and last is not None:
            check_output(block, last, name)
        ran += output is not None
        last = output
    return ran


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_code_blocks_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        ran = run_document(path, tmp_path)
    finally:
        sim.reset()
    python = [b for b in blocks(path) if b.lang == "python" and "norun" not in b.flags]
    assert ran >= len(python)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_name_files_of_the_repository(path: Path) -> None:
    text = FENCE.sub("", path.read_text())
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        file = (path.parent / target.split("#", 1)[0]).resolve()
        assert file.exists(), f"{path.name}: link {target!r} names no file"
        assert ROOT in file.parents, f"{path.name}: link {target!r} leaves the repository"


def test_every_guide_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for guide in (ROOT / "docs").glob("*.md"):
        assert f"](docs/{guide.name})" in readme, f"README does not link docs/{guide.name}"


def test_a_wrong_output_block_fails(tmp_path: Path) -> None:
    """The runner can fail: a shown output that the code does not print is caught."""
    doc = tmp_path / "doc.md"
    doc.write_text("```python\nprint('hello')\n```\n\n```text\ngoodbye\n```\n")
    with pytest.raises(AssertionError, match="'goodbye' is not a line of the output"):
        run_document(doc, tmp_path)


def test_a_shell_command_that_is_not_ioasid_fails(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("```sh\nrm -rf /tmp/nothing\n```\n")
    with pytest.raises(AssertionError, match="is not an ioasid command"):
        run_document(doc, tmp_path)
