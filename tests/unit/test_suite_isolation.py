"""Two runs of the suite on one machine, by one user, do not share or remove each other's files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.paths import ROOT

PROBE = """
import os
import time
from pathlib import Path


def test_probe(tmp_path: Path, tmp_path_factory) -> None:
    marker = tmp_path / "mine"
    marker.write_text("x")
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    (runtime / "lock").write_text("x")
    Path({out!r}).write_text(f"{{tmp_path_factory.getbasetemp()}}\\n{{runtime}}")
    time.sleep(1.5)  # the other run starts and ends meanwhile
    assert marker.exists() and (runtime / "lock").exists()
"""


def test_two_runs_at_once_keep_their_own_temporary_and_runtime_directories(tmp_path: Path) -> None:
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
                    "tests.isolation",
                    "-p",
                    "no:cacheprovider",
                    "--rootdir",
                    str(folder),
                    "-c",
                    "/dev/null",
                    str(folder / "test_probe.py"),
                ],
                cwd=ROOT,
                # only the plugin under test: the installed ones' imports take seconds
                env=os.environ | {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    outputs = [run.communicate(timeout=120)[0].decode() for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    first, second = ((tmp_path / f"{name}.txt").read_text().split("\n") for name in ("first", "second"))
    assert first[0] != second[0] and first[1] != second[1]
    assert not [d for d in first + second if "pytest-of-" in d]
    # a passing run removes its own directories and nothing else
    assert not [d for d in first + second if Path(d).exists()]
    assert tmp_path.exists() and Path(os.environ["XDG_RUNTIME_DIR"]).exists()
