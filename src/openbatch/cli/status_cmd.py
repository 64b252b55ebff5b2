"""``openbatch status``: queues with job counts by state, compute environments with the capacity in
use, and the oldest waiting job with the reason it waits.

Counts come from ListJobs (one listing per queue and state, as any client would do); a
queue's vCPUs in use from GetJobQueueSnapshot; a compute environment's from the server's
``/metrics`` (Prometheus text), read when present (``?`` otherwise).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
import typer
from prometheus_client.parser import text_string_to_metric_families

from openbatch.cli import common
from openbatch.cli.common import EndpointOption, ProfileOption, Target, usage
from openbatch.cli.jobs_cmd import STATUSES, WAITING, require_job
from openbatch.cli.resources_cmd import COMPUTE_ENVIRONMENT, JOB_QUEUE, list_of

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

COUNT_CAP = 10_000
"""Counting stops here per queue and state (shown as ``10000+``): a status line must stay quick."""


def _count(batch: BatchClient, queue: str, status: str, keep: list[dict[str, Any]]) -> int:
    n = 0
    pages = batch.get_paginator("list_jobs").paginate(
        jobQueue=queue,
        jobStatus=status,  # type: ignore[arg-type]
        PaginationConfig={"MaxItems": COUNT_CAP + 1, "PageSize": 1000},
    )
    for page in pages:
        n += len(page["jobSummaryList"])
        if status in WAITING:
            keep.extend({**j, "jobQueue": queue} for j in page["jobSummaryList"])
    return n


def _in_use(target: Target) -> dict[str, dict[str, float]]:
    """``{ce: {vcpus, memory_mib, gpus}}`` in use, from /metrics; empty when it cannot be read."""
    try:
        response = httpx.get(f"{target.endpoint_url}/metrics", timeout=10)
    except httpx.HTTPError:
        return {}
    if response.status_code != 200:
        return {}
    used: dict[str, dict[str, float]] = {}
    prefix = "openbatch_compute_environment_"
    for family in text_string_to_metric_families(response.text):
        if not (family.name.startswith(prefix) and family.name.endswith("_in_use")):
            continue
        resource = family.name.removeprefix(prefix).removesuffix("_in_use")
        for sample in family.samples:
            used.setdefault(sample.labels.get("ce", ""), {})[resource] = sample.value
    return used


def _why(batch: BatchClient, job: dict[str, Any], queues: dict[str, dict[str, Any]], used: dict[str, Any]) -> str:
    """A sentence on why a job is still waiting."""
    status = job["status"]
    queue = queues.get(common.name_of(str(job.get("jobQueue") or "")), {})
    if status == "SUBMITTED":
        return "just submitted: the scheduler has not taken it up yet"
    if status == "PENDING":
        depends = [d["jobId"] for d in job.get("dependsOn") or []]
        if depends:
            found = batch.describe_jobs(jobs=depends[:100])["jobs"]
            unfinished = [f"{d['jobId']} ({d['status']})" for d in found if d["status"] not in ("SUCCEEDED", "FAILED")]
            return "waits for " + (", ".join(unfinished) or ", ".join(depends))
        return job.get("statusReason") or "waits for its dependencies"
    if queue.get("state") == "DISABLED":
        return f"job queue {queue.get('jobQueueName')} is DISABLED"
    if job.get("statusReason"):
        return str(job["statusReason"])
    environments = [common.name_of(str(o["computeEnvironment"])) for o in queue.get("computeEnvironmentOrder") or []]
    need = {r["type"]: r["value"] for r in (job.get("container") or {}).get("resourceRequirements") or []}
    busy = ", ".join(f"{ce} uses {used.get(ce, {}).get('vcpus', 0):g} vCPUs" for ce in environments)
    wants = f"{need.get('VCPU', '?')} vCPU, {need.get('MEMORY', '?')} MiB"
    return f"waiting for capacity ({wants}); {busy}" if busy else f"waiting for capacity ({wants})"


def collect(target: Target) -> dict[str, Any]:
    batch = common.batch_client(target)
    queues = {q["jobQueueName"]: q for q in list_of(batch, JOB_QUEUE)}
    waiting: list[dict[str, Any]] = []
    queue_rows = []
    for name, queue in sorted(queues.items()):
        counts = {status: _count(batch, name, status, waiting) for status in STATUSES}
        snapshot = batch.get_job_queue_snapshot(jobQueue=name)
        capacity = (snapshot.get("queueUtilization") or {}).get("totalCapacityUsage") or []
        queue_rows.append(
            {
                "name": name,
                "state": queue.get("state"),
                "status": queue.get("status"),
                "priority": queue.get("priority"),
                "computeEnvironments": [
                    common.name_of(str(o["computeEnvironment"])) for o in queue.get("computeEnvironmentOrder") or []
                ],
                "jobCounts": counts,
                "vcpusInUse": next((u["quantity"] for u in capacity if u.get("capacityUnit") == "VCPU"), None),
            }
        )
    used = _in_use(target)
    environments = []
    for ce in sorted(list_of(batch, COMPUTE_ENVIRONMENT), key=lambda c: c["computeEnvironmentName"]):
        name = ce["computeEnvironmentName"]
        usage_now = used.get(name)
        environments.append(
            {
                "name": name,
                "state": ce.get("state"),
                "status": ce.get("status"),
                "maxvCpus": (ce.get("computeResources") or {}).get("maxvCpus"),
                "vcpusInUse": usage_now.get("vcpus") if usage_now else None,
                "memoryMiBInUse": usage_now.get("memory_mib") if usage_now else None,
                "gpusInUse": usage_now.get("gpus") if usage_now else None,
            }
        )
    oldest: dict[str, Any] | None = None
    if waiting:
        first = min(waiting, key=lambda j: (int(j.get("createdAt") or 0), j["jobId"]))
        job = require_job(batch, first["jobId"])
        oldest = {
            "jobId": job["jobId"],
            "jobName": job["jobName"],
            "jobQueue": common.name_of(str(job.get("jobQueue") or first["jobQueue"])),
            "status": job["status"],
            "createdAt": job.get("createdAt"),
            "reason": _why(batch, job, queues, used),
        }
    return {"queues": queue_rows, "computeEnvironments": environments, "oldestWaitingJob": oldest}


def _count_text(n: int) -> str:
    return f"{COUNT_CAP}+" if n > COUNT_CAP else str(n)


def status(
    output: str = typer.Option("table", "--output", "-o", help="table, json or yaml."),
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """Queues with job counts by state, compute environments with capacity in use, the oldest waiting job."""
    with common.reported():
        target = common.resolve(endpoint_url, profile)
        if output not in ("table", "json", "yaml"):
            raise usage(f"--output must be table, json or yaml; got {output!r}")
        report = collect(target)
        if output != "table":
            common.dump(report, output)
            return
        common.table(
            ["QUEUE", "STATE", "PRIORITY", *STATUSES, "VCPUS IN USE"],
            [
                [
                    q["name"],
                    q["state"],
                    q["priority"],
                    *(_count_text(q["jobCounts"][s]) for s in STATUSES),
                    "?" if q["vcpusInUse"] is None else f"{q['vcpusInUse']:g}",
                ]
                for q in report["queues"]
            ],
        )
        common.stdout.print()

        def used(value: float | None, unit: str = "") -> str:
            return "?" if value is None else f"{value:g}{unit}"

        common.table(
            ["COMPUTE ENVIRONMENT", "STATE", "STATUS", "VCPUS IN USE", "MAX VCPUS", "MEMORY IN USE"],
            [
                [
                    ce["name"],
                    ce["state"],
                    ce["status"],
                    used(ce["vcpusInUse"]),
                    ce["maxvCpus"],
                    used(ce["memoryMiBInUse"], " MiB"),
                ]
                for ce in report["computeEnvironments"]
            ],
        )
        common.stdout.print()
        oldest = report["oldestWaitingJob"]
        if oldest is None:
            common.stdout.print("No job is waiting.")
            return
        waited = common.age(oldest["createdAt"], int(time.time() * 1000))
        common.stdout.print(
            f"Oldest waiting job: {oldest['jobId']} ({oldest['jobName']}) in {oldest['jobQueue']}, "
            f"{oldest['status']} for {waited}: {oldest['reason']}",
            markup=False,
        )
