"""Two runs of the suite on one machine, by one user, do not share or remove each other's files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.paths import ROOT

PROBE = """
import time
from pathlib import Path


def test_probe(tmp_path: Path, tmp_path_factory) -> None:
    marker = tmp_path / "mine"
    marker.write_text("x")
    Path({out!r}).write_text(str(tmp_path_factory.getbasetemp()))
    time.sleep(1.5)  # the other run starts and ends meanwhile
    assert marker.exists()
"""


def test_two_runs_at_once_keep_their_own_temporary_roots(tmp_path: Path) -> None:
    runs = []
    for name in ("first", "second"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "test_probe.py").write_text(PROBE.format(out=str(tmp_path / f"{name}.txt")))
        runs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "tests.conftest",
                    "-p",
                    "no:cacheprovider",
                    "--rootdir",
                    str(folder),
                    "-c",
                    "/dev/null",
                    str(folder / "test_probe.py"),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    outputs = [run.communicate(timeout=120)[0].decode() for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    first, second = ((tmp_path / f"{name}.txt").read_text() for name in ("first", "second"))
    assert first != second
    assert "pytest-of-" not in first and "pytest-of-" not in second
    # a passing run removes its own root and nothing else
    assert not Path(first).exists() and not Path(second).exists()
