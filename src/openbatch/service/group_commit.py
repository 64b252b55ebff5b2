"""Group commit: concurrent SubmitJob calls share one transaction.

Each caller waits until its rows are durable. Rows of callers that arrive
during the same event-loop turn are written together, so under concurrent
load the cost of a commit is paid once per batch instead of once per job. A
lone caller pays one loop turn of latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from openbatch.store.base import JobRecord, OutboxEntry

Writer = Callable[[Sequence[JobRecord], Sequence[OutboxEntry]], None]
"""Writes jobs and their outbox entries in one transaction (``Store.insert_jobs``)."""
_Batch = tuple[list[JobRecord], Sequence[OutboxEntry]]


class GroupCommitter:
    def __init__(self, write: Writer) -> None:
        self._write = write
        self._pending: list[tuple[_Batch, asyncio.Future[None]]] = []
        self.batches = 0
        self.records = 0

    async def commit(self, records: list[JobRecord], outbox: Sequence[OutboxEntry] = ()) -> None:
        """Return once ``records`` (and ``outbox``) are committed; raise what the store raised for them."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append(((records, outbox), future))
        await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            self._write(
                [record for (records, _), _ in pending for record in records],
                [entry for (_, entries), _ in pending for entry in entries],
            )
        except Exception as exc:
            if len(pending) == 1:
                _settle(pending[0][1], exc)
                return
            # One caller's bad rows must not fail the others: retry each on its own.
            for (records, entries), future in pending:
                try:
                    self._write(records, entries)
                except Exception as each:
                    _settle(future, each)
                else:
                    _settle(future, None)
            return
        self.batches += 1
        self.records += sum(len(records) for (records, _), _ in pending)
        for _, future in pending:
            _settle(future, None)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    # A caller whose request was cancelled (client went away) no longer waits.
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
