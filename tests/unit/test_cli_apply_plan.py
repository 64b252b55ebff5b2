"""What ``openbatch apply`` considers changed, where the CLI finds its server, and what a retry resubmits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openbatch.cli import common
from openbatch.cli.jobs_cmd import retry_request
from openbatch.cli.resources_cmd import _covered, _normal_definition, _plan_compute_environment, _prune
from openbatch.cli.workflow_resources import _changed_fields, _schedule_definition, problems_of

DESCRIBED_DEFINITION: dict[str, Any] = {
    "jobDefinitionName": "d",
    "jobDefinitionArn": "arn:aws:batch:us-east-1:123456789012:job-definition/d:3",
    "revision": 3,
    "status": "ACTIVE",
    "type": "container",
    "parameters": {},
    "containerProperties": {
        "image": "local",
        "command": ["echo", "hi"],
        "volumes": [],
        "environment": [{"name": "A", "value": "1"}],
        "resourceRequirements": [{"type": "VCPU", "value": "1"}],
    },
    "tags": {},
    "propagateTags": False,
    "platformCapabilities": ["EC2"],
    "containerOrchestrationType": "ECS",
}


def request(**container: Any) -> dict[str, Any]:
    properties = {
        "image": "local",
        "command": ["echo", "hi"],
        "environment": [{"name": "A", "value": "1"}],
        "resourceRequirements": [{"type": "VCPU", "value": "1"}],
        **container,
    }
    return {"jobDefinitionName": "d", "type": "container", "containerProperties": properties}


def test_a_definition_equal_to_its_description_but_for_defaults_is_unchanged() -> None:
    assert _normal_definition(request()) == _normal_definition(DESCRIBED_DEFINITION)


@pytest.mark.parametrize(
    "change",
    [
        {"command": ["echo", "bye"]},
        {"environment": []},  # removing a variable is a change, not "absent"
        {"resourceRequirements": [{"type": "VCPU", "value": "2"}]},
    ],
)
def test_a_changed_definition_differs(change: dict[str, Any]) -> None:
    assert _normal_definition(request(**change)) != _normal_definition(DESCRIBED_DEFINITION)


def test_covered_ignores_fields_only_the_server_set_and_compares_numbers_by_value() -> None:
    current = {"fairsharePolicy": {"shareDecaySeconds": 60, "computeReservation": 0, "shares": [{"w": 1.0}]}}
    assert _covered({"fairsharePolicy": {"shareDecaySeconds": 60, "shares": [{"w": 1}]}}, current)
    assert not _covered({"fairsharePolicy": {"shareDecaySeconds": 30}}, current)
    assert not _covered({"shares": [{"w": 1}, {"w": 2}]}, {"shares": [{"w": 1}]})
    assert not _covered(True, 1)
    assert _prune({"a": [], "b": {}, "c": None, "d": {"e": []}, "f": 0}) == {"f": 0}


def test_compute_environment_updates_only_the_changed_resources() -> None:
    current = {
        "computeEnvironmentName": "ce",
        "type": "MANAGED",
        "state": "ENABLED",
        "computeResources": {"type": "EC2", "minvCpus": 0, "maxvCpus": 4, "subnets": ["s"]},
    }
    desired = {
        "computeEnvironmentName": "ce",
        "type": "MANAGED",
        "computeResources": {"type": "EC2", "minvCpus": 0, "maxvCpus": 8, "subnets": ["s"]},
    }
    assert _plan_compute_environment(desired, current) == (
        {"computeResources": {"maxvCpus": 8}},
        ["computeResources.maxvCpus"],
    )
    with pytest.raises(common.CliError, match="cannot be changed in place"):
        _plan_compute_environment({**desired, "type": "UNMANAGED"}, current)


def test_endpoint_and_region_come_from_the_option_then_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "profiles:\n  default: {endpoint_url: 'http://127.0.0.1:9000'}\n"
        "  lab: {endpoint_url: 'http://127.0.0.2:9001/', region: eu-west-1}\n"
    )
    monkeypatch.setenv("OPENBATCH_CONFIG", str(config))
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert common.resolve(None, None) == common.Target("http://127.0.0.1:9000", "us-east-1")
    assert common.resolve(None, "lab") == common.Target("http://127.0.0.2:9001", "eu-west-1")
    assert common.resolve("http://127.0.0.1:7000", "lab").endpoint_url == "http://127.0.0.1:7000"
    with pytest.raises(common.CliError, match="unknown profile 'nope'.*default, lab") as info:
        common.resolve(None, "nope")
    assert info.value.code == common.EXIT_USAGE
    with pytest.raises(common.CliError, match="must start with http"):
        common.resolve("127.0.0.1:8080", None)
    monkeypatch.setenv("OPENBATCH_CONFIG", str(tmp_path / "absent.yaml"))
    assert common.resolve(None, None).endpoint_url == common.DEFAULT_ENDPOINT


def test_retry_resubmits_the_same_spec_without_batch_variables() -> None:
    job = {
        "jobName": "n",
        "jobQueue": "arn:aws:batch:us-east-1:123456789012:job-queue/q",
        "jobDefinition": "arn:aws:batch:us-east-1:123456789012:job-definition/d:2",
        "parameters": {"p": "v"},
        "retryStrategy": {"attempts": 3},
        "timeout": {"attemptDurationSeconds": 120},
        "tags": {},
        "arrayProperties": {"size": 4, "statusSummary": {}},
        "dependsOn": [{"jobId": "x"}],
        "container": {
            "command": ["run"],
            "environment": [{"name": "A", "value": "1"}, {"name": "AWS_BATCH_JOB_ID", "value": "j"}],
            "resourceRequirements": [{"type": "VCPU", "value": "2"}],
        },
    }
    assert retry_request(job) == {
        "jobName": "n",
        "jobQueue": job["jobQueue"],
        "jobDefinition": job["jobDefinition"],
        "parameters": {"p": "v"},
        "retryStrategy": {"attempts": 3},
        "timeout": {"attemptDurationSeconds": 120},
        "arrayProperties": {"size": 4},
        "containerOverrides": {
            "command": ["run"],
            "environment": [{"name": "A", "value": "1"}],
            "resourceRequirements": [{"type": "VCPU", "value": "2"}],
        },
    }


def test_a_changed_workflow_names_the_steps_that_changed() -> None:
    current = {"name": "w", "steps": {"a": {"command": ["true"]}, "b": {"command": ["false"]}}}
    desired = {"name": "w", "parameters": {"x": "1"}, "steps": {"a": {"command": ["true"]}, "c": {"command": ["x"]}}}
    assert _changed_fields(desired, current) == ["parameters", "steps.b", "steps.c"]
    assert _changed_fields(current, current) == []


def test_a_schedule_compares_with_the_servers_defaults_filled_in() -> None:
    given = {"name": "s", "cron": "0 2 * * *", "workflow": "w", "state": "PAUSED"}
    assert _schedule_definition(given) == {
        "cron": "0 2 * * *",
        "workflow": "w",
        "timezone": "UTC",
        "missedRunPolicy": "RUN_ONCE",
        "parameters": {},
    }


def test_bad_workflow_and_schedule_documents_are_found_before_the_server_is_asked() -> None:
    assert problems_of("Workflow", {"name": "w", "steps": {"a": {"command": ["true"]}}}) == []
    [missing] = problems_of("Workflow", {"name": "w", "steps": {"a": {"command": ["true"], "dependsOn": ["z"]}}})
    assert "steps.a.dependsOn" in missing
    assert problems_of("Schedule", {"name": "s", "cron": "* * * * *", "workflow": "w", "job": {}, "state": "ON"}) == [
        "needs exactly one of workflow (a workflow's name) or job (a SubmitJob request)",
        "state must be ENABLED or PAUSED; got 'ON'",
    ]
