"""EventBridge rules and SNS topics: the use cases behind both wire APIs, and event routing.

An event (a job state change from the outbox, or one sent with PutEvents) is
matched against the enabled rules; each matching rule's targets turn it into
deliveries: one per confirmed subscription of an SNS topic target, or one per
webhook target (an OpenBatch extension: a target ``Arn`` that is an
``http(s)://`` URL). Deliveries are committed before anything is sent, so a
crash never loses one.
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from openbatch.clock import Clock
from openbatch.domain.job import StatusChange
from openbatch.events.patterns import Compiled, InvalidEventPatternError, parse_pattern
from openbatch.events.store import EventsStore, NewDelivery, Rule, Subscription, Target, Topic
from openbatch.store.base import OutboxEntry

OUTBOX_TOPIC = "events"
DETAIL_TYPE = "Batch Job State Change"
WORKFLOW_SOURCE = "openbatch.workflows"
WORKFLOW_DETAIL_TYPE = "Workflow Run State Change"
"""Events of workflow runs, beside AWS's job events: ``source`` and ``detail-type`` in the same style."""
DEFAULT_BUS = "default"
_RULE_NAME = re.compile(r"^[\.\-_A-Za-z0-9]{1,64}$")
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_TARGET_ID = re.compile(r"^[\.\-_A-Za-z0-9]{1,64}$")
_RULE_STATES = ("ENABLED", "DISABLED", "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS")
PROTOCOLS = ("http", "https", "email", "email-json")
_MAX_MESSAGE_BYTES = 262_144
_INPUT_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")


class EventsError(Exception):
    """An error of either API: ``code`` is the AWS error code (e.g. ``ResourceNotFoundException``)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def iso_time(ms: int, *, millis: bool = False) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class _ActiveRule:
    rule: Rule
    pattern: Compiled
    targets: tuple[Target, ...]


class EventsService:
    def __init__(
        self,
        store: EventsStore,
        clock: Clock,
        *,
        region: str,
        account: str,
        public_url: str,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.region = region
        self.account = account
        self.public_url = public_url.rstrip("/")
        self.wake = wake
        """Tells the delivery worker that new deliveries are waiting."""
        self._active: list[_ActiveRule] = []
        self._job_statuses: frozenset[str] | None = frozenset()
        """The job states some rule can match (``None``: any); empty when no rule can match a job event."""
        self._subscribers: dict[str, list[Subscription]] = {}
        self.reload()

    # --- in-memory views ----------------------------------------------------------

    def reload(self) -> None:
        """Rebuild the compiled rules and the confirmed subscribers of each topic."""
        targets: dict[str, list[Target]] = {}
        for target in self.store.list_targets():
            targets.setdefault(target.rule, []).append(target)
        active = []
        for rule in self.store.list_rules():
            if rule.state == "DISABLED":
                continue
            try:
                pattern = parse_pattern(rule.event_pattern)
            except InvalidEventPatternError:
                continue
            active.append(_ActiveRule(rule, pattern, tuple(targets.get(rule.name, ()))))
        self._active = active
        self._job_statuses = _job_statuses([json.loads(a.rule.event_pattern) for a in active])
        self._subscribers = {}
        for sub in self.store.list_subscriptions(limit=1_000_000):
            if sub.confirmed:
                self._subscribers.setdefault(sub.topic_arn, []).append(sub)

    @property
    def has_rules(self) -> bool:
        return bool(self._active)

    # --- events ---------------------------------------------------------------------

    def job_event(self, change: StatusChange, detail: dict[str, Any]) -> dict[str, Any]:
        """The EventBridge ``Batch Job State Change`` event for one state change.

        ``detail`` is the job as it is at commit time; a job that moved several times
        since the last commit has each event say the state it moved to.
        """
        detail["status"] = change.new.value
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": DETAIL_TYPE,
            "source": "aws.batch",
            "account": self.account,
            "time": iso_time(change.at),
            "region": self.region,
            "resources": [detail.get("jobArn", "")],
            "detail": detail,
        }

    def workflow_run_event(self, run: dict[str, Any]) -> dict[str, Any]:
        """The ``Workflow Run State Change`` event of a run (``detail`` = the run as the native API shows it)."""
        at = run.get("stoppedAt") or run.get("createdAt") or self.clock.now_ms()
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": WORKFLOW_DETAIL_TYPE,
            "source": WORKFLOW_SOURCE,
            "account": self.account,
            "time": iso_time(int(at)),
            "region": self.region,
            "resources": [f"arn:aws:openbatch:{self.region}:{self.account}:workflow-run/{run['runId']}"],
            "detail": run,
        }

    def workflow_outbox_source(self, runs: Sequence[dict[str, Any]]) -> list[OutboxEntry]:
        """Outbox entries for workflow run state changes that some enabled rule matches."""
        if not self._active:
            return []
        entries = []
        for run in runs:
            event = self.workflow_run_event(run)
            if any(active.pattern(event) for active in self._active):
                body = json.dumps(event, separators=(",", ":"))
                created = int(run.get("stoppedAt") or run.get("createdAt") or self.clock.now_ms())
                entries.append(OutboxEntry(topic=OUTBOX_TOPIC, key=str(run["runId"]), created_at=created, body=body))
        return entries

    def outbox_source(
        self, renderer: Callable[[], Callable[[Any], dict[str, Any]]]
    ) -> Callable[[Sequence[StatusChange]], list[OutboxEntry]]:
        """An engine outbox source: an entry per state change that some enabled rule matches.

        Rules see the events emitted while they exist, as on AWS; without any rule
        a state change costs nothing here.
        """

        def source(changes: Sequence[StatusChange]) -> list[OutboxEntry]:
            if not self._active:
                return []
            statuses = self._job_statuses
            if statuses is not None:
                # Rendering a job costs far more than this test: skip states no rule can match.
                changes = [change for change in changes if change.new.value in statuses]
            if not changes:
                return []
            render = renderer()
            entries = []
            for change in changes:
                event = self.job_event(change, render(change.job))
                if any(active.pattern(event) for active in self._active):
                    body = json.dumps(event, separators=(",", ":"))
                    entries.append(OutboxEntry(topic=OUTBOX_TOPIC, key=change.job_id, created_at=change.at, body=body))
            return entries

        return source

    def route(self, event: dict[str, Any]) -> list[NewDelivery]:
        """The deliveries an event causes under the current rules."""
        deliveries: list[NewDelivery] = []
        for active in self._active:
            if not active.pattern(event):
                continue
            for target in active.targets:
                deliveries.extend(self._target_deliveries(active.rule, target, event))
        return deliveries

    def _target_deliveries(self, rule: Rule, target: Target, event: dict[str, Any]) -> list[NewDelivery]:
        message = transform_input(target.body, event)
        # One job's events in order; different jobs' in parallel (custom events without resources share a key).
        resources = event.get("resources")
        key = str(resources[0]) if isinstance(resources, list) and resources else ""
        if target.arn.startswith(("http://", "https://")):
            retry = target.body.get("RetryPolicy") or {}
            return [
                NewDelivery(
                    destination=f"{rule.arn}#{target.target_id}",
                    kind="webhook",
                    message_id=str(event.get("id") or uuid.uuid4()),
                    payload={"url": target.arn, "body": message, "retry": retry, "created_at": self.clock.now_ms()},
                    ordering_key=key,
                )
            ]
        return self._fan_out(target.arn, message, subject=None, attributes={}, ordering_key=key)

    def _fan_out(
        self,
        topic_arn: str,
        message: str | Mapping[str, str],
        *,
        subject: str | None,
        attributes: dict[str, Any],
        ordering_key: str = "",
    ) -> list[NewDelivery]:
        message_id = str(uuid.uuid4())
        timestamp = iso_time(self.clock.now_ms(), millis=True)
        deliveries = []
        for sub in self._subscribers.get(topic_arn, ()):
            text = message if isinstance(message, str) else message.get(sub.protocol, message["default"])
            deliveries.append(
                NewDelivery(
                    destination=sub.arn,
                    kind="notification",
                    message_id=message_id,
                    payload={
                        "TopicArn": topic_arn,
                        "Message": text,
                        "Subject": subject,
                        "Timestamp": timestamp,
                        "MessageAttributes": attributes or None,
                    },
                    ordering_key=ordering_key,
                )
            )
        return deliveries

    def accept(self, deliveries: list[NewDelivery]) -> None:
        if deliveries:
            self.store.add_deliveries(deliveries, self.clock.now_ms())
            self.wake()

    # --- EventBridge ------------------------------------------------------------------

    def rule_arn(self, name: str) -> str:
        return f"arn:aws:events:{self.region}:{self.account}:rule/{name}"

    def _rule_name(self, body: Mapping[str, Any], key: str = "Name") -> str:
        name = body.get(key)
        if not isinstance(name, str) or not _RULE_NAME.match(name):
            raise EventsError("ValidationException", f"{key} must match [.\\-_A-Za-z0-9]{{1,64}}")
        _check_bus(body)
        return name

    def _existing_rule(self, name: str) -> Rule:
        rule = self.store.get_rule(name)
        if rule is None:
            raise EventsError("ResourceNotFoundException", f"Rule {name} does not exist on EventBus default.")
        return rule

    def put_rule(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = self._rule_name(body)
        if body.get("ScheduleExpression"):
            raise EventsError("ValidationException", "ScheduleExpression is not supported; use EventPattern.")
        pattern = body.get("EventPattern")
        if not isinstance(pattern, str):
            raise EventsError("ValidationException", "EventPattern is required.")
        try:
            parse_pattern(pattern)
        except InvalidEventPatternError as exc:
            raise EventsError("InvalidEventPatternException", f"Event pattern is not valid. Reason: {exc}") from None
        state = body.get("State") or "ENABLED"
        if state not in _RULE_STATES:
            raise EventsError("ValidationException", f"State must be one of {', '.join(_RULE_STATES)}")
        description = body.get("Description")
        if description is not None and (not isinstance(description, str) or len(description) > 512):
            raise EventsError("ValidationException", "Description must be a string of at most 512 characters.")
        existing = self.store.get_rule(name)
        arn = self.rule_arn(name)
        self.store.put_rule(
            Rule(
                name=name,
                arn=arn,
                event_pattern=pattern,
                state=state,
                description=description,
                created_at=existing.created_at if existing else self.clock.now_ms(),
            )
        )
        self.reload()
        return {"RuleArn": arn}

    def _rule_view(self, rule: Rule) -> dict[str, Any]:
        view = {
            "Name": rule.name,
            "Arn": rule.arn,
            "EventPattern": rule.event_pattern,
            "State": rule.state,
            "EventBusName": DEFAULT_BUS,
        }
        if rule.description is not None:
            view["Description"] = rule.description
        return view

    def describe_rule(self, body: Mapping[str, Any]) -> dict[str, Any]:
        rule = self._existing_rule(self._rule_name(body))
        return {**self._rule_view(rule), "CreatedBy": self.account}

    def list_rules(self, body: Mapping[str, Any]) -> dict[str, Any]:
        _check_bus(body)
        limit = _limit(body.get("Limit"), 100)
        token = body.get("NextToken")
        prefix = body.get("NamePrefix")
        rules = self.store.list_rules(
            prefix if isinstance(prefix, str) else None, _token(token) if token else None, limit + 1
        )
        result: dict[str, Any] = {"Rules": [self._rule_view(rule) for rule in rules[:limit]]}
        if len(rules) > limit:
            result["NextToken"] = rules[limit - 1].name
        return result

    def set_rule_state(self, body: Mapping[str, Any], state: str) -> dict[str, Any]:
        name = self._rule_name(body)
        if not self.store.set_rule_state(name, state):
            self._existing_rule(name)
        self.reload()
        return {}

    def delete_rule(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = self._rule_name(body)
        if self.store.get_rule(name) is None:
            return {}
        if self.store.list_targets(name):
            raise EventsError("ValidationException", "Rule can't be deleted since it has targets.")
        self.store.delete_rule(name)
        self.reload()
        return {}

    def put_targets(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = self._rule_name(body, "Rule")
        self._existing_rule(name)
        targets = body.get("Targets")
        if not isinstance(targets, list) or not 1 <= len(targets) <= 10:
            raise EventsError("ValidationException", "Targets must be a list of 1 to 10 targets.")
        accepted, failed = [], []
        for raw in targets:
            target_id = raw.get("Id") if isinstance(raw, dict) else None
            try:
                accepted.append(self._target(name, raw))
            except EventsError as exc:
                failed.append({"TargetId": str(target_id), "ErrorCode": exc.code, "ErrorMessage": exc.message})
        self.store.put_targets(name, accepted)
        self.reload()
        return {"FailedEntryCount": len(failed), "FailedEntries": failed}

    def _target(self, rule: str, raw: Any) -> Target:
        if not isinstance(raw, dict):
            raise EventsError("ValidationException", "Each target must be an object.")
        target_id, arn = raw.get("Id"), raw.get("Arn")
        if not isinstance(target_id, str) or not _TARGET_ID.match(target_id):
            raise EventsError("ValidationException", "Target Id must match [.\\-_A-Za-z0-9]{1,64}.")
        if not isinstance(arn, str) or not arn:
            raise EventsError("ValidationException", "Target Arn is required.")
        if arn.startswith(("http://", "https://")):
            parts = urlsplit(arn)
            if not parts.hostname:
                raise EventsError("ValidationException", f"Target {target_id}: {arn!r} is not a URL.")
        elif not arn.startswith("arn:aws:sns:"):
            raise EventsError(
                "ValidationException",
                f"Target {target_id}: only SNS topic ARNs and http(s) webhook URLs are supported targets.",
            )
        given = [key for key in ("Input", "InputPath", "InputTransformer") if raw.get(key) is not None]
        if len(given) > 1:
            raise EventsError("ValidationException", "Only one of Input, InputPath and InputTransformer may be set.")
        if raw.get("Input") is not None:
            try:
                json.loads(raw["Input"])
            except (TypeError, ValueError):
                raise EventsError("ValidationException", f"Target {target_id}: Input must be valid JSON.") from None
        transformer = raw.get("InputTransformer")
        if transformer is not None and not isinstance(transformer.get("InputTemplate"), str):
            raise EventsError("ValidationException", "InputTransformer needs an InputTemplate.")
        return Target(rule=rule, target_id=target_id, arn=arn, body=raw)

    def remove_targets(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = self._rule_name(body, "Rule")
        self._existing_rule(name)
        ids = body.get("Ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise EventsError("ValidationException", "Ids must be a non-empty list of target ids.")
        self.store.remove_targets(name, ids)
        self.reload()
        return {"FailedEntryCount": 0, "FailedEntries": []}

    def list_targets_by_rule(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = self._rule_name(body, "Rule")
        self._existing_rule(name)
        return {"Targets": [target.body for target in self.store.list_targets(name)]}

    def put_events(self, body: Mapping[str, Any]) -> dict[str, Any]:
        entries = body.get("Entries")
        if not isinstance(entries, list) or not 1 <= len(entries) <= 10:
            raise EventsError("ValidationException", "Entries must be a list of 1 to 10 entries.")
        results: list[dict[str, Any]] = []
        deliveries: list[NewDelivery] = []
        for entry in entries:
            try:
                event = self._custom_event(entry)
            except EventsError as exc:
                results.append({"ErrorCode": exc.code, "ErrorMessage": exc.message})
                continue
            deliveries.extend(self.route(event))
            results.append({"EventId": event["id"]})
        self.accept(deliveries)
        failed = sum(1 for r in results if "ErrorCode" in r)
        return {"FailedEntryCount": failed, "Entries": results}

    def _custom_event(self, entry: Any) -> dict[str, Any]:
        if not isinstance(entry, dict):
            raise EventsError("InvalidArgument", "Each entry must be an object.")
        source, detail_type, detail = entry.get("Source"), entry.get("DetailType"), entry.get("Detail")
        if not isinstance(source, str) or not source:
            raise EventsError(
                "InvalidArgument", "Parameter Source is not valid. Reason: Source is a required argument."
            )
        if not isinstance(detail_type, str) or not detail_type:
            raise EventsError(
                "InvalidArgument", "Parameter DetailType is not valid. Reason: DetailType is a required argument."
            )
        if source.startswith("aws."):
            raise EventsError("NotAuthorizedForSourceException", f"Not authorized for the source {source}.")
        try:
            detail_value = json.loads(detail) if isinstance(detail, str) else None
        except ValueError:
            detail_value = None
        if not isinstance(detail_value, dict):
            raise EventsError("MalformedDetail", "Detail is malformed: it must be a JSON object.")
        try:
            _check_bus(entry)
        except EventsError as exc:
            raise EventsError("InvalidArgument", exc.message) from None
        when = entry.get("Time")
        at = int(when * 1000) if isinstance(when, int | float) else self.clock.now_ms()
        resources = entry.get("Resources") or []
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": self.account,
            "time": iso_time(at),
            "region": self.region,
            "resources": [r for r in resources if isinstance(r, str)],
            "detail": detail_value,
        }

    def test_event_pattern(self, body: Mapping[str, Any]) -> dict[str, Any]:
        pattern, event_text = body.get("EventPattern"), body.get("Event")
        if not isinstance(pattern, str) or not isinstance(event_text, str):
            raise EventsError("ValidationException", "EventPattern and Event are required.")
        try:
            compiled = parse_pattern(pattern)
        except InvalidEventPatternError as exc:
            raise EventsError("InvalidEventPatternException", f"Event pattern is not valid. Reason: {exc}") from None
        try:
            event = json.loads(event_text)
        except ValueError:
            raise EventsError("ValidationException", "Parameter Event is not valid JSON.") from None
        if not isinstance(event, dict):
            raise EventsError("ValidationException", "Parameter Event must be a JSON object.")
        missing = [k for k in ("id", "account", "source", "time", "region", "detail-type") if k not in event]
        if missing:
            raise EventsError("ValidationException", f"Parameter Event is not valid: missing {', '.join(missing)}.")
        return {"Result": compiled(event)}

    # --- SNS ----------------------------------------------------------------------

    def topic_arn(self, name: str) -> str:
        return f"arn:aws:sns:{self.region}:{self.account}:{name}"

    def _topic(self, arn: Any, param: str = "TopicArn") -> Topic:
        if not isinstance(arn, str) or not arn:
            raise EventsError("InvalidParameter", f"Invalid parameter: {param}")
        topic = self.store.get_topic(arn)
        if topic is None:
            raise EventsError("NotFound", "Topic does not exist", 404)
        return topic

    def create_topic(self, name: Any, attributes: dict[str, str]) -> str:
        if not isinstance(name, str) or not _TOPIC_NAME.match(name):
            raise EventsError(
                "InvalidParameter",
                "Invalid parameter: Topic Name must be 1 to 256 letters, digits, hyphens or underscores",
            )
        _check_topic_attributes(attributes)
        topic = self.store.create_topic(
            Topic(name=name, arn=self.topic_arn(name), attributes=attributes, created_at=self.clock.now_ms())
        )
        return topic.arn

    def delete_topic(self, arn: Any) -> None:
        if self.store.get_topic(str(arn)) is None:
            self._topic(arn)
        self.store.delete_topic(str(arn))
        self.reload()

    def list_topics(self, token: str | None) -> tuple[list[str], str | None]:
        topics = self.store.list_topics(after=token, limit=101)
        arns = [t.arn for t in topics[:100]]
        return arns, (arns[-1] if len(topics) > 100 else None)

    def get_topic_attributes(self, arn: Any) -> dict[str, str]:
        topic = self._topic(arn)
        subs = self.store.list_subscriptions(topic.arn, limit=1_000_000)
        confirmed = sum(1 for s in subs if s.confirmed)
        return {
            "TopicArn": topic.arn,
            "Owner": self.account,
            "DisplayName": topic.attributes.get("DisplayName", ""),
            "SubscriptionsConfirmed": str(confirmed),
            "SubscriptionsPending": str(len(subs) - confirmed),
            "SubscriptionsDeleted": "0",
            "EffectiveDeliveryPolicy": json.dumps(
                {"http": {"defaultHealthyRetryPolicy": DEFAULT_RETRY_POLICY}}, separators=(",", ":")
            ),
            **topic.attributes,
        }

    def set_topic_attributes(self, arn: Any, name: Any, value: Any) -> None:
        topic = self._topic(arn)
        if not isinstance(name, str) or not isinstance(value, str):
            raise EventsError("InvalidParameter", "Invalid parameter: AttributeName and AttributeValue are required")
        attributes = {**topic.attributes, name: value}
        _check_topic_attributes({name: value})
        self.store.set_topic_attributes(topic.arn, attributes)

    def subscribe(
        self, topic_arn: Any, protocol: Any, endpoint: Any, attributes: dict[str, str], return_arn: bool
    ) -> str:
        topic = self._topic(topic_arn)
        if protocol not in PROTOCOLS:
            raise EventsError("InvalidParameter", f"Invalid parameter: Protocol {protocol!r} is not supported")
        if not isinstance(endpoint, str) or not endpoint:
            raise EventsError("InvalidParameter", "Invalid parameter: Endpoint")
        if protocol in ("http", "https"):
            parts = urlsplit(endpoint)
            if parts.scheme != protocol or not parts.hostname:
                raise EventsError("InvalidParameter", f"Invalid parameter: Endpoint must be a {protocol}:// URL")
        elif "@" not in endpoint or " " in endpoint:
            raise EventsError("InvalidParameter", "Invalid parameter: Email address")
        _check_subscription_attributes(attributes)
        existing = self.store.find_subscription(topic.arn, protocol, endpoint)
        if existing is not None:
            return existing.arn if existing.confirmed or return_arn else "pending confirmation"
        sub = Subscription(
            arn=f"{topic.arn}:{uuid.uuid4()}",
            topic_arn=topic.arn,
            protocol=protocol,
            endpoint=endpoint,
            token=secrets.token_hex(64),
            confirmed=False,
            attributes=attributes,
            created_at=self.clock.now_ms(),
        )
        confirmation = NewDelivery(
            destination=sub.arn,
            kind="confirmation",
            message_id=str(uuid.uuid4()),
            payload={
                "Type": "SubscriptionConfirmation",
                "TopicArn": topic.arn,
                "Token": sub.token,
                "Message": (
                    f"You have chosen to subscribe to the topic {topic.arn}.\n"
                    "To confirm the subscription, visit the SubscribeURL included in this message."
                ),
                "SubscribeURL": self.subscribe_url(topic.arn, sub.token),
                "Timestamp": iso_time(sub.created_at, millis=True),
            },
        )
        self.store.insert_subscription(sub, confirmation)
        self.wake()
        return sub.arn if return_arn else "pending confirmation"

    def subscribe_url(self, topic_arn: str, token: str) -> str:
        return f"{self.public_url}/?Action=ConfirmSubscription&TopicArn={quote(topic_arn, safe='')}&Token={token}"

    def unsubscribe_url(self, subscription_arn: str) -> str:
        return f"{self.public_url}/?Action=Unsubscribe&SubscriptionArn={quote(subscription_arn, safe='')}"

    def confirm_subscription(self, topic_arn: Any, token: Any) -> str:
        topic = self._topic(topic_arn)
        if not isinstance(token, str) or not token:
            raise EventsError("InvalidParameter", "Invalid parameter: Token")
        for sub in self.store.list_subscriptions(topic.arn, limit=1_000_000):
            if secrets.compare_digest(sub.token, token):
                if not sub.confirmed:
                    self.store.confirm_subscription(sub.arn)
                    self.reload()
                return sub.arn
        raise EventsError("InvalidParameter", "Invalid token")

    def _subscription(self, arn: Any) -> Subscription:
        if not isinstance(arn, str) or not arn:
            raise EventsError("InvalidParameter", "Invalid parameter: SubscriptionArn")
        sub = self.store.get_subscription(arn)
        if sub is None:
            raise EventsError("NotFound", "Subscription does not exist", 404)
        return sub

    def unsubscribe(self, arn: Any) -> None:
        sub = self._subscription(arn)
        self.store.delete_subscription(sub.arn)
        self.reload()

    def list_subscriptions(self, topic_arn: str | None, token: str | None) -> tuple[list[dict[str, str]], str | None]:
        if topic_arn is not None:
            self._topic(topic_arn)
        subs = self.store.list_subscriptions(topic_arn, after=token, limit=101)
        views = [
            {
                "SubscriptionArn": s.arn if s.confirmed else "PendingConfirmation",
                "Owner": self.account,
                "Protocol": s.protocol,
                "Endpoint": s.endpoint,
                "TopicArn": s.topic_arn,
            }
            for s in subs[:100]
        ]
        return views, (subs[99].arn if len(subs) > 100 else None)

    def get_subscription_attributes(self, arn: Any) -> dict[str, str]:
        sub = self._subscription(arn)
        counts = self.store.count_deliveries(sub.arn)
        return {
            "SubscriptionArn": sub.arn,
            "TopicArn": sub.topic_arn,
            "Owner": self.account,
            "Protocol": sub.protocol,
            "Endpoint": sub.endpoint,
            "ConfirmationWasAuthenticated": "false",
            "PendingConfirmation": "false" if sub.confirmed else "true",
            "RawMessageDelivery": "false",
            **sub.attributes,
            # OpenBatch extensions: the state of this subscription's deliveries.
            "DeliveriesPending": str(counts["PENDING"]),
            "DeliveriesDelivered": str(counts["DELIVERED"]),
            "DeliveriesFailed": str(counts["DEAD"]),
        }

    def set_subscription_attributes(self, arn: Any, name: Any, value: Any) -> None:
        sub = self._subscription(arn)
        if not isinstance(name, str) or not isinstance(value, str):
            raise EventsError("InvalidParameter", "Invalid parameter: AttributeName and AttributeValue are required")
        _check_subscription_attributes({name: value})
        self.store.set_subscription_attributes(sub.arn, {**sub.attributes, name: value})

    def publish(
        self,
        topic_arn: Any,
        message: Any,
        subject: Any,
        structure: Any,
        attributes: dict[str, Any],
    ) -> str:
        topic = self._topic(topic_arn)
        if not isinstance(message, str) or not message:
            raise EventsError("InvalidParameter", "Invalid parameter: Empty message")
        if len(message.encode()) > _MAX_MESSAGE_BYTES:
            raise EventsError("InvalidParameter", "Invalid parameter: Message too long")
        if subject is not None and (not isinstance(subject, str) or not subject or len(subject) > 100):
            raise EventsError("InvalidParameter", "Invalid parameter: Subject")
        payload: str | dict[str, str] = message
        if structure is not None:
            if structure != "json":
                raise EventsError("InvalidParameter", "Invalid parameter: MessageStructure")
            try:
                parsed = json.loads(message)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict) or not isinstance(parsed.get("default"), str):
                raise EventsError(
                    "InvalidParameter",
                    "Invalid parameter: Message Structure - No default entry in JSON message body",
                )
            payload = {k: v for k, v in parsed.items() if isinstance(v, str)}
        deliveries = self._fan_out(topic.arn, payload, subject=subject, attributes=attributes)
        self.accept(deliveries)
        return deliveries[0].message_id if deliveries else str(uuid.uuid4())


DEFAULT_RETRY_POLICY: dict[str, Any] = {
    # More patient than SNS's default (3 retries in 60 s): the receiver is often a
    # machine of the same team that may be down for maintenance.
    "minDelayTarget": 1,
    "maxDelayTarget": 60,
    "numRetries": 100,
    "numNoDelayRetries": 0,
    "numMinDelayRetries": 0,
    "numMaxDelayRetries": 0,
    "backoffFunction": "exponential",
}
_TOPIC_ATTRIBUTES = ("DisplayName", "DeliveryPolicy", "Policy", "KmsMasterKeyId", "TracingConfig")
_SUBSCRIPTION_ATTRIBUTES = ("DeliveryPolicy", "RawMessageDelivery", "FilterPolicy", "FilterPolicyScope")


def _check_topic_attributes(attributes: Mapping[str, str]) -> None:
    for name, value in attributes.items():
        if name not in _TOPIC_ATTRIBUTES:
            raise EventsError("InvalidParameter", f"Invalid parameter: AttributeName {name}")
        if name == "DeliveryPolicy":
            policy = _json_object(value, name)
            _retry_policy_of(policy.get("http", {}).get("defaultHealthyRetryPolicy"))


def _check_subscription_attributes(attributes: Mapping[str, str]) -> None:
    for name, value in attributes.items():
        if name not in _SUBSCRIPTION_ATTRIBUTES:
            raise EventsError("InvalidParameter", f"Invalid parameter: AttributeName {name}")
        if name == "DeliveryPolicy":
            _retry_policy_of(_json_object(value, name).get("healthyRetryPolicy"))
        elif name == "RawMessageDelivery" and value.lower() not in ("true", "false"):
            raise EventsError("InvalidParameter", "Invalid parameter: RawMessageDelivery must be true or false")
        elif name == "FilterPolicy":
            raise EventsError("InvalidParameter", "Invalid parameter: FilterPolicy is not supported")


def _json_object(value: str, name: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise EventsError("InvalidParameter", f"Invalid parameter: {name} must be a JSON object")
    return parsed


def _retry_policy_of(raw: Any) -> dict[str, Any]:
    """An SNS ``healthyRetryPolicy`` merged over the defaults, validated."""
    if raw is None:
        return dict(DEFAULT_RETRY_POLICY)
    if not isinstance(raw, dict):
        raise EventsError("InvalidParameter", "Invalid parameter: healthyRetryPolicy must be an object")
    policy = {**DEFAULT_RETRY_POLICY, **raw}
    for key in ("minDelayTarget", "maxDelayTarget", "numRetries", "numNoDelayRetries", "numMinDelayRetries"):
        if not isinstance(policy[key], int) or policy[key] < 0:
            raise EventsError("InvalidParameter", f"Invalid parameter: DeliveryPolicy: {key} must be an integer >= 0")
    if policy["minDelayTarget"] > policy["maxDelayTarget"] or policy["numRetries"] > 100:
        raise EventsError(
            "InvalidParameter", "Invalid parameter: DeliveryPolicy: minDelayTarget <= maxDelayTarget, numRetries <= 100"
        )
    if policy["backoffFunction"] not in ("linear", "arithmetic", "geometric", "exponential"):
        raise EventsError("InvalidParameter", "Invalid parameter: DeliveryPolicy: unknown backoffFunction")
    return policy


def retry_policy(topic: Topic | None, subscription: Subscription | None) -> dict[str, Any]:
    """The effective retry policy: the subscription's, else the topic's, else the default."""
    if subscription is not None and "DeliveryPolicy" in subscription.attributes:
        return _retry_policy_of(json.loads(subscription.attributes["DeliveryPolicy"]).get("healthyRetryPolicy"))
    if topic is not None and "DeliveryPolicy" in topic.attributes:
        policy = json.loads(topic.attributes["DeliveryPolicy"])
        return _retry_policy_of(policy.get("http", {}).get("defaultHealthyRetryPolicy"))
    return dict(DEFAULT_RETRY_POLICY)


def retry_delay(policy: Mapping[str, Any], failures: int) -> float | None:
    """Seconds to wait after the ``failures``-th failed attempt, or None once retries are used up.

    Phases as in SNS: immediate retries, retries at the minimum delay, a backoff
    phase from the minimum to the maximum delay, then retries at the maximum delay.
    """
    retries = int(policy["numRetries"])
    if failures > retries:
        return None
    no_delay, at_min = int(policy["numNoDelayRetries"]), int(policy["numMinDelayRetries"])
    at_max = int(policy["numMaxDelayRetries"])
    low, high = float(policy["minDelayTarget"]), float(policy["maxDelayTarget"])
    if failures <= no_delay:
        return 0.0
    if failures <= no_delay + at_min:
        return low
    backoff_steps = max(retries - no_delay - at_min - at_max, 1)
    step = failures - no_delay - at_min
    if step > backoff_steps:
        return high
    function = policy["backoffFunction"]
    fraction = step / backoff_steps
    if function == "linear":
        delay = low + (high - low) * fraction
    elif function == "arithmetic":
        delay = low + (high - low) * fraction * fraction
    elif function == "geometric":
        delay = low * (max(high / max(low, 1e-3), 1.0) ** fraction)
    else:
        delay = max(low, 1.0) * 2 ** (step - 1)
    return min(max(delay, low), high)


def _job_statuses(patterns: Sequence[Any]) -> frozenset[str] | None:
    """The job states for which some pattern may match a ``Batch Job State Change`` event.

    Only plain lists of strings are read (``"source": ["aws.batch"]``, ``"detail": {"status":
    ["FAILED"]}``): a pattern using matchers or ``$or`` there may match any state. Every
    pattern must still match the whole event; this only rules events out early.
    """
    statuses: set[str] = set()
    for pattern in patterns:
        if not isinstance(pattern, dict):
            return None
        if not _may_be(pattern.get("source"), "aws.batch") or not _may_be(pattern.get("detail-type"), DETAIL_TYPE):
            continue
        detail = pattern.get("detail")
        wanted = detail.get("status") if isinstance(detail, dict) else None
        if not isinstance(wanted, list) or not all(isinstance(v, str) for v in wanted) or "$or" in pattern:
            return None
        if isinstance(detail, dict) and "$or" in detail:
            return None
        statuses.update(wanted)
    return frozenset(statuses)


def _may_be(values: Any, value: str) -> bool:
    """False only when ``values`` is a list of plain strings without ``value``."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        return True
    return value in values


def _check_bus(body: Mapping[str, Any]) -> None:
    bus = body.get("EventBusName")
    if bus is not None and bus != DEFAULT_BUS and not (isinstance(bus, str) and bus.endswith(":event-bus/default")):
        raise EventsError("ResourceNotFoundException", f"Event bus {bus} does not exist.")


def _limit(value: Any, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or not 1 <= value <= 100:
        raise EventsError("ValidationException", "Limit must be between 1 and 100.")
    return value


def _token(value: Any) -> str:
    if not isinstance(value, str):
        raise EventsError("ValidationException", "NextToken is not valid.")
    return value


def transform_input(target: Mapping[str, Any], event: dict[str, Any]) -> str:
    """The text a target receives: the event, or its Input / InputPath / InputTransformer."""
    if target.get("Input") is not None:
        return str(target["Input"])
    if target.get("InputPath"):
        return json.dumps(json_path(event, str(target["InputPath"])))
    transformer = target.get("InputTransformer")
    if transformer:
        values = {name: json_path(event, path) for name, path in (transformer.get("InputPathsMap") or {}).items()}
        values["aws.events.event.json"] = event
        values["aws.events.rule-arn"] = ""

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in values:
                return match.group(0)
            value = values[name]
            return value if isinstance(value, str) else json.dumps(value)

        return _INPUT_PLACEHOLDER.sub(substitute, str(transformer["InputTemplate"]))
    return json.dumps(event, separators=(",", ":"))


def json_path(event: Any, path: str) -> Any:
    """A JSONPath of dotted fields and ``[n]`` indexes (``$.detail.attempts[0].container.exitCode``)."""
    if path == "$":
        return event
    value = event
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path.removeprefix("$")):
        if part.startswith("["):
            index = int(part[1:-1])
            value = value[index] if isinstance(value, list) and index < len(value) else None
        else:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            return None
    return value
