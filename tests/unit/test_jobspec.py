"""What a job runs: resources, environment, retry strategy, timeout and ``Ref::`` substitution (§6)."""

from __future__ import annotations

from typing import Any

import pytest

from openbatch.domain import jobspec
from openbatch.domain.errors import ClientError, ValidationError
from openbatch.domain.jobspec import Resources


def _req(kind: str, value: str) -> dict[str, str]:
    return {"type": kind, "value": value}


# --- resource requirements ----------------------------------------------------------

VALID_REQUIREMENTS: list[tuple[str, list[dict[str, str]]]] = [
    ("none", []),
    ("one-vcpu", [_req("VCPU", "1")]),
    ("fractional-vcpu", [_req("VCPU", "0.25")]),
    ("minimum-memory", [_req("MEMORY", "4")]),
    ("memory-only", [_req("MEMORY", "2048")]),
    ("zero-gpu", [_req("GPU", "0")]),
    ("all-three", [_req("VCPU", "2"), _req("MEMORY", "1024"), _req("GPU", "1")]),
]

INVALID_REQUIREMENTS: list[tuple[str, list[dict[str, str]], str]] = [
    ("zero-vcpu", [_req("VCPU", "0")], "VCPU must be greater than 0"),
    ("negative-vcpu", [_req("VCPU", "-1")], "VCPU must be greater than 0"),
    ("vcpu-not-a-number", [_req("VCPU", "two")], "is not a number"),
    ("memory-empty", [_req("MEMORY", "")], "is not a number"),
    ("memory-below-4", [_req("MEMORY", "3")], "at least 4"),
    ("memory-fraction", [_req("MEMORY", "4.5")], "whole number of MiB"),
    ("negative-gpu", [_req("GPU", "-1")], "whole number of GPUs"),
    ("fractional-gpu", [_req("GPU", "1.5")], "whole number of GPUs"),
    ("duplicate-type", [_req("VCPU", "1"), _req("MEMORY", "8"), _req("VCPU", "2")], "more than once"),
]


@pytest.mark.parametrize(("case", "requirements"), VALID_REQUIREMENTS, ids=[c[0] for c in VALID_REQUIREMENTS])
def test_valid_resource_requirements(case: str, requirements: list[dict[str, str]]) -> None:
    jobspec.check_resource_requirements(requirements)


@pytest.mark.parametrize(
    ("case", "requirements", "message"), INVALID_REQUIREMENTS, ids=[c[0] for c in INVALID_REQUIREMENTS]
)
def test_invalid_resource_requirements(case: str, requirements: list[dict[str, str]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        jobspec.check_resource_requirements(requirements)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_vcpus_are_rejected(value: str) -> None:
    with pytest.raises(ValidationError):
        jobspec.check_resource_requirements([_req("VCPU", value)])


RESOURCES_CASES: list[tuple[str, dict[str, Any], Resources]] = [
    ("defaults", {}, Resources(vcpus=1.0, memory_mib=None, gpus=0)),
    ("legacy", {"vcpus": 2, "memory": 1024}, Resources(vcpus=2.0, memory_mib=1024, gpus=0)),
    ("legacy-none", {"vcpus": None, "memory": None, "resourceRequirements": None}, Resources()),
    (
        "requirements-win",
        {"vcpus": 2, "memory": 1024, "resourceRequirements": [_req("VCPU", "4"), _req("MEMORY", "2048")]},
        Resources(vcpus=4.0, memory_mib=2048, gpus=0),
    ),
    (
        "per-type-precedence",
        {"vcpus": 2, "memory": 1024, "resourceRequirements": [_req("MEMORY", "2048")]},
        Resources(vcpus=2.0, memory_mib=2048, gpus=0),
    ),
    (
        "legacy-memory-kept",
        {"vcpus": 2, "memory": 1024, "resourceRequirements": [_req("VCPU", "8")]},
        Resources(vcpus=8.0, memory_mib=1024, gpus=0),
    ),
    ("fractional-vcpu", {"resourceRequirements": [_req("VCPU", "0.5")]}, Resources(vcpus=0.5)),
    ("memory-as-float-text", {"resourceRequirements": [_req("MEMORY", "2048.0")]}, Resources(memory_mib=2048)),
    (
        "gpu",
        {"resourceRequirements": [_req("VCPU", "4"), _req("MEMORY", "8192"), _req("GPU", "2")]},
        Resources(vcpus=4.0, memory_mib=8192, gpus=2),
    ),
    ("zero-gpu", {"resourceRequirements": [_req("GPU", "0")]}, Resources(gpus=0)),
]


@pytest.mark.parametrize(("case", "container", "expected"), RESOURCES_CASES, ids=[c[0] for c in RESOURCES_CASES])
def test_resources_of(case: str, container: dict[str, Any], expected: Resources) -> None:
    assert jobspec.resources_of(container) == expected


# --- environment --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["AWS_BATCH_JOB_ID", "AWS_BATCH_JOB_ARRAY_INDEX", "AWS_BATCH", "AWS_BATCHY"])
def test_reserved_environment_names_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError, match=name) as info:
        jobspec.check_environment([{"name": "OK", "value": "1"}, {"name": name, "value": "x"}])
    assert isinstance(info.value, ClientError)
    assert "AWS_BATCH" in info.value.message


@pytest.mark.parametrize("name", ["PATH", "MY_AWS_BATCH_VAR", "AWS_REGION", "AWS_BATC", "BATCH"])
def test_other_environment_names_are_allowed(name: str) -> None:
    jobspec.check_environment([{"name": name, "value": "x"}])


def test_environment_pair_without_name_is_not_reserved() -> None:
    jobspec.check_environment([{"value": "x"}, {"name": None}])


# --- retry strategy ---------------------------------------------------------------------


def _rules(count: int, **rule: str) -> list[dict[str, str]]:
    return [{"action": "EXIT", **rule} for _ in range(count)]


VALID_STRATEGIES: list[tuple[str, dict[str, Any] | None]] = [
    ("none", None),
    ("empty", {}),
    ("one-attempt", {"attempts": 1}),
    ("ten-attempts", {"attempts": 10}),
    ("five-rules", {"attempts": 3, "evaluateOnExit": _rules(5)}),
    ("lowercase-action", {"attempts": 3, "evaluateOnExit": [{"action": "retry", "onReason": "AGENT"}]}),
    ("exit-code-exact", {"attempts": 2, "evaluateOnExit": _rules(1, onExitCode="137")}),
    ("exit-code-zero", {"attempts": 2, "evaluateOnExit": _rules(1, onExitCode="0")}),
    ("exit-code-prefix", {"attempts": 2, "evaluateOnExit": _rules(1, onExitCode="1*")}),
    ("exit-code-star", {"attempts": 2, "evaluateOnExit": _rules(1, onExitCode="*")}),
]

INVALID_STRATEGIES: list[tuple[str, dict[str, Any], str]] = [
    ("zero-attempts", {"attempts": 0}, "between 1 and 10"),
    ("negative-attempts", {"attempts": -1}, "between 1 and 10"),
    ("eleven-attempts", {"attempts": 11}, "between 1 and 10"),
    ("six-rules", {"attempts": 3, "evaluateOnExit": _rules(6)}, "at most 5"),
    ("bad-action", {"attempts": 3, "evaluateOnExit": [{"action": "MAYBE"}]}, "RETRY or EXIT"),
    ("exit-code-letters", {"attempts": 3, "evaluateOnExit": _rules(1, onExitCode="abc")}, "only digits"),
    ("exit-code-inner-star", {"attempts": 3, "evaluateOnExit": _rules(1, onExitCode="1*2")}, "only digits"),
    ("exit-code-negative", {"attempts": 3, "evaluateOnExit": _rules(1, onExitCode="-1")}, "only digits"),
    ("exit-code-decimal", {"attempts": 3, "evaluateOnExit": _rules(1, onExitCode="1.0")}, "only digits"),
]


@pytest.mark.parametrize(("case", "strategy"), VALID_STRATEGIES, ids=[c[0] for c in VALID_STRATEGIES])
def test_valid_retry_strategies(case: str, strategy: dict[str, Any] | None) -> None:
    jobspec.check_retry_strategy(strategy)


@pytest.mark.parametrize(("case", "strategy", "message"), INVALID_STRATEGIES, ids=[c[0] for c in INVALID_STRATEGIES])
def test_invalid_retry_strategies(case: str, strategy: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        jobspec.check_retry_strategy(strategy)


def test_evaluate_on_exit_requires_attempts() -> None:
    with pytest.raises(ValidationError):
        jobspec.check_retry_strategy({"evaluateOnExit": _rules(1, onExitCode="1")})


def test_exit_code_pattern_rejects_trailing_newline() -> None:
    with pytest.raises(ValidationError):
        jobspec.check_retry_strategy({"attempts": 2, "evaluateOnExit": _rules(1, onExitCode="1\n")})


# --- timeout --------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [None, {}, {"attemptDurationSeconds": None}, {"attemptDurationSeconds": 60}])
def test_valid_timeouts(timeout: dict[str, Any] | None) -> None:
    jobspec.check_timeout(timeout)


def test_short_timeouts_are_an_accepted_extension() -> None:
    jobspec.check_timeout({"attemptDurationSeconds": 1})


@pytest.mark.parametrize("seconds", [0, -60])
def test_invalid_timeouts(seconds: int) -> None:
    with pytest.raises(ValidationError, match="attemptDurationSeconds"):
        jobspec.check_timeout({"attemptDurationSeconds": seconds})


# --- Ref:: substitution -----------------------------------------------------------------

SUBSTITUTIONS: list[tuple[str, list[str], dict[str, str], list[str]]] = [
    ("no-refs", ["echo", "hello"], {"a": "1"}, ["echo", "hello"]),
    ("empty-command", [], {}, []),
    ("whole-element", ["ffmpeg", "-i", "Ref::inputfile"], {"inputfile": "in.mp4"}, ["ffmpeg", "-i", "in.mp4"]),
    ("inside-element", ["--input=Ref::src"], {"src": "s3://b/k"}, ["--input=s3://b/k"]),
    ("two-in-one-element", ["Ref::host:Ref::port"], {"host": "db", "port": "5432"}, ["db:5432"]),
    ("repeated", ["Ref::x", "Ref::x"], {"x": "v"}, ["v", "v"]),
    ("dotted-name", ["Ref::input.file"], {"input.file": "f"}, ["f"]),
    ("hyphen-and-underscore", ["Ref::my-param", "Ref::my_param"], {"my-param": "h", "my_param": "u"}, ["h", "u"]),
    ("empty-value", ["Ref::empty"], {"empty": ""}, [""]),
    ("value-not-resubstituted", ["Ref::a"], {"a": "Ref::b", "b": "no"}, ["Ref::b"]),
    ("bare-prefix-kept", ["Ref::"], {}, ["Ref::"]),
]


@pytest.mark.parametrize(
    ("case", "command", "parameters", "expected"), SUBSTITUTIONS, ids=[c[0] for c in SUBSTITUTIONS]
)
def test_substitute_parameters(case: str, command: list[str], parameters: dict[str, str], expected: list[str]) -> None:
    assert jobspec.substitute_parameters(command, parameters) == expected


@pytest.mark.parametrize(
    ("command", "missing"),
    [
        (["echo", "Ref::job_id"], "job_id"),
        (["--out=Ref::dest"], "dest"),
        (["Ref::present", "Ref::absent"], "absent"),
    ],
)
def test_missing_parameter_uses_the_aws_message(command: list[str], missing: str) -> None:
    with pytest.raises(ValidationError) as info:
        jobspec.substitute_parameters(command, {"present": "here"})
    assert info.value.message == f"Unable to substitute value. No parameter found for reference {missing}"
    assert isinstance(info.value, ClientError)


def test_substitution_does_not_mutate_its_input() -> None:
    command = ["Ref::a"]
    jobspec.substitute_parameters(command, {"a": "1"})
    assert command == ["Ref::a"]
