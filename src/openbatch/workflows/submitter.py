"""Submit a workflow file to any AWS Batch endpoint (real AWS included) through boto3's public Batch API.

No server-side workflow engine is assumed, so what the file asks must be expressible
as plain jobs:

* each command step becomes a job definition ``<workflow>-<step>`` (registered only
  when its content changed) and one job; a ``jobDefinition`` step uses its definition;
* jobs are submitted in topological order with ``dependsOn`` on their upstream jobs;
  a step with more than 20 upstream jobs (Batch's cap) waits on *marker* jobs
  (``true``), each depending on up to 20 of them, nested as deep as needed;
* ``map: {items}`` becomes an array job; a map step depending on a map step of the same
  size uses ``N_TO_N``. The items travel in ``OPENBATCH_ITEMS`` (one per line, JSON for
  anything but single-line strings) and a ``sh`` prelude exports the child's own
  ``OPENBATCH_ITEM`` (the image needs ``sh`` and ``sed``);
* step outputs, ``map.fromStep`` and ``when: on_failure|always`` need the workflow
  engine of an OpenBatch server (``openbatch workflow run``): such files are refused.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from openbatch.domain.errors import BatchError
from openbatch.workflows import spec as wf

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

MAX_DEPENDS_ON = 20
RUN_TAG = "openbatch:workflow-run"
STEP_TAG = "openbatch:workflow-step"
_ITEM_PRELUDE = (
    'OPENBATCH_ITEM="$(printf \'%s\\n\' "$OPENBATCH_ITEMS" | sed -n "$((${AWS_BATCH_JOB_ARRAY_INDEX:-0} + 1))p")"; '
    'export OPENBATCH_ITEM; exec "$@"'
)


class SubmitError(BatchError):
    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class _BatchResolver:
    def __init__(self, batch: BatchClient) -> None:
        self.batch = batch

    def job_definition_exists(self, reference: str) -> bool:
        if ":" in reference:
            found = self.batch.describe_job_definitions(jobDefinitions=[reference])["jobDefinitions"]
        else:
            found = self.batch.describe_job_definitions(jobDefinitionName=reference, status="ACTIVE")["jobDefinitions"]
        return any(d.get("status") == "ACTIVE" for d in found)

    def job_queue_exists(self, name: str) -> bool:
        return bool(self.batch.describe_job_queues(jobQueues=[name])["jobQueues"])


class Submitter:
    def __init__(self, batch: BatchClient) -> None:
        self.batch = batch

    @classmethod
    def connect(cls, endpoint_url: str | None, region: str | None) -> Submitter:
        session = boto3.session.Session()
        kwargs: dict[str, Any] = {"region_name": region or session.region_name or "us-east-1"}
        if endpoint_url:
            kwargs["endpoint_url"] = endpoint_url
            if session.get_credentials() is None:
                # A local endpoint needs no real credentials, but the SDK signs every request.
                kwargs.update(aws_access_key_id="openbatch", aws_secret_access_key="openbatch")
        return cls(session.client("batch", **kwargs))

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise SubmitError(f"{what}: {error.get('Code', 'Error')}: {error.get('Message', exc)}") from None
        except BotoCoreError as exc:
            raise SubmitError(f"{what}: {exc}") from None

    # --- submit ----------------------------------------------------------------------

    def submit(self, text: str, params: Mapping[str, str]) -> dict[str, Any]:
        try:
            spec = wf.parse(text, params=params, resolver=_BatchResolver(self.batch))
        except wf.WorkflowValidationError as exc:
            raise SubmitError("the workflow is invalid", exc.problems) from None
        except (ClientError, BotoCoreError) as exc:
            raise SubmitError(f"cannot reach the Batch endpoint: {exc}") from None
        engine_only = [
            f"steps.{st.name}: "
            + ("reads step outputs" if st.output_refs else "map.fromStep" if st.map and st.map.from_step else "when")
            for st in spec.steps.values()
            if not st.is_static
        ]
        if engine_only:
            raise SubmitError(
                "these steps need the OpenBatch workflow engine (use `openbatch workflow run`)", engine_only
            )
        run_id = f"submit-{uuid.uuid4()}"
        markers: list[str] = []
        steps: dict[str, dict[str, Any]] = {}
        sizes: dict[str, int | None] = {}
        for name, step in spec.steps.items():
            definition = self._definition(spec, step)
            items = list(step.map.items) if step.map is not None and step.map.items is not None else None
            size = len(items) if items is not None else None
            plain, n_to_n = [], []
            for dep in step.depends_on:
                if size is not None and size > 1 and sizes[dep] == size:
                    n_to_n.append(steps[dep]["jobId"])
                else:
                    plain.append(steps[dep]["jobId"])
            plain = self._within_cap(spec, run_id, plain, MAX_DEPENDS_ON - len(n_to_n), markers)
            depends = [{"jobId": j} for j in plain] + [{"jobId": j, "type": "N_TO_N"} for j in n_to_n]
            request: dict[str, Any] = {
                "jobName": f"{spec.name}-{name}"[:128],
                "jobQueue": step.queue,
                "jobDefinition": definition,
                "parameters": {**spec.parameters, **step.parameters},
                "dependsOn": depends,
                "tags": {**step.tags, RUN_TAG: run_id, STEP_TAG: name},
                "propagateTags": True,
            }
            environment = {**step.environment, "OPENBATCH_OUTPUT": "/dev/null"}
            overrides: dict[str, Any] = {}
            if items is not None:
                if size == 1:
                    environment["OPENBATCH_ITEM"] = _item_line(items[0])
                else:
                    request["arrayProperties"] = {"size": size}
                    environment["OPENBATCH_ITEMS"] = "\n".join(_item_line(i) for i in items)
                    if step.command is not None:
                        overrides["command"] = ["sh", "-c", _ITEM_PRELUDE, "sh", *step.command]
            overrides["environment"] = [{"name": k, "value": v} for k, v in environment.items()]
            request["containerOverrides"] = overrides
            job = self._call(f"SubmitJob for step {name}", self.batch.submit_job, **request)
            steps[name] = {"status": "SUBMITTED", "jobId": job["jobId"]}
            if size is not None and size > 1:
                steps[name]["arraySize"] = size
            sizes[name] = size
        return {
            "runId": run_id,
            "workflowName": spec.name,
            "status": "RUNNING",
            "parameters": spec.parameters,
            "steps": steps,
            "markerJobIds": markers,
        }

    def _within_cap(
        self, spec: wf.WorkflowSpec, run_id: str, ids: list[str], cap: int, markers: list[str]
    ) -> list[str]:
        """Replace more than ``cap`` upstream jobs by marker jobs that each wait for up to 20 of them."""
        level = 0
        while len(ids) > cap and level < 10:
            level += 1
            grouped = []
            for start in range(0, len(ids), MAX_DEPENDS_ON):
                chunk = ids[start : start + MAX_DEPENDS_ON]
                job = self._call(
                    "SubmitJob for a marker job",
                    self.batch.submit_job,
                    jobName=f"{spec.name}-marker"[:128],
                    jobQueue=next(iter(spec.steps.values())).queue,
                    jobDefinition=self._marker_definition(spec),
                    dependsOn=[{"jobId": j} for j in chunk],
                    tags={RUN_TAG: run_id, STEP_TAG: "(marker)"},
                )
                markers.append(job["jobId"])
                grouped.append(job["jobId"])
            ids = grouped
        return ids

    def _marker_definition(self, spec: wf.WorkflowSpec) -> str:
        return self._register(f"{spec.name}-marker"[:128], {"image": "local", "command": ["true"]}, 1, 32)

    def _definition(self, spec: wf.WorkflowSpec, step: wf.StepSpec) -> str:
        if step.job_definition is not None:
            return step.job_definition
        container: dict[str, Any] = {
            "image": step.image,
            "command": list(step.command or ()),
            "environment": [{"name": k, "value": v} for k, v in sorted(step.environment.items())],
        }
        extra: dict[str, Any] = {}
        if step.retry is not None:
            extra["retryStrategy"] = step.retry
        if step.timeout is not None:
            extra["timeout"] = {"attemptDurationSeconds": step.timeout}
        return self._register(f"{spec.name}-{step.name}"[:128], container, step.vcpus, step.memory, step.gpus, extra)

    def _register(
        self,
        name: str,
        container: dict[str, Any],
        vcpus: float,
        memory: int,
        gpus: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> str:
        requirements = [{"type": "VCPU", "value": f"{vcpus:g}"}, {"type": "MEMORY", "value": str(memory)}]
        if gpus:
            requirements.append({"type": "GPU", "value": str(gpus)})
        container = {**container, "resourceRequirements": requirements}
        extra = extra or {}
        current = self._call(
            f"DescribeJobDefinitions {name}",
            self.batch.describe_job_definitions,
            jobDefinitionName=name,
            status="ACTIVE",
        )["jobDefinitions"]
        for existing in sorted(current, key=lambda d: -d["revision"])[:1]:
            props = existing.get("containerProperties") or {}
            same = all(props.get(k) == v for k, v in container.items()) and all(
                existing.get(k) == v for k, v in extra.items()
            )
            if same:
                return str(existing["jobDefinitionArn"])
        registered = self._call(
            f"RegisterJobDefinition {name}",
            self.batch.register_job_definition,
            jobDefinitionName=name,
            type="container",
            containerProperties=container,
            **extra,
        )
        return str(registered["jobDefinitionArn"])

    # --- follow ----------------------------------------------------------------------

    def refresh(self, result: dict[str, Any]) -> dict[str, Any]:
        """``result`` with each step's current status; the run ends when every step has."""
        steps: dict[str, dict[str, Any]] = result["steps"]
        ids = [step["jobId"] for step in steps.values()]
        jobs: dict[str, Any] = {}
        for start in range(0, len(ids), 100):
            described = self._call("DescribeJobs", self.batch.describe_jobs, jobs=ids[start : start + 100])["jobs"]
            jobs.update((job["jobId"], job) for job in described)
        for step in steps.values():
            job = jobs.get(step["jobId"])
            if job is None:
                continue
            status = job["status"]
            reason = job.get("statusReason")
            if status == "FAILED" and not job.get("attempts") and (reason or "").startswith("Dependent Job failed"):
                status = "NOT_RUN"
            step["status"] = status
            for key, name in (("startedAt", "startedAt"), ("stoppedAt", "stoppedAt")):
                if job.get(key):
                    step[name] = job[key]
            if reason and status in ("FAILED", "NOT_RUN"):
                step["reason"] = reason
        statuses = [step["status"] for step in steps.values()]
        done = all(s in ("SUCCEEDED", "FAILED", "NOT_RUN") for s in statuses)
        if done:
            failed = [(n, st) for n, st in steps.items() if st["status"] != "SUCCEEDED"]
            result["status"] = "FAILED" if failed else "SUCCEEDED"
            if failed:
                first = next(((n, st) for n, st in failed if st["status"] == "FAILED"), failed[0])
                result["statusReason"] = f"Step {first[0]} {first[1]['status']}: {first[1].get('reason')}"
        return result


def _item_line(item: Any) -> str:
    if isinstance(item, str) and "\n" not in item:
        return item
    return json.dumps(item, separators=(",", ":"))
