"""Where the embedded PostgreSQL finds a user's TimescaleDB build (launcher/timescaledb.py)."""

import tarfile
from pathlib import Path

import pytest

from launcher.timescaledb import TimescaleSourceError, _unpack, prepare_install

FILES = ("lib/timescaledb.so", "lib/timescaledb-2.29.2.so", "share/extension/timescaledb.control")


def _build(root: Path) -> Path:
    for name in FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    return root


def _archive(tmp_path: Path, top: str = "") -> Path:
    files = _build(tmp_path / "build")
    path = tmp_path / "dist" / "timescaledb-2.29.2-pg18-linux-x86_64.tar.xz"
    path.parent.mkdir()
    with tarfile.open(path, "w:xz") as archive:
        for part in ("lib", "share"):
            archive.add(files / part, arcname=f"{top}{part}")
    return path


def test_a_directory_with_the_files_is_used_as_it_is(tmp_path: Path) -> None:
    build = _build(tmp_path / "build")
    assert _unpack(build, tmp_path / "out") == build


@pytest.mark.parametrize("top", ["", "timescaledb-2.29.2/"])
def test_an_archive_or_a_directory_holding_one_is_unpacked(tmp_path: Path, top: str) -> None:
    archive = _archive(tmp_path, top)
    for source, into in ((archive, tmp_path / "a"), (archive.parent, tmp_path / "b")):
        root = _unpack(source, into)
        assert (root / "share/extension/timescaledb.control").read_text() == FILES[2]


def test_anything_else_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(TimescaleSourceError, match="not found"):
        _unpack(tmp_path / "missing.tar.xz", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TimescaleSourceError, match="neither"):
        _unpack(tmp_path / "empty", tmp_path / "out")
    (tmp_path / "nocontrol/lib").mkdir(parents=True)
    (tmp_path / "nocontrol/lib/timescaledb.so").write_text("")
    with pytest.raises(TimescaleSourceError, match=r"timescaledb\.control"):
        prepare_install(tmp_path / "nocontrol", tmp_path / "install")
