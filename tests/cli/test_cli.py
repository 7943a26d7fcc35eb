"""The ``ioasid`` command as a shell runs it: ``python -m ioasid``, no command, a reader
that stops early."""

from __future__ import annotations

import os
import subprocess
import sys


def _ioasid(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ioasid", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_python_m_ioasid_is_the_ioasid_command() -> None:
    from ioasid import __version__

    got = _ioasid("--version")
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == f"ioasid {__version__}"


def test_no_command_prints_help_and_exits_2() -> None:
    got = _ioasid()
    assert got.returncode == 2
    assert got.stderr.startswith("usage: ioasid")
    assert "groups" in got.stderr and "demo" in got.stderr
    assert "Traceback" not in got.stderr


def test_a_reader_that_stops_early_ends_it_quietly() -> None:
    # the reader is gone before the first write (as after `| head -1`): every write is EPIPE
    r, w = os.pipe()
    os.close(r)
    try:
        got = subprocess.run(
            [sys.executable, "-m", "ioasid", "groups", "--default-host", "--json"],
            stdout=w,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(w)
    assert got.stderr == ""
    assert got.returncode == 141


def test_groups_does_not_pay_for_the_api() -> None:
    """``import ioasid`` and ``ioasid groups`` leave the API (and numpy) unimported until
    something asks for ``ioasid.Iommufd`` & co."""
    code = (
        "import sys, ioasid, ioasid.cli.groups\n"
        "assert 'ioasid.api' not in sys.modules and 'numpy' not in sys.modules, 'eager'\n"
        "assert ioasid.Iommufd.__name__ == 'Iommufd' and 'ioasid.api' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
