"""One server per data dir (and per SQLite database): an exclusive ``flock`` held for the process's life.

A second server on the same data dir would share the first one's supervisor and store: it would
re-run recovery on the first server's jobs and kill their attempts, which would then look like the
jobs' own failures. So it is refused before it binds its port or reads a job. The lock is released
by the kernel when the process ends, however it ends, so a crashed server never blocks its restart.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from openbatch.config import Settings

LOCK_NAME = "server.lock"


class DataDirInUse(Exception):
    """Another live server holds the lock; the message says which and where, in one line."""


class InstanceLock:
    """The locks held by this server process; ``release`` is for tests and in-process servers."""

    def __init__(self, files: list[int]) -> None:
        self._files = files

    def release(self) -> None:
        for fd in self._files:
            os.close(fd)
        self._files = []


def claim(settings: Settings) -> InstanceLock:
    """Lock the data dir, and the SQLite database file when it lies elsewhere. Raises DataDirInUse."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    paths = [(settings.data_dir / LOCK_NAME, f"the data dir {settings.data_dir}")]
    database = sqlite_file(settings.resolved_database_url)
    if database is not None:
        # Wherever the file lies: another server may name it with --database-url from a data dir of its own.
        paths.append((database.with_name(database.name + ".lock"), f"the SQLite database {database}"))
    held: list[int] = []
    try:
        for path, what in paths:
            held.append(_lock(path, what))
    except BaseException:
        InstanceLock(held).release()
        raise
    return InstanceLock(held)


def sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return None
    return Path(url.removeprefix("sqlite:///"))


def _lock(path: Path, what: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_CLOEXEC (Python's default): the supervisor and jobs this server starts never inherit the lock.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.read(fd, 32).decode(errors="replace").strip()
        except OSError:
            holder = ""
        os.close(fd)
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise DataDirInUse(
            f"another openbatch server{who} is using {what}; stop it, or give this one its own --data-dir"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd
