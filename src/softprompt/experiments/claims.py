"""Exclusive claims on cells, so parallel workers never run the same one.

A claim is an advisory lock (flock) on `<runs>/<spec>/.claims/<cell-id>.lock`, held while the
cell runs. The kernel drops it when the holding process ends, however it ends (killed
included), so a dead worker's claim never blocks a re-run. Lock files are left in place
(removing a locked file would let two processes lock two different files of one name).
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: one worker only (run_grid refuses --workers > 1)
    fcntl = None

LOCKS_AVAILABLE = fcntl is not None


class Claim:
    def __init__(self, path: Path, fd: int | None):
        self.path, self.fd = path, fd

    @classmethod
    def acquire(cls, path: str | Path, wait: bool = False) -> "Claim | None":
        """The claim, or None when another process (or another open of the file) holds it."""
        path = Path(path)
        if fcntl is None:
            return cls(path, None)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode())
        return cls(path, fd)

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
