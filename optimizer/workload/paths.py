"""Where MBS finds its bundled data files (traces, texts)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "MBS_DATA_DIR"


def data_dir() -> Path:
    """Return the data directory: ``$MBS_DATA_DIR`` if set, else the repository's ``data/``."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        path = Path(override).expanduser()
        source = f"${DATA_DIR_ENV}"
    else:
        path = Path(__file__).resolve().parents[2] / "data"
        source = "repository default"
    if not path.is_dir():
        raise FileNotFoundError(f"data directory {path} ({source}) does not exist")
    return path
