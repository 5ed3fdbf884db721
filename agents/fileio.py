"""Atomic file writes: the one helper every saved file of a run goes through.

A file is written to a fresh temporary file in the same folder (``tempfile.mkstemp``: a unique
name per writer, so concurrent writers never share one), flushed and fsynced, then renamed onto
its path with ``os.replace``. A reader sees the old file or the new one, never a torn one, and a
killed writer leaves at most a ``.<name>.*.tmp`` file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(file)`` on a temporary binary file next to ``path``, then rename it onto
    ``path`` (parents are created). Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
