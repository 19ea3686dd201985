"""One writer per folder: an exclusive, non-blocking lock file holding the writer's pid.

A sweep folder and a tune folder each take it while they write, so two invocations never
interleave their appends; a second one fails at once, naming the holder. The lock is an
``flock`` on the file, released by the kernel when the holder exits, however it exits.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path


def acquire(folder: Path, name: str, busy: Callable[[str], Exception]) -> int:
    """Lock ``folder/name`` (creating the folder) and return the descriptor to close to
    release it; if another process holds it, raise ``busy(holder_pid)``."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / name, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise busy(holder) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


__all__ = ["acquire"]
