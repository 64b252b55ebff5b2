"""Retry schedules (SNS delivery policies), input transformers and message signatures."""

from __future__ import annotations

from pathlib import Path

import pytest

from openbatch.events.service import DEFAULT_RETRY_POLICY, EventsError, json_path, retry_delay, transform_input
from openbatch.events.service import _job_statuses as job_statuses
from openbatch.events.service import _retry_policy_of as retry_policy_of
from openbatch.events.signing import Signer, string_to_sign, verify

EVENT = {
    "id": "1",
    "detail": {"jobName": "etl", "jobId": "j-1", "status": "FAILED", "attempts": [{"container": {"exitCode": 3}}]},
}


def test_sns_retry_phases() -> None:
    policy = retry_policy_of(
        {
            "minDelayTarget": 2,
            "maxDelayTarget": 20,
            "numRetries": 10,
            "numNoDelayRetries": 1,
            "numMinDelayRetries": 2,
            "numMaxDelayRetries": 2,
            "backoffFunction": "linear",
        }
    )
    delays = [retry_delay(policy, n) for n in range(1, 12)]
    assert delays[0] == 0
    assert delays[1:3] == [2, 2]
    backoff = [d for d in delays[3:8] if d is not None]
    assert len(backoff) == 5 and backoff == sorted(backoff) and 2 <= backoff[0] and backoff[-1] <= 20
    assert delays[8:10] == [20, 20]
    assert delays[10] is None


def test_default_policy_backs_off_exponentially_to_the_cap() -> None:
    delays = [retry_delay(DEFAULT_RETRY_POLICY, n) for n in range(1, 101)]
    assert delays[:4] == [1, 2, 4, 8]
    assert max(d for d in delays if d is not None) == 60
    assert retry_delay(DEFAULT_RETRY_POLICY, 101) is None


@pytest.mark.parametrize(
    "bad",
    [
        {"minDelayTarget": 30, "maxDelayTarget": 10},
        {"numRetries": 101},
        {"backoffFunction": "cubic"},
        {"numRetries": -1},
    ],
)
def test_invalid_policies(bad: dict[str, object]) -> None:
    with pytest.raises(EventsError):
        retry_policy_of(bad)


def test_input_transformer_and_paths() -> None:
    assert json_path(EVENT, "$.detail.attempts[0].container.exitCode") == 3
    assert json_path(EVENT, "$.detail.missing.deeper") is None
    target = {
        "InputTransformer": {
            "InputPathsMap": {"name": "$.detail.jobName", "code": "$.detail.attempts[0].container.exitCode"},
            "InputTemplate": "Job <name> exited with <code> <unknown>",
        }
    }
    assert transform_input(target, EVENT) == "Job etl exited with 3 <unknown>"
    assert transform_input({"InputPath": "$.detail.jobId"}, EVENT) == '"j-1"'
    assert transform_input({"Input": '{"fixed": true}'}, EVENT) == '{"fixed": true}'


def test_signature_roundtrip_and_persistent_key(tmp_path: Path) -> None:
    signer = Signer(tmp_path)
    message = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
        "Message": "hello",
        "Timestamp": "2026-01-01T00:00:00.000Z",
        "SignatureVersion": "2",
    }
    assert string_to_sign(message) == (
        "Message\nhello\nMessageId\nm-1\nTimestamp\n2026-01-01T00:00:00.000Z\n"
        "TopicArn\narn:aws:sns:us-east-1:123456789012:t\nType\nNotification\n"
    )
    message["Signature"] = signer.sign(message)
    assert verify(message, signer.certificate_pem)
    assert not verify({**message, "Subject": "forged"}, signer.certificate_pem)
    again = Signer(tmp_path)
    assert again.certificate_pem == signer.certificate_pem
    assert verify(message, again.certificate_pem)


def test_job_states_a_rule_can_match() -> None:
    failed = {"source": ["aws.batch"], "detail": {"status": ["FAILED"]}}
    custom = {"source": ["my.app"], "detail": {"status": ["anything"]}}
    assert job_statuses([]) == frozenset()
    assert job_statuses([failed, custom]) == frozenset({"FAILED"})
    assert job_statuses([failed, {"detail": {"status": ["SUCCEEDED", "FAILED"]}}]) == frozenset({"SUCCEEDED", "FAILED"})
    # Anything the shortcut cannot read means "any state".
    assert job_statuses([failed, {"source": ["aws.batch"]}]) is None
    assert job_statuses([{"detail": {"status": [{"anything-but": "RUNNING"}]}}]) is None
    assert job_statuses([{"$or": [{"detail": {"status": ["FAILED"]}}, {"source": ["x"]}]}]) is None
    assert job_statuses([{"detail-type": ["Other"], "detail": {"x": [1]}}]) == frozenset()
