"""Group commit: batching, durability before reply, and isolation of a failing caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from openbatch.service.group_commit import GroupCommitter
from openbatch.store.base import JobRecord, OutboxEntry


def record(job_id: str) -> JobRecord:
    return JobRecord(
        id=job_id,
        parent_id=None,
        array_index=None,
        queue="q",
        status="SUBMITTED",
        job_name="j",
        share_identifier=None,
        created_at=0,
        body={},
    )


def batch(job_id: str) -> tuple[list[JobRecord], list[OutboxEntry]]:
    return [record(job_id)], [OutboxEntry("events", job_id, 0, "{}")]


class RecordingWriter:
    def __init__(self, reject: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.reject = reject

    def __call__(self, records: Sequence[JobRecord], outbox: Sequence[OutboxEntry]) -> None:
        ids = [r.id for r in records]
        assert [e.key for e in outbox] == ids  # each caller's entries travel with its rows
        self.calls.append(ids)
        if self.reject in ids:
            raise ValueError(f"rejected {self.reject}")


def test_concurrent_callers_share_one_write() -> None:
    writer = RecordingWriter()
    committer = GroupCommitter(writer)

    async def main() -> None:
        await asyncio.gather(*(committer.commit(*batch(f"j{i}")) for i in range(5)))

    asyncio.run(main())
    assert writer.calls == [[f"j{i}" for i in range(5)]]
    assert committer.batches == 1 and committer.records == 5


def test_sequential_callers_each_write_once() -> None:
    writer = RecordingWriter()
    committer = GroupCommitter(writer)

    async def main() -> None:
        for i in range(3):
            await committer.commit(*batch(f"j{i}"))
            assert writer.calls[-1] == [f"j{i}"]  # durable before the caller continues

    asyncio.run(main())
    assert len(writer.calls) == 3


def test_a_failing_caller_does_not_fail_the_others() -> None:
    writer = RecordingWriter(reject="bad")
    committer = GroupCommitter(writer)

    async def main() -> list[BaseException | None]:
        results = await asyncio.gather(
            committer.commit(*batch("a")),
            committer.commit(*batch("bad")),
            committer.commit(*batch("c")),
            return_exceptions=True,
        )
        return list(results)

    results = asyncio.run(main())
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], ValueError)
    assert writer.calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]


def test_a_lone_failing_caller_gets_the_error() -> None:
    committer = GroupCommitter(RecordingWriter(reject="x"))
    with pytest.raises(ValueError, match="rejected x"):
        asyncio.run(committer.commit(*batch("x")))
