"""Job use cases: SubmitJob, DescribeJobs, ListJobs, Cancel/Terminate (single and bulk), job tags."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable
from itertools import islice
from typing import Any

from openbatch.domain.arns import ResourceType, is_arn
from openbatch.domain.errors import ValidationError
from openbatch.domain.job import Job, JobSpec, StatusChange
from openbatch.domain.states import JobStatus
from openbatch.fidelity import consumables
from openbatch.scheduler.engine import JobEngine
from openbatch.service import job_definitions as jds
from openbatch.service import multinode, submission
from openbatch.service import request_models as s
from openbatch.service.context import Caller, ServiceContext
from openbatch.service.group_commit import GroupCommitter
from openbatch.service.job_views import JobRenderer
from openbatch.service.pagination import decode_position, encode_token, page_size
from openbatch.store.base import JobQuery, JobRecord
from openbatch.store.job_codec import from_record, to_record

MAX_DESCRIBE = 100
MAX_BULK = 50
_LIST_TOKEN = "jobs"


class JobService:
    def __init__(self, ctx: ServiceContext, engine: JobEngine) -> None:
        self.ctx = ctx
        self.engine = engine
        self.committer = GroupCommitter(ctx.store.insert_jobs)
        self._specs: OrderedDict[str, JobSpec] = OrderedDict()
        """Specs of array parents no longer in memory, for rendering their finished children."""

    def dispatch(self, name: str, caller: Caller, request: Any) -> dict[str, Any] | Awaitable[dict[str, Any]]:
        handler = getattr(self, f"op_{name}")
        result: dict[str, Any] | Awaitable[dict[str, Any]] = handler(caller, request)
        return result

    def renderer(self, caller: Caller) -> JobRenderer:
        queue_arns = {q.name: q.arn for q in self.engine.registry.queues.values()}
        return JobRenderer(caller.arns, queue_arns, self.engine.waiting_reasons())

    # --- SubmitJob ---------------------------------------------------------------------

    async def op_SubmitJob(self, caller: Caller, req: s.SubmitJob) -> dict[str, Any]:
        registry = self.engine.registry
        submission.check_job_name(req.jobName)
        queue = submission.check_queue(registry.queues.get(submission.queue_name(req.jobQueue)), req.jobQueue)
        definition = jds.resolve(self.ctx, req.jobDefinition)
        submission.check_fairshare(req, registry.policy_of(queue))
        depends_on = submission.check_dependencies(req, self._dependency_info)
        spec = submission.build_spec(req, queue, definition, depends_on)
        consumables.check_exist(self.ctx.store, spec.resources.consumables)
        now = self.ctx.clock.now_ms()
        jobs = submission.build_jobs(spec, req, now)
        # Commit before answering: an accepted job survives any crash after this line.
        changes = await self.commit_new(jobs, now)
        self.engine.admit(jobs)
        self.engine.notify(changes)
        head = jobs[0]
        return {
            "jobArn": caller.arns.build(ResourceType.JOB, head.id),
            "jobName": spec.job_name,
            "jobId": head.id,
        }

    async def commit_new(self, jobs: list[Job], now: int) -> list[StatusChange]:
        """Commit new jobs with their outbox entries; return their state changes, for ``admit`` and ``notify``.

        A job that waits for nothing is committed RUNNABLE (``evaluate_before_commit``): one write
        instead of a second one by the next cycle, with the SUBMITTED and RUNNABLE changes as before.
        """
        changes = [StatusChange(job.id, None, job.status, now, job) for job in jobs]
        # The SUBMITTED events are rendered before a job moves on, so they show it as submitted.
        outbox = self.engine.outbox_for(changes)
        evaluated = self.engine.evaluate_before_commit(jobs, now)
        if evaluated:
            changes += evaluated
            outbox += self.engine.outbox_for(evaluated)
        await self.committer.commit([to_record(job, with_spec=True) for job in jobs], outbox)
        return changes

    def _dependency_info(self, ids: list[str]) -> dict[str, submission.DependencyInfo]:
        found: dict[str, submission.DependencyInfo] = {}
        missing = []
        for job_id in ids:
            job = self.engine.jobs.get(job_id)
            if job is None:
                missing.append(job_id)
            else:
                size = job.spec.array_size if job.array_index is None else None
                found[job_id] = submission.DependencyInfo(True, size)
        for record in self.ctx.store.get_jobs(missing):
            size = None
            if record.array_index is None:
                size = (record.spec or {}).get("array_size")
            found[record.id] = submission.DependencyInfo(True, size)
        return found

    # --- DescribeJobs / ListJobs ----------------------------------------------------

    def get_jobs(self, ids: list[str]) -> list[Job]:
        """Jobs by id, from memory when unfinished, else from the store; unknown ids are skipped."""
        result: dict[str, Job] = {}
        missing = []
        for job_id in ids:
            job = self.engine.jobs.get(job_id)
            if job is not None:
                result[job_id] = job
            else:
                missing.append(job_id)
        for record in self.ctx.store.get_jobs(missing):
            result[record.id] = self._load(record)
        return [result[i] for i in dict.fromkeys(ids) if i in result]

    def _load(self, record: JobRecord) -> Job:
        if record.parent_id is None or "node_index" in record.body:
            return from_record(record)  # a node job has a spec of its own
        return from_record(record, self._parent_spec(record.parent_id))

    def _parent_spec(self, parent_id: str) -> JobSpec | None:
        parent = self.engine.jobs.get(parent_id)
        if parent is not None:
            return parent.spec
        spec = self._specs.get(parent_id)
        if spec is None:
            records = self.ctx.store.get_jobs([parent_id])
            if not records:
                return None
            spec = self._specs[parent_id] = from_record(records[0]).spec
            if len(self._specs) > 1000:
                self._specs.popitem(last=False)
        return spec

    def op_DescribeJobs(self, caller: Caller, req: s.DescribeJobs) -> dict[str, Any]:
        if len(req.jobs) > MAX_DESCRIBE:
            raise ValidationError(
                f"Error executing request, Exception : Maximum number of jobs supported is  {MAX_DESCRIBE}#"
            )
        render = self.renderer(caller)
        return {"jobs": [render.detail(job) for job in self.get_jobs(req.jobs)]}

    def op_ListJobs(self, caller: Caller, req: s.ListJobs) -> dict[str, Any]:
        given = [x for x in (req.jobQueue, req.arrayJobId, req.multiNodeJobId) if x]
        if len(given) != 1:
            raise ValidationError("Specify exactly one of jobQueue, arrayJobId or multiNodeJobId")
        query, limit = self._list_query(req)
        # Read-your-writes: transitions made in memory reach the store first.
        self.engine.flush()
        if query.parent_id is not None:
            # An array job's children or a multi-node job's nodes: nothing for a job of the other kind.
            kind = "multiNodeJobId" if req.multiNodeJobId else "arrayJobId"
            if not multinode.check_listed_parent(kind, self.get_jobs([query.parent_id])):
                return {"jobSummaryList": []}
        after = decode_position(_LIST_TOKEN, req.nextToken, _list_cursor)
        records = self.ctx.store.list_jobs(query, after=after, limit=limit + 1)
        render = self.renderer(caller)
        # An unfinished job is rendered from the engine's own object (just flushed, so the same state) rather
        # than rebuilt from its record: a page of queued jobs skips a Job construction per row.
        live = self.engine.jobs
        result: dict[str, Any] = {
            "jobSummaryList": [render.summary(live.get(r.id) or self._load(r)) for r in records[:limit]]
        }
        if len(records) > limit:
            last = records[limit - 1]
            position = [last.array_index, last.id] if query.parent_id else [last.created_at, last.id]
            result["nextToken"] = encode_token(_LIST_TOKEN, position)
        return result

    def _list_query(self, req: s.ListJobs) -> tuple[JobQuery, int]:
        filters = req.filters or []
        if len(filters) > 1:
            raise ValidationError("ListJobs accepts only one filter at a time")
        statuses: tuple[str, ...] = (req.jobStatus or JobStatus.RUNNING.value,)
        fields: dict[str, Any] = {}
        if filters:
            name, values = filters[0].name, filters[0].values or []
            if len(values) != 1:
                raise ValidationError(f"Filter {name} needs exactly one value")
            value = values[0]
            if name != "SHARE_IDENTIFIER":
                statuses = ()  # AWS: a filter lists every status, except with SHARE_IDENTIFIER
            if name == "JOB_NAME":
                fields["name_prefix" if value.endswith("*") else "name_exact"] = value.rstrip("*")
            elif name in ("BEFORE_CREATED_AT", "AFTER_CREATED_AT"):
                if not value.isdigit():
                    raise ValidationError(f"Filter {name} needs a time in epoch milliseconds; got {value!r}")
                fields["created_before" if name == "BEFORE_CREATED_AT" else "created_after"] = int(value)
            elif name == "SHARE_IDENTIFIER":
                fields["share_identifier"] = value
            elif name == "JOB_DEFINITION":
                fields.update(_definition_filter(value))
            else:
                raise ValidationError(
                    f"Unknown filter {name!r}: use JOB_NAME, BEFORE_CREATED_AT, AFTER_CREATED_AT or SHARE_IDENTIFIER"
                )
        limit = page_size(req.maxResults, default=100 if filters else 1000, maximum=100 if filters else 1000)
        queue = None
        if req.jobQueue:
            queue = submission.queue_name(req.jobQueue)
            if queue not in self.engine.registry.queues:
                raise ValidationError(f"JobQueue {req.jobQueue} not found")
        query = JobQuery(queue=queue, parent_id=req.arrayJobId or req.multiNodeJobId, statuses=statuses, **fields)
        return query, limit

    # --- cancel / terminate -----------------------------------------------------------

    def _check_reason(self, reason: str) -> None:
        if not reason or len(reason) > 1024:
            raise ValidationError("reason must be 1 to 1024 characters long")

    def op_CancelJob(self, caller: Caller, req: s.CancelJob) -> dict[str, Any]:
        if not req.jobId:
            raise ValidationError("jobId must not be empty")
        self._check_reason(req.reason)
        job = self.engine.find(req.jobId)
        if job is not None:
            self.engine.cancel(job, req.reason)
        return {}

    def op_TerminateJob(self, caller: Caller, req: s.TerminateJob) -> dict[str, Any]:
        if not req.jobId:
            raise ValidationError("jobId must not be empty")
        self._check_reason(req.reason)
        job = self.engine.find(req.jobId)
        if job is not None:
            self.engine.terminate(job, req.reason)
        return {}

    def _bulk(self, ids: list[str], reason: str, terminate: bool) -> dict[str, Any]:
        if not 1 <= len(ids) <= MAX_BULK:
            raise ValidationError(f"jobs must list 1 to {MAX_BULK} job ids")
        self._check_reason(reason)
        successful, errors = [], []
        for job_id in ids:
            job = self.engine.find(job_id)
            try:
                if job is not None:
                    (self.engine.terminate if terminate else self.engine.cancel)(job, reason)
                successful.append(job_id)
            except Exception as exc:
                errors.append({"job": job_id, "code": "ServerException", "message": str(exc)})
        return {"successful": successful, "errors": errors}

    def op_CancelJobs(self, caller: Caller, req: s.CancelJobs) -> dict[str, Any]:
        return self._bulk(req.jobs, req.reason, terminate=False)

    def op_TerminateJobs(self, caller: Caller, req: s.TerminateJobs) -> dict[str, Any]:
        return self._bulk(req.jobs, req.reason, terminate=True)

    def op_GetJobQueueSnapshot(self, caller: Caller, req: s.GetJobQueueSnapshot) -> dict[str, Any]:
        name = submission.queue_name(req.jobQueue)
        if name not in self.engine.registry.queues:
            raise ValidationError(f"JobQueue {req.jobQueue} not found")
        waiting = self.engine.runnable.get(name)
        render = self.renderer(caller)
        now = self.ctx.clock.now_ms()
        jobs = [
            {"jobArn": render.job_arn(job.id), "earliestTimeAtPosition": job.runnable_since or now}
            for job in islice(waiting or (), 100)
        ]
        total, shares, active = self.engine.queue_utilization(name)
        utilization: dict[str, Any] = {
            "totalCapacityUsage": [{"capacityUnit": "VCPU", "quantity": total}],
            "lastUpdatedAt": now,
        }
        if shares is not None:
            top = sorted(shares.items(), key=lambda item: (-item[1], item[0]))[:20]
            utilization["fairshareUtilization"] = {
                "activeShareCount": active,
                "topCapacityUtilization": [
                    {"shareIdentifier": share, "capacityUsage": [{"capacityUnit": "VCPU", "quantity": vcpus}]}
                    for share, vcpus in top
                ],
            }
        return {"frontOfQueue": {"jobs": jobs, "lastUpdatedAt": now}, "queueUtilization": utilization}

    # --- tags (JobTags protocol) --------------------------------------------------------

    def get_tags(self, job_id: str) -> dict[str, str]:
        jobs = self.get_jobs([job_id])
        if not jobs:
            raise ValidationError(f"Job {job_id} does not exist")
        return dict(jobs[0].tags)

    def set_tags(self, job_id: str, tags: dict[str, str]) -> None:
        job = self.engine.find(job_id)
        if job is not None:
            job.tags = tags
            self.engine.mark_dirty(job)
            return
        loaded = self.get_jobs([job_id])
        if loaded:
            loaded[0].tags = tags
            self.ctx.store.save_jobs([to_record(loaded[0])])


def _list_cursor(position: Any) -> tuple[int, str]:
    key, job_id = position
    if isinstance(key, bool) or not isinstance(key, int) or not isinstance(job_id, str):
        raise ValueError(position)
    return key, job_id


def _definition_filter(value: str) -> dict[str, Any]:
    """AWS's JOB_DEFINITION filter: a name (any revision), ``name*`` (prefix), or ``name:rev``/ARN (exact)."""
    if value.endswith("*"):
        if is_arn(value):
            raise ValidationError("A JOB_DEFINITION filter with a full ARN cannot use '*'")
        return {"definition_prefix": value[:-1]}
    name, revision = jds.parse_reference(value)
    return {"definition_name": name, "definition_revision": revision}
