"""The maintenance lock: an exclusive lock on ``<data>/maintenance.lock``.

Housekeeping runs in whichever process holds it (architecture §8): one of `jpki serve`'s
workers, or a CLI command that runs a job by hand (`jpki mobile sweep`), never two at once.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO


def maintenance_lock(data_dir: Path) -> IO[bytes] | None:
    """An exclusive lock on ``<data>/maintenance.lock`` (released when the handle is closed,
    or the process ends), or None if another process holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "maintenance.lock").open("a+b")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle
