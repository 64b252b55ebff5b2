"""The console's job feed (fan-out of status changes as server-sent events) and its public files."""

from __future__ import annotations

import asyncio
import json

from starlette.requests import Request

from openbatch.console import console_files
from openbatch.console.feed import MAX_BACKLOG, JobFeed, _Subscriber
from openbatch.domain.job import StatusChange
from openbatch.domain.states import JobStatus
from tests.unit.builders import make_job


def _messages(subscriber: _Subscriber) -> list[str]:
    out = []
    while not subscriber.queue.empty():
        out.append(subscriber.queue.get_nowait())
    return out


def test_changes_reach_every_subscriber_as_one_event_per_commit() -> None:
    async def scenario() -> None:
        feed = JobFeed()
        first, second = _Subscriber(), _Subscriber()
        feed._subscribers.update({first, second})
        job = make_job().queue("etl").status(JobStatus.RUNNING).build()
        feed.on_status_changes(
            [
                StatusChange(job.id, JobStatus.STARTING, JobStatus.RUNNING, 1_000, job),
                StatusChange(job.id, None, JobStatus.SUBMITTED, 900, job),
            ]
        )
        for subscriber in (first, second):
            [message] = _messages(subscriber)
            kind, data = message.strip().split("\n")
            assert kind == "event: jobs"
            changes = json.loads(data.removeprefix("data: "))
            assert changes[0] == {
                "jobId": job.id,
                "jobName": job.spec.job_name,
                "jobQueue": "etl",
                "status": "RUNNING",
                "previousStatus": "STARTING",
                "at": 1_000,
            }
            assert "previousStatus" not in changes[1]

    asyncio.run(scenario())


def test_a_subscriber_that_falls_behind_is_told_to_resync_instead_of_holding_memory() -> None:
    async def scenario() -> None:
        subscriber = _Subscriber()
        for i in range(MAX_BACKLOG + 10):
            subscriber.offer(f"m{i}")
        messages = _messages(subscriber)
        assert len(messages) <= 10
        assert "resync" in messages
        assert messages[-1] == f"m{MAX_BACKLOG + 9}"

    asyncio.run(scenario())


def test_only_the_console_files_themselves_are_public() -> None:
    files = console_files()
    assert {"/console", "/console/", "/console/index.html", "/console/js/app.js", "/console/style.css"} <= files
    assert all(path.startswith("/console") for path in files)
    assert "/api/jobs/events" not in files


def test_closing_the_feed_ends_open_streams_and_refuses_new_ones() -> None:
    async def scenario() -> None:
        feed = JobFeed()
        subscriber = _Subscriber()
        feed._subscribers.add(subscriber)
        stream = feed._stream(subscriber)
        assert "event: ready" in await anext(stream)
        feed.close()
        # The stream ends at once (no heartbeat wait), and the subscriber is gone.
        try:
            await asyncio.wait_for(anext(stream), 1)
            raise AssertionError("the stream went on after close")
        except StopAsyncIteration:
            pass
        assert feed.subscribers == 0
        refused = await feed.endpoint(Request({"type": "http", "method": "GET", "path": "/", "headers": []}))
        assert refused.status_code == 503

    asyncio.run(scenario())
