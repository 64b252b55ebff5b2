"""``openbatch notify``: job notifications in one command, built from EventBridge rules and SNS topics.

``notify add`` creates what an AWS user would: a rule matching ``Batch Job State
Change`` events, and as its target either a webhook (an OpenBatch extension that
POSTs the event JSON, no confirmation needed) or an SNS topic with an email
subscription (confirmed through the link in the first email, as on AWS). Every
call goes through the server's EventBridge and SNS APIs with boto3.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from openbatch.cli import common

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import TargetTypeDef
    from mypy_boto3_sns import SNSClient

app = typer.Typer(help="Notifications when jobs change state (EventBridge rules and SNS topics).", no_args_is_help=True)
PREFIX = "openbatch-notify-"
_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
_TEMPLATE = "Job <name> (<id>) is <status> in queue <queue>. Reason: <reason>"
T = TypeVar("T")

EndpointOption = common.EndpointOption
ProfileOption = common.ProfileOption


def _target(url: str | None, profile: str | None) -> common.Target:
    try:
        return common.resolve(url, profile)
    except common.CliError as exc:
        common.fail(exc.message, exc.hint, exc.code)


def _endpoint(url: str | None, profile: str | None = None) -> str:
    return _target(url, profile).endpoint_url


def _clients(url: str | None, profile: str | None = None) -> tuple[EventBridgeClient, SNSClient]:
    target = _target(url, profile)
    return common.boto_client("events", target), common.boto_client("sns", target)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@contextmanager
def _errors(url: str | None, profile: str | None = None) -> Iterator[None]:
    """Turn client errors into one line on stderr and exit status 1."""
    try:
        yield
    except EndpointConnectionError:
        raise _fail(
            f"cannot reach the OpenBatch server at {_endpoint(url, profile)} (is `openbatch server` running?)"
        ) from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise _fail(f"{error.get('Code', 'Error')}: {error.get('Message', str(exc))}") from None
    except BotoCoreError as exc:
        raise _fail(str(exc)) from None


def _pattern(on: list[str], queue: str | None, prefix: str | None) -> dict[str, Any]:
    detail: dict[str, Any] = {"status": on}
    if queue:
        detail["jobQueue"] = [queue] if queue.startswith("arn:") else [{"suffix": f":job-queue/{queue}"}]
    if prefix:
        detail["jobName"] = [{"prefix": prefix}]
    return {"source": ["aws.batch"], "detail-type": ["Batch Job State Change"], "detail": detail}


@app.command("add")
def add(
    on: list[str] = typer.Option(..., "--on", help="Job state to notify about (repeat for several), e.g. FAILED."),
    queue: str | None = typer.Option(None, "--queue", help="Only jobs of this job queue (name or ARN)."),
    job_name_prefix: str | None = typer.Option(None, "--job-name-prefix", help="Only jobs whose name starts so."),
    webhook: str | None = typer.Option(None, "--webhook", help="POST each event's JSON to this http(s) URL."),
    email: str | None = typer.Option(None, "--email", help="Email this address (the server needs --smtp-url)."),
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """Create a notification: a rule on job state changes with a webhook or email target."""
    states = [state.upper() for state in on]
    unknown = [state for state in states if state not in _STATES]
    if unknown:
        raise _fail(f"--on {unknown[0]} is not a job state; use one of {', '.join(_STATES)}")
    if (webhook is None) == (email is None):
        raise _fail("give exactly one of --webhook URL or --email ADDRESS")
    if webhook is not None and not webhook.startswith(("http://", "https://")):
        raise _fail(f"--webhook must be an http:// or https:// URL, not {webhook!r}")
    if email is not None and ("@" not in email or " " in email):
        raise _fail(f"--email {email!r} is not an email address")
    events, sns = _clients(endpoint_url, profile)
    name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    what = (
        ", ".join(states)
        + (f" in queue {queue}" if queue else "")
        + (f" named {job_name_prefix}*" if job_name_prefix else "")
    )
    with _errors(endpoint_url, profile):
        events.put_rule(
            Name=name,
            EventPattern=json.dumps(_pattern(states, queue, job_name_prefix)),
            Description=f"openbatch notify: jobs {what}",
        )
        if webhook is not None:
            target: TargetTypeDef = {"Id": "webhook", "Arn": webhook}
            destination = webhook
        else:
            assert email is not None
            topic = sns.create_topic(Name=name)["TopicArn"]
            sns.subscribe(TopicArn=topic, Protocol="email", Endpoint=email)
            target = {
                "Id": "email",
                "Arn": topic,
                "InputTransformer": {
                    "InputPathsMap": {
                        "name": "$.detail.jobName",
                        "id": "$.detail.jobId",
                        "status": "$.detail.status",
                        "queue": "$.detail.jobQueue",
                        "reason": "$.detail.statusReason",
                    },
                    "InputTemplate": _TEMPLATE,
                },
            }
            destination = email
        result = events.put_targets(Rule=name, Targets=[target])
        if result["FailedEntryCount"]:
            entry = result["FailedEntries"][0]
            _check(lambda: events.delete_rule(Name=name))
            raise _fail(f"{entry.get('ErrorCode')}: {entry.get('ErrorMessage')}")
    typer.echo(f"{name}: jobs {what} → {destination}")
    if email is not None:
        typer.echo(f"Confirm the subscription with the link in the email sent to {email}.")


def _check(call: Callable[[], T]) -> T | None:
    try:
        return call()
    except (ClientError, BotoCoreError):
        return None


@app.command("ls")
def ls(endpoint_url: str | None = EndpointOption, profile: str | None = ProfileOption) -> None:
    """List the notifications made by `openbatch notify add`."""
    events, sns = _clients(endpoint_url, profile)
    with _errors(endpoint_url, profile):
        rules = events.list_rules(NamePrefix=PREFIX, Limit=100)["Rules"]
        if not rules:
            typer.echo("No notifications.")
            return
        for rule in rules:
            name = rule["Name"]
            description = rule.get("Description", "").removeprefix("openbatch notify: ")
            state = "" if rule.get("State") == "ENABLED" else f" [{rule.get('State')}]"
            for target in events.list_targets_by_rule(Rule=name)["Targets"]:
                arn = target["Arn"]
                if arn.startswith("arn:aws:sns:"):
                    for line in _subscriptions(sns, arn):
                        typer.echo(f"{name}{state}: {description} → {line}")
                else:
                    typer.echo(f"{name}{state}: {description} → webhook {arn}")


def _subscriptions(sns: SNSClient, topic: str) -> list[str]:
    lines = []
    for sub in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]:
        endpoint = f"{sub['Protocol']} {sub['Endpoint']}"
        if sub["SubscriptionArn"] == "PendingConfirmation":
            lines.append(f"{endpoint} (pending confirmation)")
            continue
        attributes = sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])["Attributes"]
        failed = attributes.get("DeliveriesFailed", "0")
        lines.append(endpoint + (f" ({failed} failed deliveries)" if failed != "0" else ""))
    return lines or ["(no subscriptions)"]


@app.command("rm")
def rm(
    name: str = typer.Argument(..., help="Notification name, as `notify ls` shows it."),
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """Remove a notification: its rule, and the topic and subscriptions it created."""
    if not name.startswith(PREFIX):
        raise _fail(f"{name!r} was not made by `openbatch notify add` (names start with {PREFIX})")
    events, sns = _clients(endpoint_url, profile)
    with _errors(endpoint_url, profile):
        try:
            targets = events.list_targets_by_rule(Rule=name)["Targets"]
        except events.exceptions.ResourceNotFoundException:
            raise _fail(f"no notification named {name}") from None
        if targets:
            events.remove_targets(Rule=name, Ids=[t["Id"] for t in targets])
        events.delete_rule(Name=name)
        for topic in [t["Arn"] for t in targets if t["Arn"].startswith("arn:aws:sns:")]:
            try:
                sns.delete_topic(TopicArn=topic)
            except ClientError:
                pass  # already gone
    typer.echo(f"Removed {name}.")
