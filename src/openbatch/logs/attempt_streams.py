"""Log streams that exist from the moment an attempt starts, as on AWS, even if the job prints nothing.

The executor opens a stream's writer only with the first line of output; this
status listener creates the (empty) stream when the attempt's STARTING state is
committed, which is before its process is launched. Creating a stream that
exists already is a no-op, so the executor (or a supervisor process) creating
it too is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from openbatch.domain.job import StatusChange
from openbatch.domain.states import JobStatus
from openbatch.logs.store import LogStore

logger = logging.getLogger(__name__)

LOG_GROUP = "/aws/batch/job"


def stream_creator(store: LogStore, group: str = LOG_GROUP) -> Callable[[Sequence[StatusChange]], None]:
    """A status listener (``engine.add_status_listener``) creating each starting attempt's stream."""

    def on_status_changes(changes: Sequence[StatusChange]) -> None:
        for change in changes:
            if change.new not in (JobStatus.STARTING, JobStatus.RUNNING):
                continue
            attempt = change.job.current
            stream = attempt.log_stream if attempt is not None else None
            if not stream:
                continue
            try:
                store.create_stream(group, stream)
            except OSError:
                # A full or broken log volume must not stop the engine; the job runs without its log.
                logger.exception("creating log stream %s of job %s failed", stream, change.job_id)

    return on_status_changes
