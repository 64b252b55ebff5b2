"""Durable attempt records: what the supervisor started, and how it ended.

``<key>.launched`` is created exclusively (``O_EXCL``) before the process starts, so a second
launch of the same attempt is refused, by this supervisor or by the next one after a crash.
``<key>.exit`` is written atomically (write, then rename) when the attempt ends, before the
server is told. Both are removed when the server has committed the outcome (``forget``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class AttemptRecord:
    key: str
    spec: dict[str, Any]
    pid: int | None
    exit: dict[str, Any] | None
    started_at: int | None = None


def _file_name(key: str) -> str:
    # Keys are "<jobId>#<attempt>" (array children "<uuid>:<index>#<attempt>"); keep them readable.
    return key.replace("/", "_")


class AttemptRecords:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def claim(self, key: str, spec: dict[str, Any]) -> bool:
        """Record that ``key`` is about to start; False if it was launched before."""
        path = self.directory / f"{_file_name(key)}.launched"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps({"key": key, "spec": spec}) + "\n")
        return True

    def note_pid(self, key: str, pid: int, started_at: int | None = None) -> None:
        with open(self.directory / f"{_file_name(key)}.launched", "a") as out:
            out.write(json.dumps({"pid": pid, "startedAt": started_at}) + "\n")

    def finish(self, key: str, exit_status: dict[str, Any]) -> None:
        path = self.directory / f"{_file_name(key)}.exit"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(exit_status))
        os.replace(temporary, path)

    def forget(self, key: str) -> None:
        for suffix in (".exit", ".launched"):
            try:
                os.unlink(self.directory / f"{_file_name(key)}{suffix}")
            except FileNotFoundError:
                pass

    def load(self) -> list[AttemptRecord]:
        records: list[AttemptRecord] = []
        for path in self.directory.glob("*.launched"):
            try:
                lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            except (OSError, ValueError):
                logger.warning("unreadable attempt record %s", path)
                continue
            if not lines or "key" not in lines[0]:
                continue
            noted: dict[str, Any] = next((line for line in lines[1:] if "pid" in line), {})
            pid = noted.get("pid")
            exit_status: dict[str, Any] | None = None
            exit_path = path.with_suffix(".exit")
            if exit_path.exists():
                try:
                    exit_status = json.loads(exit_path.read_text())
                except (OSError, ValueError):
                    exit_status = None
            records.append(AttemptRecord(lines[0]["key"], lines[0]["spec"], pid, exit_status, noted.get("startedAt")))
        return records
