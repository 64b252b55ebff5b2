"""Cron schedules that start a workflow run or submit a job, persisted and fired by the server.

* ``cron``: 5 fields (minute hour day month weekday), or 6 with seconds last
  (croniter's convention: ``* * * * * */10`` fires every 10 seconds).
* ``timezone``: an IANA name (default ``UTC``); daylight-saving changes follow croniter.
* Missed firings (the server was down, or busy past a firing): ``missedRunPolicy``
  ``RUN_ONCE`` (default) starts one run at start-up for all the firings missed, then
  continues with the next firing after now; ``SKIP`` drops them. Either way a schedule
  never fires a burst to catch up, and the count of missed firings is recorded.
* A paused schedule does not fire; resuming it continues from the next firing after now
  (firings while paused are not missed ones).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from openbatch.domain.errors import ClientError, NotFound, ValidationError
from openbatch.domain.validation import check_name
from openbatch.service import request_models as s
from openbatch.service.context import Caller
from openbatch.service.jobs import JobService
from openbatch.workflows.service import WorkflowService
from openbatch.workflows.store import ScheduleRow, WorkflowStore

logger = logging.getLogger(__name__)
POLICIES = ("RUN_ONCE", "SKIP")
_MAX_SLEEP = 30.0


def next_fire(cron: str, timezone: str, after_ms: int) -> int:
    start = datetime.fromtimestamp(after_ms / 1000, tz=ZoneInfo(timezone))
    following: datetime = croniter(cron, start).get_next(datetime)
    return int(following.timestamp() * 1000)


class ScheduleService:
    def __init__(self, workflows: WorkflowService, jobs: JobService, store: WorkflowStore, caller: Caller) -> None:
        self.workflows = workflows
        self.jobs = jobs
        self.store = store
        self.caller = caller
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def _now(self) -> int:
        return self.jobs.ctx.clock.now_ms()

    # --- API --------------------------------------------------------------------------

    def _checked(self, body: dict[str, Any]) -> dict[str, Any]:
        """The schedule's definition from a create/update request, every field checked."""
        cron = body.get("cron")
        if not isinstance(cron, str) or not croniter.is_valid(cron):
            raise ValidationError(f"cron {cron!r} is not a valid cron expression (5 fields, or 6 with seconds last)")
        timezone = body.get("timezone") or "UTC"
        try:
            ZoneInfo(str(timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError(f"timezone {timezone!r} is not a known IANA time zone") from None
        policy = body.get("missedRunPolicy") or "RUN_ONCE"
        if policy not in POLICIES:
            raise ValidationError(f"missedRunPolicy must be one of {', '.join(POLICIES)}; got {policy!r}")
        params = body.get("parameters") or {}
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            raise ValidationError("parameters must be a map of strings to strings")
        workflow, job = body.get("workflow"), body.get("job")
        if (workflow is None) == (job is None):
            raise ValidationError("Give exactly one of workflow (a registered workflow name) or job (a SubmitJob)")
        if workflow is not None:
            if not isinstance(workflow, str):
                raise ValidationError("workflow must be a workflow name")
            definition = self.store.get_definition(workflow, None)
            if definition is None:
                raise NotFound(f"Workflow {workflow} does not exist: register it first")
            self.workflows.parse(None, definition.body, params)  # the parameters must fit
        else:
            if not isinstance(job, dict):
                raise ValidationError("job must be a SubmitJob request object")
            s.SubmitJob.model_validate({**job, "parameters": {**(job.get("parameters") or {}), **params}})
        return {
            "cron": cron,
            "timezone": timezone,
            "workflow": workflow,
            "job": job,
            "parameters": params,
            "missedRunPolicy": policy,
        }

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str):
            raise ValidationError("name is required")
        check_name("Schedule", name)
        spec = self._checked(body)
        now = self._now()
        row = ScheduleRow(
            name=name,
            state="ENABLED",
            next_fire_at=next_fire(spec["cron"], spec["timezone"], now),
            body={**spec, "createdAt": now, "missedRuns": 0},
        )
        self.store.insert_schedule(row)
        self._wake.set()
        return _view(row)

    def update(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace a schedule's definition; its state and history (last firing, missed runs) stay.

        The next firing is recomputed from now when the cron expression or time zone changed."""
        row = self._get(name)
        if body.get("name") not in (None, name):
            raise ValidationError(f"name {body.get('name')!r} does not match the schedule {name}")
        spec = self._checked(body)
        next_at = row.next_fire_at
        if (spec["cron"], spec["timezone"]) != (row.body["cron"], row.body["timezone"]) and row.state == "ENABLED":
            next_at = next_fire(spec["cron"], spec["timezone"], self._now())
        updated = ScheduleRow(row.name, row.state, next_at, {**row.body, **spec})
        self.store.update_schedule(updated)
        self._wake.set()
        return _view(updated)

    def describe(self, name: str) -> dict[str, Any]:
        return _view(self._get(name))

    def list(self) -> list[dict[str, Any]]:
        return [_view(row) for row in self.store.list_schedules()]

    def _get(self, name: str) -> ScheduleRow:
        for row in self.store.list_schedules():
            if row.name == name:
                return row
        raise NotFound(f"Schedule {name} does not exist")

    def set_state(self, name: str, state: str) -> dict[str, Any]:
        row = self._get(name)
        next_at = row.next_fire_at
        if state == "ENABLED" and row.state != "ENABLED":
            next_at = next_fire(row.body["cron"], row.body["timezone"], self._now())
        updated = ScheduleRow(row.name, state, next_at, row.body)
        self.store.update_schedule(updated)
        self._wake.set()
        return _view(updated)

    def delete(self, name: str) -> None:
        if not self.store.delete_schedule(name):
            raise NotFound(f"Schedule {name} does not exist")
        self._wake.set()

    # --- firing ----------------------------------------------------------------------

    def start(self) -> None:
        self._catch_up()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="openbatch-schedules")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    def _catch_up(self) -> None:
        """Apply the missed-run policy to firings that passed while the server was down."""
        now = self._now()
        for row in self.store.list_schedules():
            if row.state != "ENABLED" or row.next_fire_at is None or row.next_fire_at > now:
                continue
            missed, at = 0, row.next_fire_at
            while at <= now and missed < 100_000:
                missed += 1
                at = next_fire(row.body["cron"], row.body["timezone"], at)
            body = {**row.body, "missedRuns": row.body.get("missedRuns", 0) + missed}
            if row.body.get("missedRunPolicy") == "SKIP":
                self.store.update_schedule(ScheduleRow(row.name, row.state, at, body))
                logger.info("schedule %s: skipped %d firing(s) missed while the server was down", row.name, missed)
            else:
                # Left due: the loop fires it once, then moves on to the next firing after now.
                self.store.update_schedule(ScheduleRow(row.name, row.state, row.next_fire_at, body))
                logger.info("schedule %s: %d firing(s) missed; running once now", row.name, missed)

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                delay = await self._fire_due()
            except Exception:
                logger.exception("firing schedules failed; retrying")
                delay = 1.0
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _fire_due(self) -> float:
        """Fire every due schedule once; the seconds until the next firing (capped)."""
        now = self._now()
        soonest = now + int(_MAX_SLEEP * 1000)
        for row in self.store.list_schedules():
            if row.state != "ENABLED" or row.next_fire_at is None:
                continue
            if row.next_fire_at <= now:
                body = dict(row.body)
                body["lastFireAt"] = now
                body.pop("lastError", None)
                try:
                    body.update(await self._fire(row))
                except ClientError as exc:
                    body["lastError"] = exc.message
                    logger.warning("schedule %s could not start: %s", row.name, exc.message)
                following = next_fire(row.body["cron"], row.body["timezone"], now)
                self.store.update_schedule(ScheduleRow(row.name, row.state, following, body))
                soonest = min(soonest, following)
            else:
                soonest = min(soonest, row.next_fire_at)
        return max(0.01, (soonest - self._now()) / 1000)

    async def _fire(self, row: ScheduleRow) -> dict[str, Any]:
        params = row.body.get("parameters") or {}
        if row.body.get("workflow"):
            run = await self.workflows.start_run(name=row.body["workflow"], params=params, schedule=row.name)
            return {"lastRunId": run["runId"]}
        job = dict(row.body["job"])
        job["parameters"] = {**(job.get("parameters") or {}), **params}
        job.setdefault("tags", {})["openbatch:schedule"] = row.name
        result = await self.jobs.op_SubmitJob(self.caller, s.SubmitJob.model_validate(job))
        return {"lastJobId": result["jobId"]}


def _view(row: ScheduleRow) -> dict[str, Any]:
    b = row.body
    result: dict[str, Any] = {
        "name": row.name,
        "state": row.state,
        "cron": b["cron"],
        "timezone": b["timezone"],
        "missedRunPolicy": b.get("missedRunPolicy", "RUN_ONCE"),
        "parameters": b.get("parameters") or {},
        "missedRuns": b.get("missedRuns", 0),
    }
    if b.get("workflow"):
        result["workflow"] = b["workflow"]
    else:
        result["job"] = b.get("job")
    if row.next_fire_at is not None and row.state == "ENABLED":
        result["nextFireAt"] = row.next_fire_at
        result["nextFireTime"] = datetime.fromtimestamp(row.next_fire_at / 1000, tz=UTC).isoformat()
    for key in ("lastFireAt", "lastRunId", "lastJobId", "lastError"):
        if b.get(key) is not None:
            result[key] = b[key]
    return result
