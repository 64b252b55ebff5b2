"""Wiring of the workflow capability into one server process (the only module runtime.py imports)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from starlette.routing import Route

from openbatch.service.context import Caller
from openbatch.service.jobs import JobService
from openbatch.store.sql import SqlStore
from openbatch.workflows import api
from openbatch.workflows.schedules import ScheduleService
from openbatch.workflows.service import WorkflowService
from openbatch.workflows.store import WorkflowStore

if TYPE_CHECKING:
    from collections.abc import Callable


class Workflows:
    """Workflow runs and schedules on top of one JobService."""

    def __init__(self, jobs: JobService, store: SqlStore, caller: Caller, data_dir: Path) -> None:
        workflow_store = WorkflowStore(store.engine)
        self.service = WorkflowService(jobs, workflow_store, caller)
        self.schedules = ScheduleService(self.service, jobs, workflow_store, caller)
        # Before the engine starts: recovered jobs' first changes reach the listener.
        self.service.attach()

    def start(self) -> None:
        """After the job engine has started (it recovers jobs first)."""
        self.service.start()
        self.schedules.start()

    async def stop(self) -> None:
        await self.schedules.stop()
        await self.service.stop()


def routes(get: Callable[[], Workflows]) -> list[Route]:
    """The native API's routes; ``get`` returns the started capability (routes exist before start-up)."""
    return api.routes(lambda: get().service, lambda: get().schedules)
