"""Workflow runs on the server: steps become ordinary Batch jobs, followed through job state changes.

How a run moves
---------------
* Start: the run and all its steps are written (steps ``WAITING``), then every step
  that can be submitted right away is: a *static* step (``when: success``, no output
  references, no ``map.fromStep``) whose upstream steps all have jobs is submitted
  with ``dependsOn`` on their jobs (array → array of the same size: ``N_TO_N``), so
  the job engine alone releases it. There is no cap of 20: jobs are built in-process.
* Other steps wait in the workflow engine until their upstream steps finish: their
  commands need upstream outputs (``Ref::steps.S.outputs.k``), their map size comes
  from an upstream list, or they run on failure (``when: on_failure|always``).
* Each job state change reaches :meth:`WorkflowService.on_status_changes` (the job
  engine's status listener, after the job rows are committed): the step's status
  follows its job; a finished step may release waiting steps; when every step is
  finished the run ends ``SUCCEEDED``, ``FAILED`` or ``CANCELLED``.
* Step rows are written before their jobs are committed, so a crash in between is
  seen at start-up as a step whose job does not exist, and it is submitted again.
* Start-up re-derives every ``RUNNING`` run from its jobs' current states.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openbatch.domain.errors import ClientError, NotFound, ValidationError
from openbatch.domain.job import Job, StatusChange
from openbatch.domain.states import JobStatus
from openbatch.service import job_definitions as jds
from openbatch.service import request_models as s
from openbatch.service import submission
from openbatch.service.context import Caller
from openbatch.service.jobs import JobService
from openbatch.store.base import OutboxEntry
from openbatch.workflows import spec as wf
from openbatch.workflows.store import RunRow, StepRow, WorkflowStore

logger = logging.getLogger(__name__)

RUN_TAG = "openbatch:workflow-run"
STEP_TAG = "openbatch:workflow-step"
DEFINITION_PREFIX = "openbatch-workflow-"
OUTPUT_FILE = ".openbatch-output.json"

WAITING = "WAITING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
NOT_RUN = "NOT_RUN"
SKIPPED = "SKIPPED"
RUNNING = "RUNNING"
STEP_DONE = frozenset({SUCCEEDED, FAILED, CANCELLED, NOT_RUN, SKIPPED})
STEP_OK = frozenset({SUCCEEDED, SKIPPED})
STEP_BAD = frozenset({FAILED, CANCELLED, NOT_RUN})
RUN_STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")


@dataclass(slots=True)
class StepState:
    name: str
    status: str = WAITING
    job_id: str | None = None
    array_size: int | None = None
    submitted_at: int | None = None
    started_at: int | None = None
    stopped_at: int | None = None
    reason: str | None = None
    outputs: Any = None
    previous_job_ids: list[str] = field(default_factory=list)

    def row(self, run_id: str) -> StepRow:
        body = {
            "arraySize": self.array_size,
            "submittedAt": self.submitted_at,
            "startedAt": self.started_at,
            "stoppedAt": self.stopped_at,
            "reason": self.reason,
            "outputs": self.outputs,
            "previousJobIds": self.previous_job_ids,
        }
        return StepRow(run_id, self.name, self.status, self.job_id, body)

    @classmethod
    def from_row(cls, row: StepRow) -> StepState:
        b = row.body
        return cls(
            name=row.step,
            status=row.status,
            job_id=row.job_id,
            array_size=b.get("arraySize"),
            submitted_at=b.get("submittedAt"),
            started_at=b.get("startedAt"),
            stopped_at=b.get("stoppedAt"),
            reason=b.get("reason"),
            outputs=b.get("outputs"),
            previous_job_ids=list(b.get("previousJobIds") or []),
        )

    def view(self) -> dict[str, Any]:
        optional = {
            "arraySize": self.array_size,
            "submittedAt": self.submitted_at,
            "startedAt": self.started_at,
            "stoppedAt": self.stopped_at,
            "reason": self.reason,
            "outputs": self.outputs,
        }
        result: dict[str, Any] = {"status": self.status, "jobId": self.job_id}
        result.update((k, v) for k, v in optional.items() if v is not None)
        if self.previous_job_ids:
            result["previousJobIds"] = self.previous_job_ids
        return result


@dataclass(slots=True)
class RunState:
    run_id: str
    name: str
    revision: int
    spec: wf.WorkflowSpec
    parameters: dict[str, str]
    created_at: int
    steps: dict[str, StepState]
    status: str = RUNNING
    stopped_at: int | None = None
    reason: str | None = None
    redrives: int = 0
    cancelling: bool = False
    schedule: str | None = None
    announced: str | None = None
    """The status last committed with its state-change event (``None``: a new run, not yet announced)."""
    waiting: dict[str, None] = field(default_factory=dict)
    """Steps not yet submitted, in topological order (so a pass over them is O(waiting))."""
    open: set[str] = field(default_factory=set)
    """Steps not finished."""

    def refresh_sets(self) -> None:
        self.waiting = {name: None for name, step in self.steps.items() if step.status == WAITING}
        self.open = {name for name, step in self.steps.items() if step.status not in STEP_DONE}

    def row(self) -> RunRow:
        body = {
            "parameters": self.parameters,
            "document": self.spec.document,
            "stoppedAt": self.stopped_at,
            "reason": self.reason,
            "redriveCount": self.redrives,
            "cancelling": self.cancelling,
            "schedule": self.schedule,
            "stepCounts": self.counts(),
        }
        return RunRow(self.run_id, self.name, self.revision, self.status, self.created_at, body)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for step in self.steps.values():
            counts[step.status] = counts.get(step.status, 0) + 1
        return counts

    def view(self, *, with_steps: bool = True) -> dict[str, Any]:
        counts = self.counts()
        result: dict[str, Any] = {
            "runId": self.run_id,
            "workflowName": self.name,
            "revision": self.revision,
            "status": self.status,
            "parameters": self.parameters,
            "createdAt": self.created_at,
            "redriveCount": self.redrives,
            "stepCounts": counts,
        }
        if self.stopped_at is not None:
            result["stoppedAt"] = self.stopped_at
        if self.reason is not None:
            result["statusReason"] = self.reason
        if self.schedule is not None:
            result["schedule"] = self.schedule
        if with_steps:
            result["steps"] = {name: self._step_view(step) for name, step in self.steps.items()}
        return result

    def _step_view(self, step: StepState) -> dict[str, Any]:
        view = step.view()
        if step.status == WAITING and self.status == RUNNING:
            # Like a PENDING job's reason: what this not-yet-submitted step waits for.
            upstream = [self.steps[d] for d in self.spec.steps[step.name].depends_on]
            open_ = [u for u in upstream if u.status not in STEP_DONE]
            if open_:
                shown = ", ".join(f"{u.name} ({u.status})" for u in open_[:5])
                more = f" and {len(open_) - 5} more" if len(open_) > 5 else ""
                view["reason"] = f"Waiting for {len(open_)} upstream step{'s' if len(open_) > 1 else ''}: {shown}{more}"
        return view


def view_of_row(row: RunRow) -> dict[str, Any]:
    """A run summary straight from its row (finished runs are not kept in memory)."""
    b = row.body
    result: dict[str, Any] = {
        "runId": row.run_id,
        "workflowName": row.name,
        "revision": row.revision,
        "status": row.status,
        "parameters": b.get("parameters") or {},
        "createdAt": row.created_at,
        "redriveCount": b.get("redriveCount", 0),
        "stepCounts": b.get("stepCounts") or {},
    }
    for key, name in (("stoppedAt", "stoppedAt"), ("reason", "statusReason"), ("schedule", "schedule")):
        if b.get(key) is not None:
            result[name] = b[key]
    return result


class _Resolver:
    def __init__(self, service: WorkflowService) -> None:
        self.service = service

    def job_definition_exists(self, reference: str) -> bool:
        try:
            jds.resolve(self.service.jobs.ctx, reference)
        except ClientError:
            return False
        return True

    def job_queue_exists(self, name: str) -> bool:
        return submission.queue_name(name) in self.service.jobs.engine.registry.queues


class WorkflowService:
    def __init__(self, jobs: JobService, store: WorkflowStore, caller: Caller) -> None:
        self.jobs = jobs
        self.store = store
        self.caller = caller
        self.runs: dict[str, RunState] = {}
        """Unfinished runs (finished ones are read from the store)."""
        self._by_job: dict[str, tuple[str, str]] = {}
        """Step job id → (run id, step name), for the runs in memory."""
        self._dirty_runs: dict[str, RunState] = {}
        self._dirty_steps: dict[tuple[str, str], tuple[str, StepState]] = {}
        self._items: dict[tuple[str, str], list[Any]] = {}
        """Map steps' items, for ``OPENBATCH_ITEM`` at launch."""
        self._submit_lock = asyncio.Lock()
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.resolver = _Resolver(self)
        self.outbox_sources: list[Callable[[Sequence[dict[str, Any]]], list[OutboxEntry]]] = []
        """Turn run state changes (run views) into outbox entries, committed with the change (events)."""
        self.outbox_committed: list[Callable[[], None]] = []
        """Told when outbox entries were committed (so their consumer moves them at once)."""

    # --- wiring ------------------------------------------------------------------

    def attach(self) -> None:
        """Follow job state changes and add step variables at launch (before the engine starts)."""
        engine = self.jobs.engine
        engine.add_status_listener(self.on_status_changes)
        engine.add_launch_environment(self.launch_environment)

    def start(self) -> None:
        """Re-derive unfinished runs from their jobs (after the engine has recovered them)."""
        self._recover()

    async def stop(self) -> None:
        # Attempts ended by the stop must not release more steps now: start-up advances the runs.
        self._stopping = True
        for task in list(self._tasks):
            await task
        self._save()

    # --- definitions -------------------------------------------------------------

    def parse(self, text: str | None, document: Any, params: Mapping[str, str] | None) -> wf.WorkflowSpec:
        if text is not None:
            return wf.parse(text, params=params, resolver=self.resolver)
        if not isinstance(document, dict):
            raise ValidationError("Give the workflow as 'definition' (YAML or JSON text) or 'document' (an object)")
        return wf.validate(document, params=params, resolver=self.resolver)

    def register(self, spec: wf.WorkflowSpec) -> dict[str, Any]:
        row = self.store.put_definition(spec.name, spec.document, self.jobs.ctx.clock.now_ms())
        return {"name": row.name, "revision": row.revision, "createdAt": row.created_at}

    def describe_definition(self, name: str, revision: int | None) -> dict[str, Any]:
        row = self.store.get_definition(name, revision)
        if row is None:
            raise NotFound(f"Workflow {name}{'' if revision is None else f':{revision}'} does not exist")
        return {"name": row.name, "revision": row.revision, "createdAt": row.created_at, "document": row.body}

    def delete_definition(self, name: str) -> None:
        """Delete every revision of a workflow; its runs (which keep their document) stay."""
        if self.store.delete_definition(name) == 0:
            raise NotFound(f"Workflow {name} does not exist")

    def list_definitions(self) -> list[dict[str, Any]]:
        return [
            {"name": r.name, "revision": r.revision, "createdAt": r.created_at, "stepCount": len(r.body["steps"])}
            for r in self.store.list_definitions()
        ]

    # --- runs --------------------------------------------------------------------------

    async def start_run(
        self,
        *,
        text: str | None = None,
        document: Any = None,
        name: str | None = None,
        revision: int | None = None,
        params: Mapping[str, str] | None = None,
        schedule: str | None = None,
    ) -> dict[str, Any]:
        if name is not None and text is None and document is None:
            row = self.store.get_definition(name, revision)
            if row is None:
                raise NotFound(f"Workflow {name} does not exist: register it first, or give its document")
            document = row.body
        spec = self.parse(text, document, params)
        definition = self.store.put_definition(spec.name, spec.document, self.jobs.ctx.clock.now_ms())
        self._ensure_job_definition(spec)
        now = self.jobs.ctx.clock.now_ms()
        run = RunState(
            run_id=str(uuid.uuid4()),
            name=spec.name,
            revision=definition.revision,
            spec=spec,
            parameters=dict(spec.parameters),
            created_at=now,
            steps={name: StepState(name) for name in spec.steps},
            schedule=schedule,
        )
        run.refresh_sets()
        outbox = self._announce([run])
        self.store.insert_run(run.row(), [step.row(run.run_id) for step in run.steps.values()], outbox)
        self._outbox_written(outbox)
        self.runs[run.run_id] = run
        await self._advance_now(run)
        return run.view()

    def describe_run(self, run_id: str, *, with_steps: bool = True) -> dict[str, Any]:
        run = self.runs.get(run_id)
        if run is not None:
            return run.view(with_steps=with_steps)
        row = self.store.get_run(run_id)
        if row is None:
            raise NotFound(f"Workflow run {run_id} does not exist")
        result = view_of_row(row)
        steps = {r.step: StepState.from_row(r) for r in self.store.get_steps(run_id)}
        order = list(row.body.get("document", {}).get("steps", {}))
        ordered = {n: steps[n] for n in order if n in steps} | steps
        result["steps"] = {name: step.view() for name, step in ordered.items()}
        counts: dict[str, int] = {}
        for step in steps.values():
            counts[step.status] = counts.get(step.status, 0) + 1
        result["stepCounts"] = counts
        return result

    def list_runs(
        self, *, name: str | None, status: str | None, limit: int, before: tuple[int, str] | None
    ) -> tuple[list[dict[str, Any]], tuple[int, str] | None]:
        if status is not None and status not in RUN_STATUSES:
            raise ValidationError(f"status must be one of {', '.join(RUN_STATUSES)}; got {status!r}")
        self._save()
        rows = self.store.list_runs(name=name, status=status, before=before, limit=limit + 1)
        views = []
        for row in rows[:limit]:
            live = self.runs.get(row.run_id)
            views.append(live.view(with_steps=False) if live is not None else view_of_row(row))
        more = (rows[limit - 1].created_at, rows[limit - 1].run_id) if len(rows) > limit else None
        return views, more

    def cancel_run(self, run_id: str, reason: str = "Workflow run cancelled") -> dict[str, Any]:
        run = self.runs.get(run_id)
        if run is None:
            if self.store.get_run(run_id) is None:
                raise NotFound(f"Workflow run {run_id} does not exist")
            raise ClientError(f"Workflow run {run_id} has already finished")
        run.cancelling = True
        self._touch(run)
        now = self.jobs.ctx.clock.now_ms()
        engine = self.jobs.engine
        for step in run.steps.values():
            if step.status == WAITING:
                self._step_done(run, step, CANCELLED, now, reason)
            elif step.job_id is not None and step.status not in STEP_DONE:
                job = engine.jobs.get(step.job_id)
                if job is not None:
                    # Terminate reaches running attempts and every array child, and PENDING jobs at once.
                    engine.terminate(job, reason)
        self._finish_if_done(run, now)
        self._save()
        return run.view()

    async def redrive_run(self, run_id: str) -> dict[str, Any]:
        """Re-run failed, cancelled and never-run steps of a finished run; succeeded steps keep their results."""
        if run_id in self.runs:
            raise ClientError(f"Workflow run {run_id} is still RUNNING: only a finished run can be redriven")
        row = self.store.get_run(run_id)
        if row is None:
            raise NotFound(f"Workflow run {run_id} does not exist")
        if row.status == SUCCEEDED:
            raise ClientError(f"Workflow run {run_id} SUCCEEDED: there is nothing to redrive")
        run = self._load(row)
        run.status, run.stopped_at, run.reason, run.cancelling = RUNNING, None, None, False
        run.redrives += 1
        for step in run.steps.values():
            handler = run.spec.steps[step.name].when != "success"
            if step.status != SUCCEEDED or handler:
                if step.job_id is not None:
                    step.previous_job_ids.append(step.job_id)
                step.status, step.job_id, step.reason, step.outputs = WAITING, None, None, None
                step.submitted_at = step.started_at = step.stopped_at = None
                self._mark(run, step)
        run.refresh_sets()
        self._touch(run)
        self.runs[run_id] = run
        await self._advance_now(run)
        return run.view()

    # --- job state changes --------------------------------------------------------

    def on_status_changes(self, changes: Sequence[StatusChange]) -> None:
        touched: dict[str, RunState] = {}
        for change in changes:
            where = self._by_job.get(change.job_id)
            if where is None:
                continue
            run = self.runs.get(where[0])
            if run is None:
                continue
            step = run.steps[where[1]]
            if step.job_id != change.job_id or step.status in STEP_DONE:
                continue
            self._apply(run, step, change.new, change.job, change.at)
            touched[run.run_id] = run
        for run in touched.values():
            self._advance(run)
        self._save()

    def _apply(self, run: RunState, step: StepState, status: JobStatus, job: Job, at: int) -> None:
        if status is JobStatus.SUCCEEDED:
            outputs, problem = self._read_outputs(run, step)
            if problem is not None:
                self._step_done(run, step, FAILED, at, problem)
            else:
                step.outputs = outputs
                self._step_done(run, step, SUCCEEDED, at, None)
            return
        if status is JobStatus.FAILED:
            if job.attempts or (step.array_size or 0) >= 2:  # attempts may have written outputs
                asyncio.get_running_loop().run_in_executor(None, _remove_outputs, self._output_paths(step))
            reason = job.status_reason or "Job failed"
            if run.cancelling:
                self._step_done(run, step, CANCELLED, at, reason)
            elif not job.attempts and reason.startswith("Dependent Job failed"):
                self._step_done(run, step, NOT_RUN, at, reason)
            else:
                last = job.attempts[-1] if job.attempts else None
                if last is not None and last.exit_code not in (None, 0):
                    reason = f"{reason} (exit code {last.exit_code})"
                self._step_done(run, step, FAILED, at, reason)
            return
        # Not persisted: intermediate states are re-derived from the job at start-up, and
        # writing each of them would cost a row update per job transition.
        step.status = status.value
        if status is JobStatus.RUNNING and step.started_at is None:
            step.started_at = at

    def _step_done(self, run: RunState, step: StepState, status: str, at: int, reason: str | None) -> None:
        step.status, step.stopped_at, step.reason = status, at, reason
        run.waiting.pop(step.name, None)
        run.open.discard(step.name)
        if step.job_id is not None:
            self._by_job.pop(step.job_id, None)
        self._mark(run, step)

    def _read_outputs(self, run: RunState, step: StepState) -> tuple[Any, str | None]:
        """The step's outputs: read from its job's (or each array child's) working directory, then removed."""
        paths = self._output_paths(step)
        values: list[Any] = []
        problem = None
        for path in paths:
            try:
                if path.stat().st_size > wf.MAX_OUTPUT_BYTES:
                    problem = f"OPENBATCH_OUTPUT is larger than {wf.MAX_OUTPUT_BYTES:,} bytes"
                    break
                values.append(json.loads(path.read_text()))
            except FileNotFoundError:
                values.append(None)
            except (OSError, ValueError) as exc:
                problem = f"OPENBATCH_OUTPUT is not valid JSON: {exc}"
                break
        # Off the event loop: the files go, and the working directories the engine left for them.
        asyncio.get_running_loop().run_in_executor(None, _remove_outputs, paths)
        if problem is not None:
            return None, problem
        return (values[0] if step.array_size is None else values), None

    def _output_paths(self, step: StepState) -> list[Path]:
        job_id = step.job_id or ""
        ids = [job_id] if (step.array_size or 0) < 2 else [f"{job_id}:{i}" for i in range(step.array_size or 0)]
        return [self.output_path(i) for i in ids]

    def output_path(self, job_id: str) -> Path:
        """In the job's working directory, which the job's user can write and which only it uses."""
        return self.jobs.engine.work_dir_of(job_id) / OUTPUT_FILE

    def launch_environment(self, job: Job, attempt: int) -> Mapping[str, str]:
        """``OPENBATCH_OUTPUT`` (and ``OPENBATCH_ITEM`` for map children) for step jobs."""
        where = self._by_job.get(job.parent_id or job.id)
        if where is None:
            return {}
        run = self.runs.get(where[0])
        if run is None:
            return {}
        items = self._items.get((run.run_id, where[1]))
        if items is None:
            return {"OPENBATCH_OUTPUT": str(self.output_path(job.id))}
        # A map over one item is a plain job: it still gets index 0, like an array child.
        index = job.array_index or 0
        item = items[index] if index < len(items) else None
        return {
            "OPENBATCH_OUTPUT": str(self.output_path(job.id)),
            "OPENBATCH_ITEM": item if isinstance(item, str) else json.dumps(item),
            "AWS_BATCH_JOB_ARRAY_INDEX": str(index),
        }

    # --- advancing a run ----------------------------------------------------------

    async def _advance_now(self, run: RunState) -> None:
        """Advance and wait until the jobs it submitted are committed (for the API's answer)."""
        self._advance(run)
        self._save()
        for task in list(self._tasks):
            await task

    def _advance(self, run: RunState) -> None:
        """Submit what can be submitted, skip what cannot run, and end the run when all is done."""
        if run.status != RUNNING or self._stopping:
            return
        now = self.jobs.ctx.clock.now_ms()
        jobs: list[Job] = []
        if not run.cancelling:
            for name in list(run.waiting):
                step, step_spec = run.steps[name], run.spec.steps[name]
                ups = [run.steps[d] for d in step_spec.depends_on]
                all_done = all(u.status in STEP_DONE for u in ups)
                any_bad = any(u.status in STEP_BAD for u in ups)
                if step_spec.when == "success":
                    if any_bad:
                        bad = next(u for u in ups if u.status in STEP_BAD)
                        self._step_done(run, step, NOT_RUN, now, f"Upstream step {bad.name} {bad.status}")
                        continue
                    in_flight = all(u.status in STEP_OK or u.job_id is not None for u in ups)
                    if not (all_done or (step_spec.is_static and in_flight)):
                        continue
                elif not all_done:
                    continue
                elif step_spec.when == "on_failure" and not any_bad:
                    self._step_done(run, step, SKIPPED, now, "No upstream step failed")
                    continue
                jobs.extend(self._prepare(run, step_spec, step, now))
        if jobs:
            self._save()  # step rows (with job ids) before the jobs: see the module docstring
            self._submit(jobs)
        self._finish_if_done(run, now)

    def _finish_if_done(self, run: RunState, now: int) -> None:
        if run.status != RUNNING or run.open:
            return
        bad = [step for step in run.steps.values() if step.status in STEP_BAD]
        if run.cancelling:
            run.status, run.reason = CANCELLED, "Workflow run cancelled"
        elif bad:
            first = min(bad, key=lambda st: (st.status != FAILED, st.stopped_at or 0))
            run.status, run.reason = FAILED, f"Step {first.name} {first.status}: {first.reason}"
        else:
            run.status = SUCCEEDED
        run.stopped_at = now
        self._touch(run)
        self.runs.pop(run.run_id, None)
        for step in run.steps.values():
            if step.job_id is not None:
                self._by_job.pop(step.job_id, None)
            self._items.pop((run.run_id, step.name), None)

    def _prepare(self, run: RunState, step_spec: wf.StepSpec, step: StepState, now: int) -> list[Job]:
        """Build the step's job(s) (not yet committed); on a bad submission the step FAILS."""
        try:
            items = self._map_items(run, step_spec)
            if items is not None and not items:
                self._step_done(run, step, SKIPPED, now, "map over 0 items")
                return []
            request, depends_on = self._request(run, step_spec, items)
            registry = self.jobs.engine.registry
            queue = submission.check_queue(
                registry.queues.get(submission.queue_name(request.jobQueue)), request.jobQueue
            )
            definition = jds.resolve(self.jobs.ctx, request.jobDefinition)
            submission.check_fairshare(request, registry.policy_of(queue))
            built = submission.build_spec(request, queue, definition, depends_on)
            jobs = submission.build_jobs(built, request, now)
        except ClientError as exc:
            self._step_done(run, step, FAILED, now, f"Could not submit the step's job: {exc.message}")
            return []
        head = jobs[0]
        step.job_id, step.status, step.submitted_at = head.id, JobStatus.SUBMITTED.value, now
        run.waiting.pop(step.name, None)
        step.array_size = built.array_size
        if items is not None:
            self._items[(run.run_id, step.name)] = list(items)
            step.array_size = len(items)
        self._by_job[head.id] = (run.run_id, step.name)
        self._mark(run, step)
        return jobs

    def _map_items(self, run: RunState, step_spec: wf.StepSpec) -> list[Any] | None:
        if step_spec.map is None:
            return None
        if step_spec.map.items is not None:
            return list(step_spec.map.items)
        source = run.steps[step_spec.map.from_step or ""].outputs
        if isinstance(source, dict):
            source = source.get("items")
        if not isinstance(source, list):
            raise ValidationError(
                f"map.fromStep {step_spec.map.from_step}: its output must be a JSON list, or an object with 'items'"
            )
        if len(source) > wf.MAX_MAP_ITEMS:
            raise ValidationError(f"map over {len(source):,} items: at most {wf.MAX_MAP_ITEMS:,}")
        return source

    def _request(
        self, run: RunState, step_spec: wf.StepSpec, items: list[Any] | None
    ) -> tuple[s.SubmitJob, tuple[dict[str, str], ...]]:
        size = len(items) if items is not None else None
        depends: list[dict[str, str]] = []
        for dep in step_spec.depends_on:
            upstream = run.steps[dep]
            if upstream.job_id is None or upstream.status in STEP_DONE:
                continue  # finished (the engine would count it as met) or skipped
            entry = {"jobId": upstream.job_id}
            if size is not None and size > 1 and upstream.array_size == size:
                entry["type"] = "N_TO_N"
            depends.append(entry)
        outputs = {name: run.steps[name].outputs for name in step_spec.output_refs}
        params = {**run.parameters, **step_spec.parameters}
        environment = {k: substitute(v, params, outputs) for k, v in step_spec.environment.items()}
        environment[wf_env("RUN")] = run.run_id
        environment[wf_env("STEP")] = step_spec.name
        overrides: dict[str, Any] = {"environment": [{"name": k, "value": v} for k, v in environment.items()]}
        if step_spec.command is not None:
            definition = definition_name(run.name, step_spec.image)
            overrides["command"] = [substitute(c, {}, outputs) for c in step_spec.command]
            requirements = [
                {"type": "VCPU", "value": f"{step_spec.vcpus:g}"},
                {"type": "MEMORY", "value": str(step_spec.memory)},
            ]
            if step_spec.gpus:
                requirements.append({"type": "GPU", "value": str(step_spec.gpus)})
            overrides["resourceRequirements"] = requirements
        else:
            definition = step_spec.job_definition or ""
        body: dict[str, Any] = {
            "jobName": f"{run.name}-{step_spec.name}"[:128],
            "jobQueue": step_spec.queue,
            "jobDefinition": definition,
            "parameters": params,
            "containerOverrides": overrides,
            "tags": {**step_spec.tags, RUN_TAG: run.run_id, STEP_TAG: step_spec.name},
        }
        if size is not None and size > 1:
            body["arrayProperties"] = {"size": size}
        if step_spec.retry is not None:
            body["retryStrategy"] = step_spec.retry
        if step_spec.timeout is not None:
            body["timeout"] = {"attemptDurationSeconds": step_spec.timeout}
        request = s.SubmitJob.model_validate(body)
        return request, tuple(depends)

    def _ensure_job_definition(self, spec: wf.WorkflowSpec) -> None:
        """Command steps run on a job definition per workflow and image (Batch cannot override the image);
        commands, environment and resources are per-step overrides."""
        for image in sorted({st.image for st in spec.steps.values() if st.command is not None}):
            name = definition_name(spec.name, image)
            try:
                if jds.resolve(self.jobs.ctx, name).body.get("containerProperties", {}).get("image") == image:
                    continue
            except ClientError:
                pass
            request = s.RegisterJobDefinition.model_validate(
                {
                    "jobDefinitionName": name,
                    "type": "container",
                    "containerProperties": {
                        "image": image,
                        "command": ["true"],
                        "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "128"}],
                    },
                    "tags": {"openbatch:workflow": spec.name},
                }
            )
            jds.register(self.jobs.ctx, self.caller, request)

    def _submit(self, jobs: list[Job]) -> None:
        task = asyncio.get_running_loop().create_task(self._commit(jobs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _commit(self, jobs: list[Job]) -> None:
        # One submission at a time, in order: a job must be admitted after the jobs it depends on.
        async with self._submit_lock:
            now = self.jobs.ctx.clock.now_ms()
            engine = self.jobs.engine
            try:
                changes = await self.jobs.commit_new(jobs, now)
            except Exception:
                logger.exception("could not commit %d workflow step jobs", len(jobs))
                self._fail_uncommitted(jobs)
                return
            engine.admit(jobs)
            engine.notify(changes)

    def _fail_uncommitted(self, jobs: Iterable[Job]) -> None:
        now = self.jobs.ctx.clock.now_ms()
        for job in jobs:
            where = self._by_job.get(job.id)
            run = self.runs.get(where[0]) if where else None
            if run is not None and where is not None:
                self._step_done(run, run.steps[where[1]], FAILED, now, "The step's job could not be stored")
                self._advance(run)
        self._save()

    # --- persistence --------------------------------------------------------------------

    def _mark(self, run: RunState, step: StepState) -> None:
        self._dirty_steps[(run.run_id, step.name)] = (run.run_id, step)

    def _touch(self, run: RunState) -> None:
        self._dirty_runs[run.run_id] = run

    def _save(self) -> None:
        if not self._dirty_runs and not self._dirty_steps:
            return
        runs, steps = self._dirty_runs, self._dirty_steps
        self._dirty_runs, self._dirty_steps = {}, {}
        outbox = self._announce(runs.values())
        self.store.save([r.row() for r in runs.values()], [st.row(run_id) for run_id, st in steps.values()], outbox)
        self._outbox_written(outbox)

    def _outbox_written(self, outbox: list[OutboxEntry]) -> None:
        if outbox:
            for listener in self.outbox_committed:
                listener()

    def _announce(self, runs: Iterable[RunState]) -> list[OutboxEntry]:
        """Outbox entries for the runs whose status changed, committed with that change (as jobs' are)."""
        moved = [run for run in runs if run.status != run.announced]
        for run in moved:
            run.announced = run.status
        if not moved or not self.outbox_sources:
            return []
        views = [run.view(with_steps=True) for run in moved]
        return [entry for source in self.outbox_sources for entry in source(views)]

    def _load(self, row: RunRow) -> RunState:
        spec = wf.validate(row.body["document"])
        steps = {r.step: StepState.from_row(r) for r in self.store.get_steps(row.run_id)}
        for name in spec.steps:
            steps.setdefault(name, StepState(name))
        run = RunState(
            run_id=row.run_id,
            name=row.name,
            revision=row.revision,
            spec=spec,
            parameters=row.body.get("parameters") or {},
            created_at=row.created_at,
            steps={name: steps[name] for name in spec.steps},
            status=row.status,
            stopped_at=row.body.get("stoppedAt"),
            reason=row.body.get("reason"),
            redrives=row.body.get("redriveCount", 0),
            cancelling=bool(row.body.get("cancelling")),
            schedule=row.body.get("schedule"),
            announced=row.status,
        )
        run.refresh_sets()
        return run

    def _recover(self) -> None:
        """Re-derive unfinished runs from their jobs (the jobs are the truth; the engine has recovered them)."""
        rows = self.store.unfinished_runs()
        now = self.jobs.ctx.clock.now_ms()
        for row in rows:
            run = self._load(row)
            self.runs[run.run_id] = run
            live = [st for st in run.steps.values() if st.job_id is not None and st.status not in STEP_DONE]
            found = {job.id: job for job in self.jobs.get_jobs([st.job_id or "" for st in live])}
            for step in live:
                job = found.get(step.job_id or "")
                if job is None:
                    # Written before a crash that came before its job was committed: submit it again.
                    step.status, step.job_id = WAITING, None
                    self._mark(run, step)
                    continue
                self._by_job[job.id] = (run.run_id, step.name)
                step.started_at = step.started_at or job.started_at
                if run.spec.steps[step.name].map is not None:
                    try:
                        items = self._map_items(run, run.spec.steps[step.name])
                    except ClientError:
                        items = None
                    if items is not None:
                        self._items[(run.run_id, step.name)] = items
                if job.status.value != step.status:
                    self._apply(run, step, job.status, job, job.stopped_at or now)
            run.refresh_sets()
        for run in list(self.runs.values()):
            self._advance(run)
        self._save()
        if rows:
            logger.info("recovered %d unfinished workflow runs", len(rows))


def _remove_outputs(paths: list[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
            path.parent.rmdir()
        except OSError:
            pass  # the job left other files in its working directory: they stay, as for any job


def definition_name(workflow: str, image: str) -> str:
    """``openbatch-workflow-<name>``, suffixed with a digest of the image unless it is ``local``."""
    if image == "local":
        return DEFINITION_PREFIX + workflow
    return f"{DEFINITION_PREFIX}{workflow[:98]}-{hashlib.sha256(image.encode()).hexdigest()[:10]}"


def wf_env(what: str) -> str:
    return f"OPENBATCH_WORKFLOW_{what}"


def substitute(text: str, params: Mapping[str, str], outputs: Mapping[str, Any]) -> str:
    """``Ref::name`` from ``params`` and ``Ref::steps.S.outputs[.key[.key…]]`` from step outputs.

    Unknown references stay as they are (AWS's rule for parameters)."""

    def lookup(match: Any) -> str:
        ref: str = match.group(1)
        if ref.startswith("steps."):
            parts = ref.split(".")
            if len(parts) < 3 or parts[2] != "outputs" or parts[1] not in outputs:
                return str(match.group(0))
            value = outputs[parts[1]]
            for key in parts[3:]:
                if isinstance(value, dict) and key in value:
                    value = value[key]
                elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                    value = value[int(key)]
                else:
                    return str(match.group(0))
            return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        return params.get(ref, str(match.group(0)))

    return wf.REF.sub(lookup, text)
