"""Paths of the small data files shipped inside the package (see `player/data/README.md`)."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
ENVIVIO_DIR = DATA_DIR / "envivio"
TRACES_DIR = DATA_DIR / "traces"
