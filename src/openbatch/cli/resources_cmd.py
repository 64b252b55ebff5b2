"""``openbatch apply/get/describe/delete``: compute environments, job queues, job definitions,
scheduling policies, workflows and schedules as files, kubectl-style.

A resource file is a YAML stream; each document is ``kind:`` plus the fields of AWS's
create/register request for that kind, so what is written for boto3 or CloudFormation
carries over::

    kind: JobQueue
    jobQueueName: analytics
    priority: 10
    computeEnvironmentOrder: [{order: 1, computeEnvironment: default}]

``apply`` is idempotent: it creates what is missing, updates only the fields that
differ (Update*), and registers a new job definition revision only when the
definition differs from the latest active one. Workflows and schedules (``kind: Workflow``,
``kind: Schedule``) go to the native workflow API; see :mod:`openbatch.cli.workflow_resources`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
import yaml
from botocore.validate import ParamValidator

from openbatch.cli import common
from openbatch.cli import workflow_resources as native
from openbatch.cli.common import CliError, EndpointOption, OutputOption, ProfileOption, Target, usage

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

_WAIT_SECONDS = 60.0
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Kind:
    name: str
    aliases: tuple[str, ...]
    name_field: str
    create_operation: str
    native: bool = False
    """Served by the native workflow API rather than the Batch API."""


COMPUTE_ENVIRONMENT = Kind(
    "ComputeEnvironment",
    ("computeenvironment", "computeenvironments", "compute-environment", "compute-environments", "ce", "ces"),
    "computeEnvironmentName",
    "CreateComputeEnvironment",
)
JOB_QUEUE = Kind(
    "JobQueue",
    ("jobqueue", "jobqueues", "job-queue", "job-queues", "queue", "queues", "jq"),
    "jobQueueName",
    "CreateJobQueue",
)
JOB_DEFINITION = Kind(
    "JobDefinition",
    ("jobdefinition", "jobdefinitions", "job-definition", "job-definitions", "definition", "definitions", "jd"),
    "jobDefinitionName",
    "RegisterJobDefinition",
)
SCHEDULING_POLICY = Kind(
    "SchedulingPolicy",
    ("schedulingpolicy", "schedulingpolicies", "scheduling-policy", "scheduling-policies", "policy", "sp"),
    "name",
    "CreateSchedulingPolicy",
)
WORKFLOW = Kind(native.WORKFLOW, ("workflow", "workflows", "wf"), "name", "RegisterWorkflow", native=True)
SCHEDULE = Kind(native.SCHEDULE, ("schedule", "schedules"), "name", "CreateSchedule", native=True)
KINDS = (SCHEDULING_POLICY, COMPUTE_ENVIRONMENT, JOB_QUEUE, JOB_DEFINITION, WORKFLOW, SCHEDULE)
"""In the order ``apply`` works through them: what a queue refers to exists before the queue, the job
definitions a workflow's steps name before the workflow, a schedule's workflow before the schedule."""
JOB_ALIASES = ("job", "jobs")
KIND_HELP = (
    "ce | queue | jd | sp | workflow | schedule (or ComputeEnvironment, JobQueue, JobDefinition, "
    "SchedulingPolicy, Workflow, Schedule), or job"
)


def complete_kind(incomplete: str) -> list[str]:
    """Shell completion for KIND."""
    words = ["ce", "queue", "jd", "sp", "workflow", "schedule", "job", *(k.name for k in KINDS)]
    return [w for w in words if w.lower().startswith(incomplete.lower())]


def kind_of(text: str) -> Kind:
    wanted = text.lower()
    for kind in KINDS:
        if wanted == kind.name.lower() or wanted in kind.aliases:
            return kind
    raise usage(f"unknown kind {text!r}", f"kinds: {KIND_HELP}")


# --- reading what is there ------------------------------------------------------------------


def _paginate(batch: BatchClient, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in batch.get_paginator(operation).paginate(**kwargs):  # type: ignore[call-overload]
        items.extend(dict(item) for item in page[key])
    return items


def list_of(batch: BatchClient, kind: Kind) -> list[dict[str, Any]]:
    """Every resource of ``kind`` (job definitions: every active revision)."""
    if kind is COMPUTE_ENVIRONMENT:
        return _paginate(batch, "describe_compute_environments", "computeEnvironments")
    if kind is JOB_QUEUE:
        return _paginate(batch, "describe_job_queues", "jobQueues")
    if kind is JOB_DEFINITION:
        return _paginate(batch, "describe_job_definitions", "jobDefinitions", status="ACTIVE")
    arns = [p["arn"] for p in _paginate(batch, "list_scheduling_policies", "schedulingPolicies")]
    policies: list[dict[str, Any]] = []
    for i in range(0, len(arns), 100):
        policies.extend(
            dict(p) for p in batch.describe_scheduling_policies(arns=arns[i : i + 100])["schedulingPolicies"]
        )
    return policies


def name_field(kind: Kind, item: dict[str, Any]) -> str:
    return str(item[kind.name_field])


def find(batch: BatchClient, kind: Kind, name: str) -> dict[str, Any] | None:
    """The resource called ``name`` (a job definition: its latest active revision, or ``name:rev``)."""
    name = common.name_of(name)
    if kind is COMPUTE_ENVIRONMENT:
        found = batch.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"]
        return dict(found[0]) if found else None
    if kind is JOB_QUEUE:
        queues = batch.describe_job_queues(jobQueues=[name])["jobQueues"]
        return dict(queues[0]) if queues else None
    if kind is JOB_DEFINITION:
        if ":" in name:
            revisions = batch.describe_job_definitions(jobDefinitions=[name])["jobDefinitions"]
        else:
            revisions = batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
        active = [dict(r) for r in revisions if r.get("status") == "ACTIVE"]
        return max(active, key=lambda r: int(str(r["revision"]))) if active else None
    return next((p for p in list_of(batch, kind) if p["name"] == name), None)


def require(batch: BatchClient, kind: Kind, name: str) -> dict[str, Any]:
    found = find(batch, kind, name)
    if found is None:
        names = sorted({name_field(kind, item) for item in list_of(batch, kind)})
        shown = ", ".join(names[:30]) + (" …" if len(names) > 30 else "") if names else "none"
        raise CliError(f"{kind.name} {name!r} not found", f"known: {shown}")
    return found


# --- apply ----------------------------------------------------------------------------------


@dataclass
class Document:
    kind: Kind
    body: dict[str, Any]
    where: str

    @property
    def name(self) -> str:
        return str(self.body[self.kind.name_field])

    @property
    def label(self) -> str:
        return f"{self.kind.name}/{self.name}"


@dataclass
class Change:
    """What ``apply`` did (or would do) to one resource."""

    label: str
    action: str
    fields: list[str] = field(default_factory=list)


def load_documents(path: Path, batch: BatchClient) -> list[Document]:
    """Parse and check every document before anything is changed, so a bad file changes nothing."""
    try:
        text = path.read_text() if str(path) != "-" else typer.get_text_stream("stdin").read()
    except OSError as exc:
        raise usage(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        loaded = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise usage(f"{path} is not valid YAML{where}: {problem}") from None
    if not loaded:
        raise usage(f"{path} holds no resources", "each document needs kind: and the fields of AWS's request")
    documents: list[Document] = []
    problems: list[str] = []
    seen: set[str] = set()
    validator = ParamValidator()
    for number, raw in enumerate(loaded, 1):
        where = f"{path} document {number}"
        if not isinstance(raw, dict) or "kind" not in raw:
            problems.append(f"{where}: needs a 'kind:' ({', '.join(k.name for k in KINDS)})")
            continue
        body = dict(raw)
        kind_text = str(body.pop("kind"))
        try:
            kind = kind_of(kind_text)
        except CliError:
            problems.append(f"{where}: unknown kind {kind_text!r} (one of {', '.join(k.name for k in KINDS)})")
            continue
        if not isinstance(body.get(kind.name_field), str) or not body[kind.name_field]:
            problems.append(f"{where}: {kind.name} needs {kind.name_field}")
            continue
        if kind.native:
            found = native.problems_of(kind.name, body)
            if found:
                problems.append(f"{where} ({kind.name}/{body[kind.name_field]}): {'; '.join(found)}")
                continue
        else:
            shape = batch.meta.service_model.operation_model(kind.create_operation).input_shape
            assert shape is not None
            report = validator.validate(body, shape)
            if report.has_errors():
                detail = " ".join(report.generate_report().split())
                problems.append(f"{where} ({kind.name}/{body[kind.name_field]}): {detail}")
                continue
        document = Document(kind, body, where)
        if document.label in seen:
            problems.append(f"{where}: {document.label} appears twice")
            continue
        seen.add(document.label)
        documents.append(document)
    if problems:
        raise usage(f"{path} is not a valid resource file: " + "; ".join(problems))
    return sorted(documents, key=lambda d: KINDS.index(d.kind))


def _prune(value: Any) -> Any:
    """Drop what means "not set" (None, empty lists and maps) so that absent and empty compare equal."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _covered(desired: Any, current: Any) -> bool:
    """Whether ``current`` already has every field ``desired`` sets (fields only the server set are ignored)."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(_covered(v, current.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(current, list)
            and len(desired) == len(current)
            and all(_covered(d, c) for d, c in zip(desired, current, strict=True))
        )
    if isinstance(desired, bool) or isinstance(current, bool):
        return bool(desired is current)
    if isinstance(desired, int | float) and isinstance(current, int | float | str):
        try:
            return float(desired) == float(current)
        except ValueError:
            return False
    same: bool = desired == current
    return same


_DEFINITION_OUTPUT_FIELDS = ("jobDefinitionArn", "revision", "status", "containerOrchestrationType")
_DEFINITION_DEFAULTS: dict[str, Any] = {"propagateTags": False, "platformCapabilities": ["EC2"]}


def _normal_definition(definition: dict[str, Any]) -> dict[str, Any]:
    """A job definition as a comparable register request: output-only fields and defaults dropped."""
    body = {k: v for k, v in definition.items() if k not in _DEFINITION_OUTPUT_FIELDS}
    for key, default in _DEFINITION_DEFAULTS.items():
        if body.get(key) == default:
            body.pop(key)
    pruned: dict[str, Any] = _prune(body)
    return pruned


def _queue_order(order: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return sorted((int(o["order"]), common.name_of(str(o["computeEnvironment"]))) for o in order)


def _policy_arn(batch: BatchClient, value: str) -> str:
    """``schedulingPolicyArn`` may name the policy; AWS wants the ARN."""
    if value.startswith("arn:"):
        return value
    policy = find(batch, SCHEDULING_POLICY, value)
    if policy is None:
        raise CliError(f"scheduling policy {value!r} not found", "apply it first, or give its ARN")
    return str(policy["arn"])


def _apply_tags(batch: BatchClient, arn: str, desired: dict[str, str], current: dict[str, Any]) -> None:
    stale = [k for k in (current.get("tags") or {}) if k not in desired]
    if stale:
        batch.untag_resource(resourceArn=arn, tagKeys=stale)
    if desired:
        batch.tag_resource(resourceArn=arn, tags=desired)


_CE_UPDATABLE = {"state", "unmanagedvCpus", "computeResources", "serviceRole", "updatePolicy", "context"}
_CE_RESOURCES_FIXED = {"type"}


def _plan_compute_environment(desired: dict[str, Any], current: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    update: dict[str, Any] = {}
    changed: list[str] = []
    for key, value in desired.items():
        if key in ("computeEnvironmentName", "tags") or _covered(_prune(value), current.get(key)):
            continue
        if key == "computeResources" and isinstance(value, dict):
            now = current.get("computeResources") or {}
            resources = {k: v for k, v in value.items() if not _covered(_prune(v), now.get(k))}
            fixed = sorted(set(resources) & _CE_RESOURCES_FIXED)
            if fixed:
                raise CliError(
                    f"ComputeEnvironment/{desired['computeEnvironmentName']}: computeResources.{fixed[0]} "
                    "cannot be changed in place",
                    "delete it (openbatch delete ce NAME) and apply again",
                )
            update["computeResources"] = resources
            changed.extend(f"computeResources.{k}" for k in resources)
            continue
        if key not in _CE_UPDATABLE:
            raise CliError(
                f"ComputeEnvironment/{desired['computeEnvironmentName']}: {key} cannot be changed in place",
                "delete it (openbatch delete ce NAME) and apply again",
            )
        update[key] = value
        changed.append(key)
    return update, changed


def _plan_job_queue(
    batch: BatchClient, desired: dict[str, Any], current: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    update: dict[str, Any] = {}
    for key, value in desired.items():
        if key in ("jobQueueName", "tags"):
            continue
        if key == "computeEnvironmentOrder":
            if _queue_order(value) != _queue_order(current.get(key) or []):
                update[key] = value
        elif key == "schedulingPolicyArn":
            if common.name_of(str(value)) != common.name_of(str(current.get(key) or "")):
                update[key] = _policy_arn(batch, str(value))
        elif key == "jobQueueType" or (key == "serviceEnvironmentOrder"):
            if not _covered(_prune(value), current.get(key)):
                raise CliError(f"JobQueue/{desired['jobQueueName']}: {key} cannot be changed in place")
        elif not _covered(_prune(value), _prune(current.get(key))):
            update[key] = value
    return update, sorted(update)


def _wait_settled(read: Callable[[], dict[str, Any] | None], label: str) -> dict[str, Any] | None:
    """Wait while the resource is CREATING/UPDATING/DELETING (bounded)."""
    deadline = time.monotonic() + _WAIT_SECONDS
    while True:
        item = read()
        if item is None or item.get("status") not in ("CREATING", "UPDATING", "DELETING"):
            return item
        if time.monotonic() > deadline:
            raise CliError(f"{label} is still {item.get('status')} after {_WAIT_SECONDS:g} s")
        time.sleep(_POLL_SECONDS)


def apply_document(batch: BatchClient, document: Document, *, dry_run: bool, target: Target | None = None) -> Change:
    kind, body, label = document.kind, dict(document.body), document.label
    if kind.native:
        api = native.NativeApi(target or common.resolve(None, None))
        apply_native = native.apply_workflow if kind is WORKFLOW else native.apply_schedule
        outcome = apply_native(api, body, dry_run=dry_run)
        return Change(label, outcome.action, outcome.fields)
    current = find(batch, kind, document.name)
    if kind is JOB_DEFINITION:
        if current is not None and _normal_definition(body) == _normal_definition(current):
            return Change(label, "unchanged", [f"revision {current['revision']}"])
        if dry_run:
            return Change(label, "created" if current is None else "updated", ["new revision"])
        registered = batch.register_job_definition(**body)
        return Change(label, "created" if current is None else "updated", [f"revision {registered['revision']}"])
    if kind is JOB_QUEUE and isinstance(body.get("schedulingPolicyArn"), str) and not dry_run:
        body["schedulingPolicyArn"] = _policy_arn(batch, body["schedulingPolicyArn"])
    if current is None:
        if not dry_run:
            if kind is COMPUTE_ENVIRONMENT:
                batch.create_compute_environment(**body)
            elif kind is JOB_QUEUE:
                batch.create_job_queue(**body)
            else:
                batch.create_scheduling_policy(**body)
            _wait_settled(lambda: find(batch, kind, document.name), label)
        return Change(label, "created")
    arn = str(current.get("computeEnvironmentArn") or current.get("jobQueueArn") or current.get("arn"))
    tags = body.get("tags")
    if kind is COMPUTE_ENVIRONMENT:
        update, changed = _plan_compute_environment(body, current)
    elif kind is JOB_QUEUE:
        update, changed = _plan_job_queue(batch, body, current)
    else:
        policy = body.get("fairsharePolicy")
        same = policy is None or _covered(_prune(policy), current.get("fairsharePolicy"))
        update, changed = ({} if same else {"fairsharePolicy": policy}), ([] if same else ["fairsharePolicy"])
    retag = tags is not None and dict(current.get("tags") or {}) != tags
    if retag:
        changed.append("tags")
    if not changed:
        return Change(label, "unchanged")
    if not dry_run:
        if update and kind is COMPUTE_ENVIRONMENT:
            batch.update_compute_environment(computeEnvironment=document.name, **update)
        elif update and kind is JOB_QUEUE:
            batch.update_job_queue(jobQueue=document.name, **update)
        elif update:
            batch.update_scheduling_policy(arn=arn, **update)
        if retag and tags is not None:
            _apply_tags(batch, arn, tags, current)
        _wait_settled(lambda: find(batch, kind, document.name), label)
    return Change(label, "updated", changed)


def apply(
    file: Path = typer.Option(..., "--filename", "-f", help="YAML stream of resources ('-' reads stdin)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; change nothing."),
    output: str = typer.Option("table", "--output", "-o", help="table or json."),
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """Create or update the resources in a file; only what differs is changed.

    Each document is `kind:` (ComputeEnvironment, JobQueue, JobDefinition, SchedulingPolicy)
    plus the fields of AWS's create/register request; or `kind: Workflow` plus the workflow
    file's fields, or `kind: Schedule` plus name, cron, workflow or job, and optionally
    timezone, parameters, missedRunPolicy and state (ENABLED or PAUSED). An unchanged job
    definition or workflow registers no new revision.
    """
    with common.reported():
        target = common.resolve(endpoint_url, profile)
        if output not in ("table", "json"):
            raise usage(f"--output must be table or json; got {output!r}")
        batch = common.batch_client(target)
        documents = load_documents(file, batch)
        changes: list[Change] = []
        try:
            for document in documents:
                changes.append(apply_document(batch, document, dry_run=dry_run, target=target))
                if output == "table":
                    _print_change(changes[-1], dry_run)
        finally:
            if output == "json":
                common.dump([c.__dict__ for c in changes], "json")


def _print_change(change: Change, dry_run: bool) -> None:
    style = {"created": "green", "updated": "yellow", "unchanged": "dim"}[change.action]
    action = f"would be {change.action}" if dry_run and change.action != "unchanged" else change.action
    detail = f" ({', '.join(change.fields)})" if change.fields else ""
    common.stdout.print(f"{change.label} [{style}]{action}[/]{detail}")


# --- get / describe / delete ----------------------------------------------------------------


def _rows(kind: Kind, items: list[dict[str, Any]], wide: bool) -> tuple[list[str], list[list[Any]]]:
    if kind is COMPUTE_ENVIRONMENT:
        columns = ["NAME", "TYPE", "STATE", "STATUS", "MAXVCPUS"] + (["STATUS REASON", "ARN"] if wide else [])
        rows = [
            [
                ce["computeEnvironmentName"],
                ce.get("type"),
                ce.get("state"),
                ce.get("status"),
                (ce.get("computeResources") or {}).get("maxvCpus", ""),
                *([ce.get("statusReason"), ce.get("computeEnvironmentArn")] if wide else []),
            ]
            for ce in items
        ]
    elif kind is JOB_QUEUE:
        columns = ["NAME", "PRIORITY", "STATE", "STATUS", "COMPUTE ENVIRONMENTS"]
        columns += ["SCHEDULING POLICY", "ARN"] if wide else []
        rows = [
            [
                q["jobQueueName"],
                q.get("priority"),
                q.get("state"),
                q.get("status"),
                ",".join(name for _, name in _queue_order(list(q.get("computeEnvironmentOrder") or []))),
                *([common.name_of(q.get("schedulingPolicyArn") or ""), q.get("jobQueueArn")] if wide else []),
            ]
            for q in items
        ]
    elif kind is JOB_DEFINITION:
        columns = ["NAME", "REVISION", "TYPE", "IMAGE"] + (["COMMAND", "ARN"] if wide else [])
        rows = []
        for d in items:
            container = d.get("containerProperties") or {}
            rows.append(
                [
                    d["jobDefinitionName"],
                    d.get("revision"),
                    d.get("type"),
                    container.get("image", ""),
                    *([" ".join(container.get("command") or []), d.get("jobDefinitionArn")] if wide else []),
                ]
            )
    else:
        columns = ["NAME", "SHARE DECAY", "COMPUTE RESERVATION"] + (["SHARES", "ARN"] if wide else [])
        rows = []
        for p in items:
            fairshare = p.get("fairsharePolicy") or {}
            shares = ",".join(
                f"{s.get('shareIdentifier')}={s.get('weightFactor', 1)}"
                for s in fairshare.get("shareDistribution") or []
            )
            rows.append(
                [
                    p["name"],
                    fairshare.get("shareDecaySeconds", ""),
                    fairshare.get("computeReservation", ""),
                    *([shares, p.get("arn")] if wide else []),
                ]
            )
    return columns, rows


def _latest_revisions(definitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for d in definitions:
        name = d["jobDefinitionName"]
        if name not in latest or int(d["revision"]) > int(latest[name]["revision"]):
            latest[name] = d
    return [latest[name] for name in sorted(latest)]


def get(
    kind_text: str = typer.Argument(..., metavar="KIND", help=KIND_HELP, autocompletion=complete_kind),
    name: str | None = typer.Argument(None, help="Only this one (a job definition: all its active revisions)."),
    output: str = OutputOption,
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """List compute environments, job queues, job definitions, scheduling policies (or jobs)."""
    with common.reported():
        target = common.resolve(endpoint_url, profile)
        common.check_output(output)
        if kind_text.lower() in JOB_ALIASES:
            from openbatch.cli import jobs_cmd

            jobs_cmd.list_jobs_to(target, output=output, queue=None, statuses=[], name=name, array_job_id=None)
            return
        kind = kind_of(kind_text)
        if kind.native:
            _get_native(target, kind, name, output)
            return
        batch = common.batch_client(target)
        if name is None:
            items = list_of(batch, kind)
            if kind is JOB_DEFINITION:
                items = _latest_revisions(items)
        elif kind is JOB_DEFINITION and ":" not in name:
            items = sorted(
                (d for d in list_of(batch, kind) if d["jobDefinitionName"] == name), key=lambda d: int(d["revision"])
            )
            if not items:
                require(batch, kind, name)
        else:
            items = [require(batch, kind, name)]
        if output in ("json", "yaml"):
            common.dump(items if name is None or kind is JOB_DEFINITION else items[0], output)
            return
        columns, rows = _rows(kind, items, output == "wide")
        if not rows:
            common.stderr.print(f"no {kind.name} resources")
            return
        common.table(columns, rows)


def _get_native(target: Target, kind: Kind, name: str | None, output: str) -> None:
    api = native.NativeApi(target)
    items = native.list_of(api, kind.name) if name is None else [native.require(api, kind.name, name)]
    if output in ("json", "yaml"):
        common.dump(items if name is None else items[0], output)
        return
    columns, rows = native.rows(kind.name, items, output == "wide")
    if not rows:
        common.stderr.print(f"no {kind.name} resources")
        return
    common.table(columns, rows)


def describe(
    first: str = typer.Argument(
        ..., metavar="KIND|JOB", help=f"{KIND_HELP}; or a job id alone.", autocompletion=complete_kind
    ),
    name: str | None = typer.Argument(None, metavar="[NAME]", help="The resource's name (a job id for 'job')."),
    output: str = typer.Option("yaml", "--output", "-o", help="yaml or json."),
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """Show one resource or job in full (`describe queue NAME`, `describe JOB_ID`)."""
    with common.reported():
        target = common.resolve(endpoint_url, profile)
        if output not in ("json", "yaml"):
            raise usage(f"--output must be yaml or json; got {output!r}")
        if name is None or first.lower() in JOB_ALIASES:
            from openbatch.cli import jobs_cmd

            job_id = name if name is not None else first
            if name is None and _looks_like_kind(first):
                raise usage(f"describe {first} needs a NAME", "e.g. openbatch describe queue default")
            common.dump(jobs_cmd.require_job(common.batch_client(target), job_id), output)
            return
        kind = kind_of(first)
        if kind.native:
            common.dump(native.require(native.NativeApi(target), kind.name, name), output)
            return
        common.dump(require(common.batch_client(target), kind, name), output)


def _looks_like_kind(text: str) -> bool:
    try:
        kind_of(text)
    except CliError:
        return False
    return True


def delete(
    kind_text: str = typer.Argument(
        ..., metavar="KIND", help=KIND_HELP.removesuffix(", or job"), autocompletion=complete_kind
    ),
    name: str = typer.Argument(..., help="Name (a job definition: NAME for every revision, or NAME:REV)."),
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """Delete a resource. Compute environments and job queues are disabled first, as AWS requires.

    Deleting a workflow removes every revision (its runs stay); it is refused while a schedule names it.
    """
    with common.reported():
        target = common.resolve(endpoint_url, profile)
        kind = kind_of(kind_text)
        if kind.native:
            common.stdout.print(native.delete(native.NativeApi(target), kind.name, name))
            return
        batch = common.batch_client(target)
        current = require(batch, kind, name)
        label = f"{kind.name}/{common.name_of(name)}"
        if kind is JOB_DEFINITION:
            revisions = (
                [current]
                if ":" in name
                else [d for d in list_of(batch, kind) if d["jobDefinitionName"] == current["jobDefinitionName"]]
            )
            for revision in revisions:
                batch.deregister_job_definition(jobDefinition=str(revision["jobDefinitionArn"]))
            listed = ", ".join(str(r["revision"]) for r in revisions)
            common.stdout.print(f"{label} deregistered (revision {listed})")
            return
        if kind is SCHEDULING_POLICY:
            batch.delete_scheduling_policy(arn=str(current["arn"]))
            common.stdout.print(f"{label} deleted")
            return
        if kind is COMPUTE_ENVIRONMENT:
            users = [
                q["jobQueueName"]
                for q in list_of(batch, JOB_QUEUE)
                if current["computeEnvironmentName"]
                in dict(_queue_order(list(q.get("computeEnvironmentOrder") or []))).values()
            ]
            if users:
                raise CliError(
                    f"{label} is used by job queue(s) {', '.join(users)}",
                    "delete those queues or remove it from their computeEnvironmentOrder first",
                )

        def read() -> dict[str, Any] | None:
            return find(batch, kind, name)

        if current.get("state") != "DISABLED":
            common.stderr.print(f"disabling {label} first (AWS deletes only disabled ones)")
            if kind is COMPUTE_ENVIRONMENT:
                batch.update_compute_environment(computeEnvironment=common.name_of(name), state="DISABLED")
            else:
                batch.update_job_queue(jobQueue=common.name_of(name), state="DISABLED")
            _wait_settled(read, label)
        if kind is COMPUTE_ENVIRONMENT:
            batch.delete_compute_environment(computeEnvironment=common.name_of(name))
        else:
            batch.delete_job_queue(jobQueue=common.name_of(name))
        _wait_gone(read, label)
        common.stdout.print(f"{label} deleted")


def _wait_gone(read: Callable[[], dict[str, Any] | None], label: str) -> None:
    deadline = time.monotonic() + _WAIT_SECONDS
    for item in _polls(read):
        if item is None or item.get("status") == "DELETED":
            return
        if time.monotonic() > deadline:
            raise CliError(f"{label} is still {item.get('status')} after {_WAIT_SECONDS:g} s")


def _polls(read: Callable[[], dict[str, Any] | None]) -> Iterator[dict[str, Any] | None]:
    # Bounded by the caller's deadline.
    while True:
        yield read()
        time.sleep(_POLL_SECONDS)
