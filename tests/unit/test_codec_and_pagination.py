"""Job records round trips, pagination tokens, ARNs and name rules (§1.6, §1.7)."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from typing import Any

import pytest

from openbatch.domain.arns import Arn, ArnFactory, ResourceType, is_arn, name_from_reference, parse_arn
from openbatch.domain.errors import ValidationError
from openbatch.domain.job import Attempt, Job
from openbatch.domain.states import JobStatus
from openbatch.domain.validation import check_name, check_range, check_tags
from openbatch.service import pagination
from openbatch.service.submission import check_job_name
from openbatch.store import job_codec
from openbatch.store.base import JobRecord
from tests.unit.builders import ACCOUNT, JOB_ID, NOW, REGION, exit_rule, make_job

S = JobStatus


# --- job_codec --------------------------------------------------------------------------


def _through_json(record: JobRecord) -> JobRecord:
    """What a store hands back: the body as JSON would carry it."""
    spec = json.loads(json.dumps(record.spec)) if record.spec is not None else None
    return dataclasses.replace(record, body=json.loads(json.dumps(record.body)), spec=spec)


def _as_dict(job: Job) -> dict[str, Any]:
    return {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}


def _round_trip(job: Job, parent: Job | None = None) -> Job:
    record = _through_json(job_codec.to_record(job, with_spec=True))
    return job_codec.from_record(record, parent.spec if parent is not None else None)


def _finished_job() -> Job:
    return (
        make_job()
        .status(S.FAILED)
        .named("etl-nightly")
        .queue("high")
        .command("python", "etl.py", "--day", "2024-01-01")
        .env(STAGE="prod", EMPTY="")
        .resources(vcpus=0.5, memory=2048, gpus=1)
        .retry(attempts=3, rules=[exit_rule("RETRY", on_status_reason="Host EC2*"), exit_rule("EXIT", on_reason="*")])
        .timeout(3600)
        .params(day="2024-01-01")
        .share("teamA", priority=7)
        .depends_on({"jobId": "dep-1"})
        .deps("dep-1")
        .tags(team="data", cost="42")
        .reason("Essential container in task exited")
        .started(NOW + 20)
        .stopped(NOW + 30)
        .runnable_since(NOW + 15)
        .attempt(started_at=NOW + 5, stopped_at=NOW + 10, exit_code=1, status_reason="Host EC2 terminated.")
        .attempt(
            started_at=NOW + 20,
            stopped_at=NOW + 30,
            exit_code=2,
            reason="OutOfMemoryError",
            status_reason="Essential container in task exited",
            log_stream="sleeper/default/abc",
            task_id="abc",
            pid=4242,
        )
        .build()
    )


def test_round_trip_of_a_fresh_job() -> None:
    job = make_job().build()
    record = job_codec.to_record(job, with_spec=True)
    assert set(record.body) == {"tags", "attempts", "deps"}
    assert record.spec is not None and record.spec["job_name"] == job.spec.job_name
    assert job_codec.to_record(job).spec is None  # later writes carry only the state
    assert None not in record.body.values()
    assert _as_dict(_round_trip(job)) == _as_dict(job)


def test_round_trip_of_a_finished_job_with_attempts() -> None:
    job = _finished_job()
    back = _round_trip(job)
    assert _as_dict(back) == _as_dict(job)
    assert back.spec.retry.attempts == 3 and len(back.spec.retry.rules) == 2
    assert back.attempts[1].pid == 4242


def test_record_columns() -> None:
    record = job_codec.to_record(_finished_job(), with_spec=True)
    assert (
        record.id,
        record.parent_id,
        record.array_index,
        record.queue,
        record.status,
        record.job_name,
        record.share_identifier,
        record.created_at,
    ) == (JOB_ID, None, None, "high", "FAILED", "etl-nightly", "teamA", NOW)


def test_attempts_store_only_what_is_set() -> None:
    job = make_job().status(S.FAILED).attempt(stopped_at=NOW, status_reason="Task failed to start").build()
    record = job_codec.to_record(job, with_spec=True)
    assert record.body["attempts"] == [{"stopped_at": NOW, "status_reason": "Task failed to start"}]


def test_round_trip_of_the_current_attempt() -> None:
    job = (
        make_job()
        .status(S.RUNNING)
        .placed_on("ce-gpu")
        .started(NOW + 3)
        .attempt(started_at=NOW, stopped_at=NOW + 1, exit_code=137)
        .current(started_at=NOW + 3, task_id="t2", log_stream="s/t2", pid=99)
        .build()
    )
    back = _round_trip(job)
    assert _as_dict(back) == _as_dict(job)
    assert back.current == Attempt(started_at=NOW + 3, task_id="t2", log_stream="s/t2", pid=99)
    assert back.compute_environment == "ce-gpu"
    assert back.attempt_number == 2


def test_round_trip_of_an_empty_current_attempt() -> None:
    job = make_job().status(S.STARTING).placed_on("ce").current().build()
    back = _round_trip(job)
    assert back.current == Attempt()
    assert back.compute_environment == "ce"


def test_round_trip_keeps_the_compute_environment_of_a_finished_job() -> None:
    job = make_job().status(S.SUCCEEDED).placed_on("ce-a").attempt(exit_code=0, task_id="t1").build()
    assert _round_trip(job).compute_environment == "ce-a"


def test_round_trip_of_flags_and_a_pending_cancel() -> None:
    cancelled = make_job().status(S.PENDING).cancelled("stop it").build()
    terminated = make_job().status(S.FAILED).terminated().reason("operator").build()
    for job in (cancelled, terminated):
        assert _as_dict(_round_trip(job)) == _as_dict(job)
    assert "is_terminated" not in job_codec.to_record(cancelled).body
    assert job_codec.to_record(cancelled).body["cancel_reason"] == "stop it"


def test_round_trip_of_an_array_parent_with_its_summary() -> None:
    summary = {"PENDING": 2, "RUNNING": 1, "SUCCEEDED": 1, "FAILED": 1}
    parent = make_job().array(5, summary=summary, updated_at=NOW + 9).status(S.PENDING).tags(k="v").build()
    record = job_codec.to_record(parent, with_spec=True)
    assert record.body["status_summary"]["RUNNING"] == 1
    assert record.body["summary_updated_at"] == NOW + 9
    back = _round_trip(parent)
    assert _as_dict(back) == _as_dict(parent)
    assert back.is_array_parent
    assert back.spec.array_size == 5
    assert back.status_summary is not None and sum(back.status_summary.values()) == 5


def test_array_child_stores_no_spec_and_shares_the_parent_one() -> None:
    parent = make_job().array(3).status(S.PENDING).tags(team="a").build()
    child = (
        make_job()
        .child_of(parent.id, 2, size=3)
        .status(S.RUNNING)
        .deps(f"{parent.id}:1")
        .placed_on("ce")
        .started(NOW)
        .current(started_at=NOW, task_id="c2")
        .build()
    )
    record = job_codec.to_record(child, with_spec=True)
    assert record.spec is None and "tags" not in record.body
    assert (record.id, record.parent_id, record.array_index) == (f"{parent.id}:2", parent.id, 2)
    back = _round_trip(child, parent)
    assert back.spec is parent.spec
    assert _as_dict(back) == {**_as_dict(child), "spec": parent.spec}
    assert not back.is_array_parent


def test_spec_body_round_trip() -> None:
    spec = _finished_job().spec
    body = json.loads(json.dumps(job_codec.spec_to_body(spec)))
    assert "retry" not in body
    assert job_codec.spec_from_body(body) == spec


# --- pagination tokens ----------------------------------------------------------------------

POSITIONS: list[Any] = [0, 42, 2**62, "name-1", [NOW, "876da822-4198-45f2-a252-6cea32512ea8"], {"seq": 3, "n": "x"}]


@pytest.mark.parametrize("position", POSITIONS, ids=repr)
def test_token_round_trip(position: Any) -> None:
    token = pagination.encode_token("jobs", position)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token), "tokens are URL-safe and unpadded"
    assert pagination.decode_token("jobs", token) == position


@pytest.mark.parametrize("token", [None, ""])
def test_no_token_is_the_first_page(token: str | None) -> None:
    assert pagination.decode_token("jobs", token) is None
    assert pagination.decode_position("jobs", token, pagination.seq_position) is None


def test_token_of_another_operation_is_rejected() -> None:
    token = pagination.encode_token("job-queues", 5)
    with pytest.raises(ValidationError) as info:
        pagination.decode_token("jobs", token)
    assert info.value.message == f"The nextToken {token!r} is not valid for this operation"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


GARBAGE = {
    "punctuation": "!!!!",
    "one-char": "a",
    "not-json": _b64(b"hello world"),
    "json-list": _b64(b"[1, 2]"),
    "json-null": _b64(b"null"),
    "json-string": _b64(b'"jobs"'),
    "json-number": _b64(b"7"),
    "no-position": _b64(b'{"k": "jobs"}'),
    "no-kind": _b64(b'{"p": 1}'),
    "not-utf8": _b64(b"\xff\xfe\xfd"),
    "non-ascii": "t\u00f6ken",
}


@pytest.mark.parametrize("token", list(GARBAGE.values()), ids=list(GARBAGE))
def test_garbage_tokens_are_a_validation_error(token: str) -> None:
    with pytest.raises(ValidationError, match="nextToken"):
        pagination.decode_token("jobs", token)


@pytest.mark.parametrize("position", [0, 7, 2**63 - 1])
def test_sequence_positions(position: int) -> None:
    token = pagination.encode_token("seq", position)
    assert pagination.decode_position("seq", token, pagination.seq_position) == position


@pytest.mark.parametrize("position", [-1, 2**63, True, "5", 1.5, [1], {"seq": 1}], ids=repr)
def test_malformed_sequence_positions_are_a_validation_error(position: Any) -> None:
    token = pagination.encode_token("seq", position)
    with pytest.raises(ValidationError, match="nextToken"):
        pagination.decode_position("seq", token, pagination.seq_position)


@pytest.mark.parametrize(("value", "expected"), [(None, 100), (1, 1), (50, 50), (1000, 1000)])
def test_page_size(value: int | None, expected: int) -> None:
    assert pagination.page_size(value, default=100, maximum=1000) == expected


@pytest.mark.parametrize("value", [0, -1, 1001])
def test_page_size_out_of_bounds(value: int) -> None:
    with pytest.raises(ValidationError, match=f"maxResults must be between 1 and 1000; got {value}"):
        pagination.page_size(value, default=100, maximum=1000)


# --- ARNs -----------------------------------------------------------------------------------

FACTORY = ArnFactory(region=REGION, account=ACCOUNT)

ARNS: list[tuple[ResourceType, str, str]] = [
    (ResourceType.COMPUTE_ENVIRONMENT, "ce-1", f"arn:aws:batch:{REGION}:{ACCOUNT}:compute-environment/ce-1"),
    (ResourceType.JOB_QUEUE, "q_1", f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/q_1"),
    (ResourceType.JOB_DEFINITION, "sleeper:3", f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/sleeper:3"),
    (ResourceType.JOB, JOB_ID, f"arn:aws:batch:{REGION}:{ACCOUNT}:job/{JOB_ID}"),
    (ResourceType.JOB, f"{JOB_ID}:4", f"arn:aws:batch:{REGION}:{ACCOUNT}:job/{JOB_ID}:4"),
    (ResourceType.SCHEDULING_POLICY, "fair", f"arn:aws:batch:{REGION}:{ACCOUNT}:scheduling-policy/fair"),
]


@pytest.mark.parametrize(("kind", "resource_id", "arn"), ARNS, ids=[a[2].split(":", 5)[5] for a in ARNS])
def test_arn_build_and_parse(kind: ResourceType, resource_id: str, arn: str) -> None:
    assert FACTORY.build(kind, resource_id) == arn
    parsed = parse_arn(arn)
    assert parsed == Arn("aws", REGION, ACCOUNT, kind, resource_id)
    assert str(parsed) == arn
    assert is_arn(arn)
    assert name_from_reference(arn, kind) == resource_id


def test_arn_factory_other_region_and_partition() -> None:
    assert FACTORY.in_region("eu-west-1").build(ResourceType.JOB_QUEUE, "q") == (
        f"arn:aws:batch:eu-west-1:{ACCOUNT}:job-queue/q"
    )
    china = ArnFactory(region="cn-north-1", account=ACCOUNT, partition="aws-cn")
    arn = china.build(ResourceType.JOB, "j")
    assert arn == f"arn:aws-cn:batch:cn-north-1:{ACCOUNT}:job/j"
    assert parse_arn(arn).partition == "aws-cn"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "not a valid AWS Batch ARN"),
        ("my-queue", "not a valid AWS Batch ARN"),
        (f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/c", "not a valid AWS Batch ARN"),
        (f"arn:gcp:batch:{REGION}:{ACCOUNT}:job-queue/q", "not a valid AWS Batch ARN"),
        (f"arn:aws:batch:{REGION}:acct:job-queue/q", "not a valid AWS Batch ARN"),
        (f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue", "not a valid AWS Batch ARN"),
        (f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/", "not a valid AWS Batch ARN"),
        (f"arn:aws:batch:{REGION}:{ACCOUNT}:widget/w", "does not name a taggable AWS Batch resource"),
    ],
    ids=["empty", "name", "other-service", "other-partition", "bad-account", "no-id", "empty-id", "unknown-type"],
)
def test_invalid_arns(value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_arn(value)


def test_name_from_reference() -> None:
    assert not is_arn("queue-1")
    assert name_from_reference("queue-1", ResourceType.JOB_QUEUE) == "queue-1"
    assert name_from_reference("sleeper:2", ResourceType.JOB_DEFINITION) == "sleeper:2"
    with pytest.raises(ValidationError, match="is not a job-queue ARN"):
        name_from_reference(FACTORY.build(ResourceType.COMPUTE_ENVIRONMENT, "ce"), ResourceType.JOB_QUEUE)


# --- names, tags, ranges ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "Z", "0", "queue_1-A", "x" * 128])
def test_valid_names(name: str) -> None:
    assert check_name("Job queue", name) == name


@pytest.mark.parametrize(
    "name", ["", "-queue", "_queue", "my queue", "queue.1", "queue/1", "x" * 129, "qu\u00e9ue"], ids=repr
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_name("Job queue", name)
    assert info.value.message.startswith(f"Job queue name {name!r} is invalid")


@pytest.mark.parametrize("check", ["check_name", "check_job_name"])
def test_names_with_a_trailing_newline_are_rejected(check: str) -> None:
    with pytest.raises(ValidationError):
        if check == "check_name":
            check_name("Job queue", "queue\n")
        else:
            check_job_name("job\n")


def test_tags() -> None:
    assert check_tags(None) == {}
    assert check_tags({}) == {}
    fifty = {f"k{i}": "v" for i in range(50)}
    assert check_tags(fifty) == fifty
    assert check_tags({"k" * 128: "v" * 256}) == {"k" * 128: "v" * 256}


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({f"k{i}": "v" for i in range(51)}, "at most 50 tags"),
        ({"": "v"}, "1 to 128 characters"),
        ({"k" * 129: "v"}, "1 to 128 characters"),
        ({"aws:owner": "v"}, "reserved prefix"),
        ({"AWS:owner": "v"}, "reserved prefix"),
        ({"k": "v" * 257}, "at most 256 characters"),
    ],
    ids=["51-tags", "empty-key", "long-key", "aws-prefix", "aws-prefix-upper", "long-value"],
)
def test_invalid_tags(tags: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        check_tags(tags)


def test_range() -> None:
    for value in (None, 0, 9999, 0.5):
        check_range("priority", value, 0, 9999)
    with pytest.raises(ValidationError, match="priority must be between 0 and 9999; got 10000"):
        check_range("priority", 10000, 0, 9999)
    with pytest.raises(ValidationError, match="between 0 and 9999; got -1"):
        check_range("priority", -1, 0, 9999)
