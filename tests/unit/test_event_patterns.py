"""Event pattern matching against the examples in AWS's EventBridge documentation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from openbatch.events.patterns import InvalidEventPatternError, parse_pattern

# The example event of the EventBridge user guide ("Content filtering in event patterns").
EC2_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "111122223333",
    "time": "2017-12-22T18:43:48Z",
    "region": "us-west-1",
    "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
    "detail": {
        "instance-id": "i-1234567890abcdef0",
        "state": "terminated",
        "c-count": 5,
        "d-count": 3,
        "x-limit": 301.8,
        "source-ip": "10.0.0.123",
        "FileName": "image.PNG",
        "Location": "New York",
        "Day": "Monday",
        "LastName": "",
        "MiddleName": None,
        "eventVersion": "1.08",
    },
}


def match(pattern: dict[str, Any], event: dict[str, Any] = EC2_EVENT) -> bool:
    return parse_pattern(json.dumps(pattern))(event)


def detail(**fields: Any) -> dict[str, Any]:
    return {**EC2_EVENT, "detail": {**EC2_EVENT["detail"], **fields}}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        # Exact values; an array of values is an OR.
        ({"source": ["aws.ec2"]}, True),
        ({"source": ["aws.ec2", "aws.fargate"]}, True),
        ({"source": ["aws.s3"]}, False),
        ({"detail": {"state": ["terminated"]}}, True),
        ({"detail": {"state": ["Terminated"]}}, False),
        # And: every field must match.
        ({"detail": {"Location": ["New York"], "Day": ["Monday"]}}, True),
        ({"detail": {"Location": ["New York"], "Day": ["Tuesday"]}}, False),
        # Numbers compare by value, never as strings.
        ({"detail": {"c-count": [5]}}, True),
        ({"detail": {"c-count": [5.0]}}, True),
        ({"detail": {"c-count": ["5"]}}, False),
        # Empty string and null are values of their own.
        ({"detail": {"LastName": [""]}}, True),
        ({"detail": {"MiddleName": [None]}}, True),
        ({"detail": {"LastName": [None]}}, False),
        # Prefix, suffix and their ignore-case forms.
        ({"time": [{"prefix": "2017-12-22"}]}, True),
        ({"time": [{"prefix": "2017-10-02"}]}, False),
        ({"region": [{"prefix": {"equals-ignore-case": "US-"}}]}, True),
        ({"detail": {"FileName": [{"suffix": ".png"}]}}, False),
        ({"detail": {"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}}, True),
        ({"detail": {"state": [{"equals-ignore-case": "TERMINATED"}]}}, True),
        # Anything-but: strings, numbers, lists, prefix, suffix, ignore case, wildcard.
        ({"detail": {"state": [{"anything-but": "initializing"}]}}, True),
        ({"detail": {"state": [{"anything-but": "terminated"}]}}, False),
        ({"detail": {"c-count": [{"anything-but": 123}]}}, True),
        ({"detail": {"c-count": [{"anything-but": [5, 6]}]}}, False),
        ({"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}}, True),
        ({"detail": {"state": [{"anything-but": {"prefix": "init"}}]}}, True),
        ({"detail": {"state": [{"anything-but": {"prefix": "term"}}]}}, False),
        ({"detail": {"FileName": [{"anything-but": {"suffix": ".txt"}}]}}, True),
        ({"detail": {"state": [{"anything-but": {"equals-ignore-case": "TERMINATED"}}]}}, False),
        ({"detail": {"state": [{"anything-but": {"equals-ignore-case": ["running", "stopped"]}}]}}, True),
        ({"detail": {"FileName": [{"anything-but": {"wildcard": "*.PNG"}}]}}, False),
        ({"detail": {"missing": [{"anything-but": "x"}]}}, False),
        # Numeric ranges.
        ({"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}]}}, True),
        ({"detail": {"c-count": [{"numeric": [">", 5]}]}}, False),
        ({"detail": {"d-count": [{"numeric": ["<", 10]}]}}, True),
        ({"detail": {"x-limit": [{"numeric": ["=", 3.018e2]}]}}, True),
        ({"detail": {"x-limit": [{"numeric": [">=", 302]}]}}, False),
        ({"detail": {"state": [{"numeric": [">", 0]}]}}, False),
        # Exists.
        ({"detail": {"state": [{"exists": True}]}}, True),
        ({"detail": {"state": [{"exists": False}]}}, False),
        ({"detail": {"c-count": [{"exists": False}]}}, False),
        ({"detail": {"no-such-field": [{"exists": False}]}}, True),
        ({"detail": {"no-such-field": [{"exists": True}]}}, False),
        # Exists works on leaves only, not on an object.
        ({"detail": [{"exists": True}]}, False),
        # IP address ranges.
        ({"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}}, True),
        ({"detail": {"source-ip": [{"cidr": "10.0.1.0/24"}]}}, False),
        # Wildcards.
        ({"detail": {"eventVersion": [{"wildcard": "1.*"}]}}, True),
        ({"detail": {"FileName": [{"wildcard": "image.*"}]}}, True),
        ({"detail": {"FileName": [{"wildcard": "*.jpg"}]}}, False),
        ({"resources": [{"wildcard": "arn:aws:ec2:*:instance/i-*"}]}, True),
        # $or, at the top level and inside nested objects.
        (
            {
                "detail": {
                    "$or": [
                        {"c-count": [{"numeric": [">", 0, "<=", 5]}]},
                        {"d-count": [{"numeric": ["<", 10]}]},
                        {"x-limit": [{"numeric": ["=", 3.018e2]}]},
                    ]
                }
            },
            True,
        ),
        ({"$or": [{"source": ["aws.s3"]}, {"detail-type": ["EC2 Instance State-change Notification"]}]}, True),
        ({"$or": [{"source": ["aws.s3"]}, {"detail": {"state": ["running"]}}]}, False),
        ({"source": ["aws.ec2"], "$or": [{"region": ["eu-west-1"]}, {"region": ["us-east-2"]}]}, False),
        # An array in the event matches when any element matches.
        ({"resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"]}, True),
        ({"resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-other"]}, False),
        # A pattern field missing from the event never matches.
        ({"detail": {"no-such-field": ["x"]}}, False),
        ({"detail": {"instance-id": {"nested": ["x"]}}}, False),
    ],
)
def test_documented_examples(pattern: dict[str, Any], expected: bool) -> None:
    assert match(pattern) is expected


def test_wildcard_escapes_and_arrays_of_objects() -> None:
    assert match({"detail": {"path": [{"wildcard": "a\\*b"}]}}, detail(path="a*b"))
    assert not match({"detail": {"path": [{"wildcard": "a\\*b"}]}}, detail(path="axxb"))
    event = detail(items=[{"name": "a", "size": 1}, {"name": "b", "size": 7}])
    assert match({"detail": {"items": {"size": [{"numeric": [">", 5]}]}}}, event)
    assert not match({"detail": {"items": {"size": [{"numeric": [">", 10]}]}}}, event)


def test_batch_job_state_change_rule() -> None:
    """The pattern AWS Batch's documentation gives for failed jobs."""
    event = {
        "version": "0",
        "id": "c8f9c4b5-76e5-d76a-f980-7011e206042b",
        "detail-type": "Batch Job State Change",
        "source": "aws.batch",
        "account": "123456789012",
        "time": "2022-01-11T23:36:40Z",
        "region": "us-east-1",
        "resources": ["arn:aws:batch:us-east-1:123456789012:job/4c7599ae-0a82-49aa-ba5a-4727fcce14a8"],
        "detail": {
            "jobName": "event-test",
            "jobQueue": "arn:aws:batch:us-east-1:123456789012:job-queue/HighPriority",
            "status": "FAILED",
            "attempts": [{"container": {"exitCode": 1}}],
        },
    }
    pattern = {"source": ["aws.batch"], "detail-type": ["Batch Job State Change"], "detail": {"status": ["FAILED"]}}
    assert match(pattern, event)
    assert match({"detail": {"attempts": {"container": {"exitCode": [{"numeric": [">", 0]}]}}}}, event)
    assert not match({**pattern, "detail": {"status": ["SUCCEEDED"]}}, event)
    assert match({"detail": {"jobQueue": [{"suffix": "/HighPriority"}], "jobName": [{"prefix": "event-"}]}}, event)


@pytest.mark.parametrize(
    "pattern",
    [
        "not json",
        "[]",
        "{}",
        '{"source": "aws.batch"}',
        '{"source": []}',
        '{"source": [["nested"]]}',
        '{"source": [{"prefix": 1}]}',
        '{"source": [{"unknown-op": "x"}]}',
        '{"source": [{"prefix": "a", "suffix": "b"}]}',
        '{"detail": {"n": [{"numeric": [">", "x"]}]}}',
        '{"detail": {"n": [{"numeric": ["<", 5, ">", 1]}]}}',
        '{"detail": {"n": [{"numeric": [">", 5, "<", 1]}]}}',
        '{"detail": {"n": [{"exists": "yes"}]}}',
        '{"detail": {"n": [{"wildcard": "a**b"}]}}',
        '{"detail": {"n": [{"anything-but": {"numeric": [">", 1]}}]}}',
        '{"detail": {"n": [{"cidr": "not-an-ip"}]}}',
        '{"$or": [{"source": ["a"]}]}',
        '{"$or": {"source": ["a"]}}',
    ],
)
def test_invalid_patterns(pattern: str) -> None:
    with pytest.raises(InvalidEventPatternError):
        parse_pattern(pattern)
