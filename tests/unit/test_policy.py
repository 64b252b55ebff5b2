"""The IAM policy evaluator against AWS's documented policy examples and evaluation rules."""

from __future__ import annotations

import pytest

from openbatch.auth.policy import Outcome, PolicyError, action_matches, parse_policy, resource_matches

ACCOUNT = "111122223333"
QUEUE = f"arn:aws:batch:us-east-1:{ACCOUNT}:job-queue/queue1"
OTHER_QUEUE = f"arn:aws:batch:us-east-1:{ACCOUNT}:job-queue/other"


def test_restrict_to_a_job_queue() -> None:
    # AWS Batch user guide, "Resource: Restrict to a job queue".
    policy = parse_policy(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["batch:SubmitJob"],
                    "Resource": [
                        f"arn:aws:batch:us-east-1:{ACCOUNT}:job-definition/*",
                        f"arn:aws:batch:us-east-1:{ACCOUNT}:job-queue/queue1",
                    ],
                }
            ],
        }
    )
    definition = f"arn:aws:batch:us-east-1:{ACCOUNT}:job-definition/any:3"
    assert policy.evaluate("batch:SubmitJob", [definition, QUEUE]).allowed
    denied = policy.evaluate("batch:SubmitJob", [definition, OTHER_QUEUE])
    assert denied.outcome is Outcome.IMPLICIT_DENY
    assert denied.resource == OTHER_QUEUE
    assert not policy.evaluate("batch:CancelJob", [f"arn:aws:batch:us-east-1:{ACCOUNT}:job/1"]).allowed


def test_job_definition_revisions() -> None:
    # "Accounting for job definition revisions": a bare name matches no revision; ':*' matches all.
    def allows(pattern: str, definition: str) -> bool:
        policy = parse_policy(
            {
                "Statement": {
                    "Effect": "Allow",
                    "Action": "batch:SubmitJob",
                    "Resource": [f"arn:aws:batch:us-east-1:{ACCOUNT}:job-definition/{pattern}", QUEUE],
                }
            }
        )
        arn = f"arn:aws:batch:us-east-1:{ACCOUNT}:job-definition/{definition}"
        return policy.evaluate("batch:SubmitJob", [arn, QUEUE]).allowed

    assert allows("my-job-def:1", "my-job-def:1")
    assert not allows("my-job-def:1", "my-job-def:2")
    assert allows("my-job-def:*", "my-job-def:7")
    assert not allows("my-job-def", "my-job-def:1")
    assert allows("JobDefA_*", "JobDefA_nightly:2")
    assert not allows("JobDefA_*", "JobDefB:1")


def test_explicit_deny_wins_over_allow() -> None:
    policy = parse_policy(
        {
            "Statement": [
                {"Effect": "Allow", "Action": "batch:*", "Resource": "*"},
                {"Effect": "Deny", "Action": ["batch:Delete*", "batch:Terminate*"], "Resource": "*"},
            ]
        }
    )
    assert policy.evaluate("batch:DescribeJobs", ["*"]).allowed
    assert policy.evaluate("batch:DeleteJobQueue", [QUEUE]).outcome is Outcome.EXPLICIT_DENY
    assert policy.evaluate("batch:terminatejob", ["x"]).outcome is Outcome.EXPLICIT_DENY


def test_default_deny_and_service_prefixes() -> None:
    policy = parse_policy({"Statement": [{"Effect": "Allow", "Action": "batch:Describe*", "Resource": "*"}]})
    assert policy.evaluate("batch:DescribeJobQueues", ["*"]).allowed
    assert policy.evaluate("logs:GetLogEvents", ["*"]).outcome is Outcome.IMPLICIT_DENY
    assert policy.evaluate("batch:ListJobs", ["*"]).outcome is Outcome.IMPLICIT_DENY


def test_not_action_and_not_resource() -> None:
    # IAM user guide NotAction example: everything except IAM.
    policy = parse_policy({"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]})
    assert policy.evaluate("batch:SubmitJob", [QUEUE]).allowed
    assert not policy.evaluate("iam:PassRole", ["arn:aws:iam::1:role/x"]).allowed
    guarded = parse_policy(
        {
            "Statement": [
                {"Effect": "Allow", "Action": "batch:*", "Resource": "*"},
                {"Effect": "Deny", "Action": "batch:*", "NotResource": f"arn:aws:batch:*:{ACCOUNT}:job-queue/queue*"},
            ]
        }
    )
    assert guarded.evaluate("batch:UpdateJobQueue", [QUEUE]).allowed
    assert guarded.evaluate("batch:UpdateJobQueue", [OTHER_QUEUE]).outcome is Outcome.EXPLICIT_DENY


def test_every_resource_must_be_allowed() -> None:
    policy = parse_policy({"Statement": [{"Effect": "Allow", "Action": "batch:CreateJobQueue", "Resource": QUEUE}]})
    ce = f"arn:aws:batch:us-east-1:{ACCOUNT}:compute-environment/ce"
    decision = policy.evaluate("batch:CreateJobQueue", [QUEUE, ce])
    assert decision.outcome is Outcome.IMPLICIT_DENY
    assert decision.resource == ce


def test_wildcards() -> None:
    assert action_matches("batch:Describe*", "batch:describejobs")
    assert action_matches("batch:?ubmitJob", "batch:SubmitJob")
    assert not action_matches("batch:Describe*", "logs:DescribeLogStreams")
    assert resource_matches("arn:aws:batch:*:*:job-queue/*", QUEUE)
    assert not resource_matches("arn:aws:batch:*:*:job-queue/*", f"arn:aws:batch:us-east-1:{ACCOUNT}:job/1")
    # Segments are matched one by one: a region wildcard does not swallow the account.
    assert not resource_matches("arn:aws:batch:*:job-queue/queue1", QUEUE)
    # Resource names compare case-sensitively.
    assert not resource_matches(f"arn:aws:batch:us-east-1:{ACCOUNT}:job-queue/Queue1", QUEUE)
    stream = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/batch/job:log-stream:def/default/abc"
    assert resource_matches("arn:aws:logs:*:*:log-group:/aws/batch/job:*", stream)


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({"Statement": [{"Effect": "Permit", "Action": "*", "Resource": "*"}]}, "Effect"),
        ({"Statement": [{"Effect": "Allow", "Resource": "*"}]}, "exactly one of Action and NotAction"),
        ({"Statement": [{"Effect": "Allow", "Action": "*", "NotAction": "x:y", "Resource": "*"}]}, "exactly one"),
        ({"Statement": [{"Effect": "Allow", "Action": "SubmitJob", "Resource": "*"}]}, "service:Operation"),
        ({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "queue1"}]}, "must be an ARN"),
        (
            {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"Bool": {}}}]},
            "Condition is not supported",
        ),
        ({"Statement": []}, "non-empty"),
        ({"Version": "2020-01-01", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}, "Version"),
        ("{not json", "not valid JSON"),
    ],
)
def test_malformed_policies_are_refused(document: object, fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        parse_policy(document)  # type: ignore[arg-type]
