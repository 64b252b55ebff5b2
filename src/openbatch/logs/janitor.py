"""Periodic clean-up of what finished jobs leave behind: work directories and expired log events.

Work directories (``<work>/<shard>/<jobId>``, kept for inspection after a job
ends) go once the job has been finished for ``work_retention_seconds``. The
janitor asks the engine one thing, ``is_live(job_id)`` (is the job still
unfinished or not yet persisted), and otherwise only looks at the file
system: a directory's clock starts when the janitor first sees its job
finished, so a restart only ever delays a removal, never hastens one. Logs
are kept per their log group's retention policy (``LogStore.expire``), not
with the work directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from openbatch.logs.store import LogStore

logger = logging.getLogger(__name__)

MAX_INTERVAL_SECONDS = 600.0


class Janitor:
    def __init__(
        self,
        log_store: LogStore,
        work_dir: Path,
        *,
        work_retention_seconds: float | None,
        is_live: Callable[[str], bool],
        interval_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log_store = log_store
        self.work_dir = work_dir
        self.work_retention_seconds = work_retention_seconds
        self.is_live = is_live
        if interval_seconds is None:
            retention = work_retention_seconds or MAX_INTERVAL_SECONDS
            interval_seconds = min(MAX_INTERVAL_SECONDS, max(1.0, retention / 10))
        self.interval_seconds = interval_seconds
        self._clock = clock
        self._finished_since: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def job_dirs(self) -> list[Path]:
        """Every ``<work>/<shard>/<jobId>`` directory (file system only: callers run it off the loop)."""
        if self.work_retention_seconds is None:
            return []
        return [job_dir for shard in _subdirs(self.work_dir) for job_dir in _subdirs(shard)]

    def due_work_dirs(self, job_dirs: list[Path] | None = None) -> list[Path]:
        """Work directories whose job has been finished for the retention (forgotten once returned)."""
        if self.work_retention_seconds is None:
            return []
        now = self._clock()
        seen: set[str] = set()
        due: list[Path] = []
        for job_dir in self.job_dirs() if job_dirs is None else job_dirs:
            key = str(job_dir)
            seen.add(key)
            if self.is_live(job_dir.name):
                self._finished_since.pop(key, None)
                continue
            since = self._finished_since.setdefault(key, now)
            if now - since >= self.work_retention_seconds:
                due.append(job_dir)
                self._finished_since.pop(key, None)
        for key in list(self._finished_since):
            if key not in seen:
                del self._finished_since[key]
        return due

    def sweep(self) -> tuple[int, int]:
        """One pass: (work directories removed, log files expired)."""
        return _remove(self.due_work_dirs()), self.log_store.expire()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="janitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                # Liveness is read on the loop (the engine's map is the loop's); deletions run off it.
                # Listing and removing touch the file system off the loop; liveness is read on it
                # (the engine's map belongs to the loop).
                listed = await asyncio.to_thread(self.job_dirs)
                dirs = await asyncio.to_thread(_remove, self.due_work_dirs(listed))
                logs = await asyncio.to_thread(self.log_store.expire)
                if dirs or logs:
                    logger.info("janitor removed %d work directories and %d expired log files", dirs, logs)
            except Exception:
                logger.exception("janitor sweep failed")
            await asyncio.sleep(self.interval_seconds)


def _remove(paths: list[Path]) -> int:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
    return len(paths)


def _subdirs(path: Path) -> list[Path]:
    try:
        with os.scandir(path) as entries:
            return [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
