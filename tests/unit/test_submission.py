"""SubmitJob resolution: overrides, fair-share members, dependencies, specs and the jobs built (§5, §6.3)."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import ValidationError as PydanticValidationError

from openbatch.api.errors import describe_validation_error
from openbatch.domain import jobspec
from openbatch.domain.errors import ClientError, ValidationError
from openbatch.domain.job import STATUS_SUMMARY_KEYS
from openbatch.domain.jobspec import Resources, RetryPolicy
from openbatch.domain.states import JobStatus
from openbatch.service import request_models as s
from openbatch.service import submission as sub
from openbatch.service.submission import DependencyInfo
from tests.unit.builders import (
    NOW,
    exit_rule,
    make_definition,
    make_job,
    make_policy,
    make_queue,
    make_submit,
)

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
DEP_A = "11111111-1111-4111-8111-111111111111"
DEP_B = "22222222-2222-4222-8222-222222222222"
ARRAY_5 = "33333333-3333-4333-8333-333333333333"
ARRAY_3 = "44444444-4444-4444-8444-444444444444"


class FakeLookup:
    """A ``DependencyLookup`` over a fixed set of jobs; records what it was asked."""

    def __init__(self, jobs: Mapping[str, int | None]) -> None:
        self.jobs = dict(jobs)
        self.calls: list[list[str]] = []

    def __call__(self, ids: list[str]) -> dict[str, DependencyInfo]:
        self.calls.append(list(ids))
        return {i: DependencyInfo(exists=True, array_size=self.jobs[i]) for i in ids if i in self.jobs}


def known_jobs() -> FakeLookup:
    return FakeLookup({DEP_A: None, DEP_B: None, ARRAY_5: 5, ARRAY_3: 3})


def _env(**pairs: str) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in pairs.items()]


def _req(kind: str, value: str) -> dict[str, str]:
    return {"type": kind, "value": value}


# --- effective_container: override merge rules ----------------------------------------


DEFINITION_CONTAINER: dict[str, Any] = {
    "image": "busybox",
    "command": ["sleep", "10"],
    "environment": _env(A="1", B="2"),
    "resourceRequirements": [_req("VCPU", "1"), _req("MEMORY", "512"), _req("GPU", "1")],
    "vcpus": 1,
    "memory": 256,
}


def _effective(overrides: dict[str, Any] | None) -> dict[str, Any]:
    definition = make_definition(container=copy.deepcopy(DEFINITION_CONTAINER))
    before = copy.deepcopy(definition.body)
    members = {} if overrides is None else {"containerOverrides": overrides}
    result = sub.effective_container(definition.body, make_submit(**members))
    assert definition.body == before, "the definition must not be mutated"
    return result


def test_no_overrides_is_the_definition_container() -> None:
    assert _effective(None) == DEFINITION_CONTAINER
    assert _effective({}) == DEFINITION_CONTAINER


def test_definition_without_container_properties() -> None:
    assert sub.effective_container({"type": "container"}, make_submit()) == {}


def test_command_override_replaces_the_whole_command() -> None:
    container = _effective({"command": ["echo", "hi"]})
    assert container["command"] == ["echo", "hi"]


def test_environment_override_merges_by_name() -> None:
    container = _effective({"environment": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]})
    assert container["environment"] == _env(A="1", B="20", C="3")


def test_environment_override_without_value_is_empty() -> None:
    container = _effective({"environment": [{"name": "A"}]})
    assert container["environment"] == _env(A="", B="2")


def test_resource_requirements_merge_per_type() -> None:
    container = _effective({"resourceRequirements": [_req("MEMORY", "2048")]})
    assert sorted(container["resourceRequirements"], key=lambda r: r["type"]) == [
        _req("GPU", "1"),
        _req("MEMORY", "2048"),
        _req("VCPU", "1"),
    ]
    assert jobspec.resources_of(container) == Resources(vcpus=1.0, memory_mib=2048, gpus=1)


def test_resource_requirements_override_adds_a_type() -> None:
    definition = make_definition()  # VCPU 1, MEMORY 512, no GPU
    container = sub.effective_container(
        definition.body, make_submit(containerOverrides={"resourceRequirements": [_req("GPU", "2")]})
    )
    assert jobspec.resources_of(container) == Resources(vcpus=1.0, memory_mib=512, gpus=2)


def test_legacy_overrides_do_not_beat_definition_requirements() -> None:
    container = _effective({"vcpus": 8, "memory": 4096})
    assert (container["vcpus"], container["memory"]) == (8, 4096)
    assert jobspec.resources_of(container) == Resources(vcpus=1.0, memory_mib=512, gpus=1)


def test_legacy_overrides_apply_to_a_legacy_definition() -> None:
    definition = make_definition(container={"image": "busybox", "command": ["true"], "vcpus": 1, "memory": 256})
    container = sub.effective_container(definition.body, make_submit(containerOverrides={"vcpus": 4, "memory": 1024}))
    assert jobspec.resources_of(container) == Resources(vcpus=4.0, memory_mib=1024, gpus=0)


# --- fair share ------------------------------------------------------------------------


FIFO_MESSAGE = (
    "Job with shareIdentifier or schedulingPriority can onlybe submitted to job queue "
    "with fair share scheduling policy."
)


@pytest.mark.parametrize(
    "members",
    [
        {"shareIdentifier": "teamA"},
        {"schedulingPriorityOverride": 5},
        {"shareIdentifier": "a", "schedulingPriorityOverride": 1},
    ],
    ids=["share", "priority", "both"],
)
@pytest.mark.parametrize("fifo", ["no-policy", "policy-without-fairshare"])
def test_fair_share_members_on_a_fifo_queue_use_the_aws_message(members: dict[str, Any], fifo: str) -> None:
    policy = None if fifo == "no-policy" else make_policy(fairshare=False)
    with pytest.raises(ClientError) as info:
        sub.check_fairshare(make_submit(**members), policy)
    assert type(info.value) is ClientError
    assert info.value.message == FIFO_MESSAGE


def test_fifo_queue_without_fair_share_members() -> None:
    sub.check_fairshare(make_submit(), None)


def test_fair_share_queue_requires_a_share_identifier() -> None:
    with pytest.raises(ClientError, match="shareIdentifier is required"):
        sub.check_fairshare(make_submit(), make_policy({"shareIdentifier": "teamA"}))


@pytest.mark.parametrize(
    "members",
    [
        {"shareIdentifier": "teamA"},
        {"shareIdentifier": "x" * 255},
        {"shareIdentifier": "unlisted"},
        {"shareIdentifier": "teamA", "schedulingPriorityOverride": 0},
        {"shareIdentifier": "teamA", "schedulingPriorityOverride": 9999},
    ],
    ids=["listed", "255-chars", "unlisted", "priority-0", "priority-9999"],
)
def test_valid_fair_share_members(members: dict[str, Any]) -> None:
    sub.check_fairshare(make_submit(**members), make_policy({"shareIdentifier": "teamA", "weightFactor": 0.5}))


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"shareIdentifier": ""}, "shareIdentifier"),
        ({"shareIdentifier": "x" * 256}, "shareIdentifier"),
        ({"shareIdentifier": "team*"}, "shareIdentifier"),
        ({"shareIdentifier": "team-a"}, "shareIdentifier"),
        ({"shareIdentifier": "team a"}, "shareIdentifier"),
        ({"shareIdentifier": "teamA", "schedulingPriorityOverride": -1}, "schedulingPriorityOverride"),
        ({"shareIdentifier": "teamA", "schedulingPriorityOverride": 10000}, "schedulingPriorityOverride"),
    ],
    ids=["empty", "256-chars", "wildcard", "hyphen", "space", "priority-negative", "priority-10000"],
)
def test_invalid_fair_share_members(members: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        sub.check_fairshare(make_submit(**members), make_policy({"shareIdentifier": "team*"}))


def test_share_identifier_with_trailing_newline_is_rejected() -> None:
    with pytest.raises(ValidationError):
        sub.check_fairshare(make_submit(shareIdentifier="teamA\n"), make_policy())


def test_share_weights() -> None:
    policy = make_policy(
        {"shareIdentifier": "team*", "weightFactor": 0.25},
        {"shareIdentifier": "teamA", "weightFactor": 0.5},
    )
    assert policy.fairshare is not None
    assert policy.fairshare.weight_of("teamA") == 0.5, "an exact identifier beats a wildcard"
    assert policy.fairshare.weight_of("teamB") == 0.25
    assert policy.fairshare.weight_of("other") == 1.0


# --- dependencies ------------------------------------------------------------------------


def _dependencies(dependencies: list[dict[str, str]], array_size: int | None = None) -> tuple[dict[str, str], ...]:
    members: dict[str, Any] = {"dependsOn": dependencies}
    if array_size is not None:
        members["arrayProperties"] = {"size": array_size}
    return sub.check_dependencies(make_submit(**members), known_jobs())


def test_no_dependencies_skip_the_lookup() -> None:
    lookup = known_jobs()
    assert sub.check_dependencies(make_submit(), lookup) == ()
    assert sub.check_dependencies(make_submit(dependsOn=[]), lookup) == ()
    assert lookup.calls == []


def test_dependencies_are_looked_up_once_and_echoed() -> None:
    lookup = known_jobs()
    entries = [{"jobId": DEP_A}, {"jobId": ARRAY_3, "type": "N_TO_N"}, {"type": "SEQUENTIAL"}]
    req = make_submit(dependsOn=entries, arrayProperties={"size": 3})
    assert sub.check_dependencies(req, lookup) == tuple(entries)
    assert lookup.calls == [[DEP_A, ARRAY_3]]


@pytest.mark.parametrize(
    ("dependencies", "array_size"),
    [
        ([{"jobId": DEP_A}], None),
        ([{"jobId": ARRAY_5}], None),
        ([{"jobId": DEP_A}, {"jobId": DEP_B}], 2),
        ([{"type": "SEQUENTIAL"}], 4),
        ([{"jobId": DEP_A}, {"type": "SEQUENTIAL"}], 4),
        ([{"jobId": ARRAY_5, "type": "N_TO_N"}], 5),
        ([{"jobId": DEP_A}] * 20, None),
    ],
    ids=["plain", "on-array", "two-on-array", "sequential", "plain-and-sequential", "n-to-n", "twenty"],
)
def test_valid_dependencies(dependencies: list[dict[str, str]], array_size: int | None) -> None:
    assert _dependencies(dependencies, array_size) == tuple(dependencies)


@pytest.mark.parametrize(
    ("dependencies", "array_size", "error", "message"),
    [
        ([{"jobId": "no-such-job"}], None, ClientError, "job no-such-job does not exist"),
        ([{"jobId": DEP_A}, {"jobId": "no-such-job"}], 3, ClientError, "no-such-job"),
        ([{"jobId": DEP_A}] * 21, None, ValidationError, "at most 20"),
        ([{"jobId": DEP_A, "type": "SEQUENTIAL"}], 3, ValidationError, "must not name a jobId"),
        ([{"type": "SEQUENTIAL"}], None, ValidationError, "only valid on an array job"),
        ([{"jobId": ARRAY_5, "type": "N_TO_N"}], 3, ValidationError, r"same size \(5\) as this array \(3\)"),
        ([{"jobId": DEP_A, "type": "N_TO_N"}], 3, ValidationError, r"same size \(None\)"),
        ([{"jobId": ARRAY_5, "type": "N_TO_N"}], None, ValidationError, "only valid on an array job"),
        ([{}], None, ValidationError, "need a jobId"),
        ([{"type": "N_TO_N"}], 5, ValidationError, "need a jobId"),
    ],
    ids=[
        "unknown",
        "one-unknown",
        "twenty-one",
        "sequential-with-job-id",
        "sequential-not-array",
        "n-to-n-size-mismatch",
        "n-to-n-on-plain-job",
        "n-to-n-not-array",
        "no-job-id",
        "n-to-n-no-job-id",
    ],
)
def test_invalid_dependencies(
    dependencies: list[dict[str, str]], array_size: int | None, error: type[ClientError], message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        _dependencies(dependencies, array_size)
    assert type(info.value) is error


def test_dependency_that_is_known_but_gone() -> None:
    def lookup(ids: list[str]) -> dict[str, DependencyInfo]:
        return {i: DependencyInfo(exists=False, array_size=None) for i in ids}

    with pytest.raises(ClientError, match="does not exist"):
        sub.check_dependencies(make_submit(dependsOn=[{"jobId": DEP_A}]), lookup)


# --- queues and names -------------------------------------------------------------------


def test_check_queue() -> None:
    queue = make_queue()
    assert sub.check_queue(queue, "default-queue") is queue
    with pytest.raises(ClientError, match="JobQueue missing not found"):
        sub.check_queue(None, "missing")
    with pytest.raises(ClientError, match="DISABLED"):
        sub.check_queue(make_queue(enabled=False), "default-queue")


def test_queue_name_accepts_a_name_or_an_arn() -> None:
    assert sub.queue_name("q1") == "q1"
    assert sub.queue_name("arn:aws:batch:us-east-1:123456789012:job-queue/q1") == "q1"
    with pytest.raises(ValidationError):
        sub.queue_name("arn:aws:batch:us-east-1:123456789012:compute-environment/q1")


@pytest.mark.parametrize("name", ["a", "Job-1_x", "9lives", "x" * 128])
def test_valid_job_names(name: str) -> None:
    assert sub.check_job_name(name) == name


@pytest.mark.parametrize("name", ["", "-job", "_job", "job name", "job.name", "x" * 129, "jöb"])
def test_invalid_job_names(name: str) -> None:
    with pytest.raises(ValidationError, match="jobName"):
        sub.check_job_name(name)


# --- build_spec -------------------------------------------------------------------------


_MULTINODE = make_definition(
    type="multinode",
    containerProperties=None,
    nodeProperties={
        "numNodes": 2,
        "mainNode": 0,
        "nodeRangeProperties": [{"targetNodes": ":", "container": {"image": "busybox", "command": ["true"]}}],
    },
)


def _spec(**members: Any) -> Any:
    definition = members.pop("definition", None) or make_definition()
    return sub.build_spec(make_submit(**members), make_queue(), definition, ())


def test_build_spec_for_a_plain_submission() -> None:
    spec = _spec()
    assert spec.job_name == "sleeper-job"
    assert spec.queue == "default-queue"
    assert spec.definition_arn.endswith(":job-definition/sleeper:1")
    assert spec.definition_name == "sleeper"
    assert spec.command == ("sleep", "1")
    assert spec.container["command"] == ["sleep", "1"]
    assert spec.resources == Resources(vcpus=1.0, memory_mib=512, gpus=0)
    assert spec.retry == RetryPolicy()
    assert spec.retry_wire is None
    assert spec.timeout_seconds is None
    assert spec.parameters == {}
    assert spec.propagate_tags is False
    assert spec.platform_capabilities == ("EC2",)
    assert spec.scheduling_priority is None
    assert spec.share_identifier is None
    assert spec.depends_on == ()
    assert spec.array_size is None


def test_build_spec_merges_parameters_and_substitutes_the_command() -> None:
    definition = make_definition(command=["echo", "Ref::a", "--b=Ref::b"], parameters={"a": "1", "b": "2"})
    spec = _spec(definition=definition, parameters={"b": "20"})
    assert spec.parameters == {"a": "1", "b": "20"}
    assert spec.command == ("echo", "1", "--b=20")
    assert spec.container["command"] == ["echo", "1", "--b=20"]


def test_build_spec_substitutes_an_overridden_command() -> None:
    spec = _spec(parameters={"n": "3"}, containerOverrides={"command": ["sleep", "Ref::n"]})
    assert spec.command == ("sleep", "3")


def test_build_spec_missing_parameter() -> None:
    with pytest.raises(ValidationError) as info:
        _spec(containerOverrides={"command": ["echo", "Ref::job_id"]})
    assert info.value.message == "Unable to substitute value. No parameter found for reference job_id"


def test_build_spec_environment() -> None:
    definition = make_definition(container={"image": "busybox", "command": ["env"], "environment": _env(A="1")})
    spec = _spec(definition=definition, containerOverrides={"environment": _env(B="2")})
    assert spec.environment == {"A": "1", "B": "2"}


@pytest.mark.parametrize(
    ("members", "error", "message"),
    [
        ({"containerOverrides": {"environment": _env(AWS_BATCH_JOB_ID="x")}}, ValidationError, "AWS_BATCH"),
        ({"containerOverrides": {"resourceRequirements": [_req("MEMORY", "2")]}}, ValidationError, "MEMORY"),
        ({"retryStrategy": {"attempts": 11}}, ValidationError, "between 1 and 10"),
        ({"timeout": {"attemptDurationSeconds": 0}}, ValidationError, "attemptDurationSeconds"),
        ({"jobName": "-bad"}, ValidationError, "jobName"),
        ({"definition": make_definition(command=None)}, ClientError, "no command"),
        ({"containerOverrides": {"command": []}}, ClientError, "no command"),
        ({"definition": _MULTINODE, "containerOverrides": {"command": ["x"]}}, ClientError, "nodeOverrides"),
        ({"definition": _MULTINODE, "arrayProperties": {"size": 2}}, ClientError, "array jobs"),
        ({"nodeOverrides": {"numNodes": 2}}, ClientError, "multinode job definition"),
    ],
    ids=[
        "reserved-env",
        "bad-memory",
        "bad-retry",
        "bad-timeout",
        "bad-name",
        "no-command",
        "empty-command",
        "mnp-container-overrides",
        "mnp-array",
        "node-overrides-on-container",
    ],
)
def test_build_spec_rejects(members: dict[str, Any], error: type[ClientError], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        _spec(**members)
    assert type(info.value) is error


def test_build_spec_rejects_a_definition_without_container_properties() -> None:
    definition = make_definition()
    definition.body.pop("containerProperties")
    with pytest.raises(ClientError, match="only container"):
        _spec(definition=definition)


def test_submitted_retry_strategy_replaces_the_definition_one() -> None:
    strategy = {"attempts": 3, "evaluateOnExit": [exit_rule("EXIT", on_exit_code="1")]}
    definition = make_definition(retryStrategy=strategy)
    inherited = _spec(definition=definition)
    assert inherited.retry_wire == strategy
    assert inherited.retry.attempts == 3 and len(inherited.retry.rules) == 1
    replaced = _spec(definition=definition, retryStrategy={"attempts": 2})
    assert replaced.retry_wire == {"attempts": 2}
    assert replaced.retry == RetryPolicy(attempts=2)


def test_submitted_timeout_replaces_the_definition_one() -> None:
    definition = make_definition(timeout={"attemptDurationSeconds": 600})
    assert _spec(definition=definition).timeout_seconds == 600
    assert _spec(definition=definition, timeout={"attemptDurationSeconds": 120}).timeout_seconds == 120


def test_scheduling_priority_and_propagate_tags_overrides() -> None:
    definition = make_definition(schedulingPriority=10, propagateTags=True, platformCapabilities=["FARGATE"])
    inherited = _spec(definition=definition)
    assert (inherited.scheduling_priority, inherited.propagate_tags) == (10, True)
    assert inherited.platform_capabilities == ("FARGATE",)
    overridden = _spec(definition=definition, schedulingPriorityOverride=0, propagateTags=False)
    assert (overridden.scheduling_priority, overridden.propagate_tags) == (0, False)


@pytest.mark.parametrize("size", [2, 5, 10_000])
def test_array_size_in_bounds(size: int) -> None:
    assert _spec(arrayProperties={"size": size}).array_size == size


@pytest.mark.parametrize("size", [-1, 0, 1, 10_001])
def test_array_size_out_of_bounds(size: int) -> None:
    with pytest.raises(ValidationError, match="between 2 and 10000"):
        _spec(arrayProperties={"size": size})


def test_array_properties_without_size_is_a_plain_job() -> None:
    assert _spec(arrayProperties={}).array_size is None


# --- build_jobs -------------------------------------------------------------------------


def _jobs(**members: Any) -> list[Any]:
    req = make_submit(**members)
    depends_on = sub.check_dependencies(req, known_jobs())
    spec = sub.build_spec(req, make_queue(), make_definition(), depends_on)
    return sub.build_jobs(spec, req, NOW)


def test_build_jobs_for_a_plain_job() -> None:
    (job,) = _jobs(dependsOn=[{"jobId": DEP_A}, {"jobId": DEP_B}], tags={"team": "a"})
    assert UUID4.match(job.id)
    assert job.status is JobStatus.SUBMITTED
    assert job.created_at == NOW
    assert job.tags == {"team": "a"}
    assert job.deps == (DEP_A, DEP_B)
    assert job.parent_id is None and job.array_index is None
    assert job.status_summary is None
    assert not job.is_array_parent
    assert job.attempts == [] and job.current is None


def test_build_jobs_gives_fresh_ids() -> None:
    assert _jobs()[0].id != _jobs()[0].id


def test_build_jobs_rejects_too_many_tags() -> None:
    spec = make_job().spec()
    with pytest.raises(ValidationError, match="at most 50 tags"):
        sub.build_jobs(spec, make_submit(tags={f"k{i}": "v" for i in range(51)}), NOW)


def test_build_jobs_for_an_array_of_five() -> None:
    jobs = _jobs(
        arrayProperties={"size": 5},
        dependsOn=[{"jobId": DEP_A}, {"jobId": ARRAY_5, "type": "N_TO_N"}, {"type": "SEQUENTIAL"}],
        tags={"team": "a"},
    )
    parent, children = jobs[0], jobs[1:]
    assert UUID4.match(parent.id)
    assert parent.status is JobStatus.SUBMITTED
    assert parent.is_array_parent
    assert parent.tags == {"team": "a"}
    assert parent.deps == (), "the parent waits on nothing itself; its children carry the edges"
    assert parent.status_summary == {
        "SUBMITTED": 0,
        "PENDING": 5,
        "RUNNABLE": 0,
        "STARTING": 0,
        "RUNNING": 0,
        "SUCCEEDED": 0,
        "FAILED": 0,
    }
    assert tuple(parent.status_summary) == STATUS_SUMMARY_KEYS
    assert parent.summary_updated_at == NOW

    assert [c.id for c in children] == [f"{parent.id}:{i}" for i in range(5)]
    for index, child in enumerate(children):
        assert child.status is JobStatus.PENDING
        assert child.parent_id == parent.id
        assert child.array_index == index
        assert child.spec is parent.spec
        assert child.created_at == NOW
        assert child.tags == {}
        assert child.status_summary is None
        assert not child.is_array_parent
    assert [c.deps for c in children] == [
        (DEP_A, f"{ARRAY_5}:0"),
        (DEP_A, f"{ARRAY_5}:1", f"{parent.id}:0"),
        (DEP_A, f"{ARRAY_5}:2", f"{parent.id}:1"),
        (DEP_A, f"{ARRAY_5}:3", f"{parent.id}:2"),
        (DEP_A, f"{ARRAY_5}:4", f"{parent.id}:3"),
    ]


@pytest.mark.parametrize(
    ("dependencies", "expected"),
    [
        ([], [(), (), ()]),
        ([{"jobId": DEP_A}], [(DEP_A,), (DEP_A,), (DEP_A,)]),
        ([{"jobId": ARRAY_3, "type": "N_TO_N"}], [(f"{ARRAY_3}:0",), (f"{ARRAY_3}:1",), (f"{ARRAY_3}:2",)]),
        ([{"type": "SEQUENTIAL"}], [(), ("{parent}:0",), ("{parent}:1",)]),
    ],
    ids=["none", "plain", "n-to-n", "sequential"],
)
def test_array_child_edges(dependencies: list[dict[str, str]], expected: list[tuple[str, ...]]) -> None:
    parent, *children = _jobs(arrayProperties={"size": 3}, dependsOn=dependencies)
    assert [c.deps for c in children] == [tuple(d.format(parent=parent.id) for d in deps) for deps in expected]


# --- describe_validation_error ------------------------------------------------------------


def _pydantic_error(body: dict[str, Any]) -> PydanticValidationError:
    with pytest.raises(PydanticValidationError) as info:
        s.SubmitJob.model_validate(body)
    return info.value


def test_missing_members_are_named() -> None:
    message = describe_validation_error(_pydantic_error({"jobName": "x"}), "SubmitJob")
    assert message == (
        "SubmitJob: Missing required parameter in input: 'jobQueue'; "
        "Missing required parameter in input: 'jobDefinition'"
    )


def test_invalid_members_are_located() -> None:
    body = {"jobName": "x", "jobQueue": "q", "jobDefinition": "d", "dependsOn": [{"jobId": "a", "type": "ALL"}]}
    message = describe_validation_error(_pydantic_error(body), "SubmitJob")
    assert message.startswith("SubmitJob: Invalid value for parameter 'dependsOn.0.type': ")
    assert "N_TO_N" in message


def test_at_most_five_problems_are_reported() -> None:
    body = {"dependsOn": [{"type": "ALL"}] * 7}
    message = describe_validation_error(_pydantic_error(body), "SubmitJob")
    assert message.count("; ") == 4
