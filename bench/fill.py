"""Bulk-write finished jobs into a stopped server's store: copies of one real job, as a long history leaves.

The copy is of a job the server itself ran, so every row renders exactly as a real one; each
copy gets its own id, name suffix and creation time (one millisecond apart, so paging by
creation time has a million distinct keys to walk).

Usage (a child process, so the runner's own memory stays small): ``python -m bench.fill URL JOB_ID COUNT``
"""

from __future__ import annotations

import dataclasses
import sys
import uuid

from openbatch.store.base import JobRecord
from openbatch.store.sql import SqlStore

BATCH = 20_000


def fill(url: str, template_id: str, count: int) -> None:
    store = SqlStore(url)
    (template,) = store.get_jobs([template_id])
    written = 0
    start = template.created_at - count - 1
    while written < count:
        size = min(BATCH, count - written)
        store.insert_jobs(_copies(template, start + written, size))
        written += size
    store.close()


def _copies(template: JobRecord, first_created: int, size: int) -> list[JobRecord]:
    return [
        dataclasses.replace(
            template,
            id=str(uuid.uuid4()),
            job_name=f"history-{first_created + i}",
            created_at=first_created + i,
        )
        for i in range(size)
    ]


if __name__ == "__main__":
    fill(sys.argv[1], sys.argv[2], int(sys.argv[3]))
