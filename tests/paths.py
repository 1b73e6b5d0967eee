"""The repository's root, found from this file, so a test's own depth in tests/ does not matter."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
