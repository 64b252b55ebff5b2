"""Wire APIs: EventBridge (AWS JSON 1.1, ``X-Amz-Target: AWSEvents.<Op>``) and SNS (query protocol).

Both share ``POST /`` with CloudWatch Logs (``Logs_20140328.<Op>``); ``AwsRouter``
sends each request to its API by the target header, or by the form's ``Action``
for SNS. The SubscribeURL and UnsubscribeURL of SNS messages are ``GET /?Action=…``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response

from openbatch.events.service import EventsError, EventsService
from openbatch.observability.requests import OPERATION_KEY

logger = logging.getLogger(__name__)
EVENTS_PREFIX = "AWSEvents."
LOGS_PREFIX = "Logs_20140328."
SNS_NAMESPACE = "http://sns.amazonaws.com/doc/2010-03-31/"

Handler = Callable[[Request], Awaitable[Response]]


def _json_error(code: str, message: str, status: int = 400) -> Response:
    return Response(
        json.dumps({"__type": code, "message": message}),
        status_code=status,
        media_type="application/x-amz-json-1.1",
        headers={"x-amzn-RequestId": str(uuid.uuid4()), "x-amzn-ErrorType": code},
    )


class EventBridgeApi:
    def __init__(self, service: EventsService) -> None:
        self.service = service
        s = service
        self.operations: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "PutRule": s.put_rule,
            "DescribeRule": s.describe_rule,
            "ListRules": s.list_rules,
            "EnableRule": lambda body: s.set_rule_state(body, "ENABLED"),
            "DisableRule": lambda body: s.set_rule_state(body, "DISABLED"),
            "DeleteRule": s.delete_rule,
            "PutTargets": s.put_targets,
            "RemoveTargets": s.remove_targets,
            "ListTargetsByRule": s.list_targets_by_rule,
            "PutEvents": s.put_events,
            "TestEventPattern": s.test_event_pattern,
        }

    def handle(self, operation: str, raw: bytes) -> Response:
        handler = self.operations.get(operation)
        if handler is None:
            return _json_error("UnknownOperationException", f"Operation {operation} is not supported")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return _json_error("SerializationException", "The request body is not valid JSON")
        if not isinstance(body, dict):
            return _json_error("SerializationException", "The request body must be a JSON object")
        try:
            result = handler(body)
        except EventsError as exc:
            return _json_error(exc.code, exc.message, exc.status)
        except Exception:
            logger.exception("EventBridge %s failed", operation)
            return _json_error("InternalException", f"Internal error while handling {operation}", 500)
        return Response(
            json.dumps(result),
            media_type="application/x-amz-json-1.1",
            headers={"x-amzn-RequestId": str(uuid.uuid4())},
        )


def _xml_value(value: Any) -> str:
    return escape(str(value))


def _members(items: list[dict[str, str]]) -> str:
    return "".join(
        "<member>" + "".join(f"<{k}>{_xml_value(v)}</{k}>" for k, v in item.items()) + "</member>" for item in items
    )


def _entries(attributes: Mapping[str, str]) -> str:
    return "".join(
        f"<entry><key>{_xml_value(k)}</key><value>{_xml_value(v)}</value></entry>" for k, v in attributes.items()
    )


def _sns_response(action: str, result: str | None) -> Response:
    inner = f"<{action}Result>{result}</{action}Result>" if result is not None else ""
    request_id = str(uuid.uuid4())
    body = (
        f'<{action}Response xmlns="{SNS_NAMESPACE}">{inner}'
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    )
    return Response(body, media_type="text/xml", headers={"x-amzn-RequestId": request_id})


def sns_error(code: str, message: str, status: int = 400) -> Response:
    request_id = str(uuid.uuid4())
    sender = "Sender" if status < 500 else "Receiver"
    body = (
        f'<ErrorResponse xmlns="{SNS_NAMESPACE}"><Error><Type>{sender}</Type><Code>{code}</Code>'
        f"<Message>{_xml_value(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return Response(
        body,
        status_code=status,
        media_type="text/xml",
        headers={"x-amzn-RequestId": request_id, "x-amzn-ErrorType": code},
    )


def _map_param(params: Mapping[str, str], name: str, key: str = "key", value: str = "value") -> dict[str, str]:
    """``Attributes.entry.N.key`` / ``.value`` pairs of the query protocol."""
    result: dict[str, str] = {}
    for n in range(1, 1000):
        k = params.get(f"{name}.entry.{n}.{key}")
        if k is None:
            break
        result[k] = params.get(f"{name}.entry.{n}.{value}", "")
    return result


def _message_attributes(params: Mapping[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for n in range(1, 11):
        name = params.get(f"MessageAttributes.entry.{n}.Name")
        if name is None:
            break
        prefix = f"MessageAttributes.entry.{n}.Value."
        data_type = params.get(prefix + "DataType", "String")
        value = params.get(prefix + "StringValue") or params.get(prefix + "BinaryValue") or ""
        result[name] = {"Type": data_type, "Value": value}
    return result


class SnsApi:
    def __init__(self, service: EventsService) -> None:
        self.service = service

    def handle(self, params: Mapping[str, str]) -> Response:
        action = params.get("Action", "")
        handler = getattr(self, f"op_{action}", None)
        if handler is None:
            return sns_error("InvalidAction", f"The action {action or '(none)'} is not valid for this web service.")
        try:
            response: Response = handler(params)
        except EventsError as exc:
            return sns_error(exc.code, exc.message, exc.status)
        except Exception:
            logger.exception("SNS %s failed", action)
            return sns_error("InternalError", f"Internal error while handling {action}", 500)
        return response

    def op_CreateTopic(self, p: Mapping[str, str]) -> Response:
        if p.get("Attributes.entry.1.key") and "FifoTopic" in _map_param(p, "Attributes"):
            raise EventsError("InvalidParameter", "Invalid parameter: FIFO topics are not supported")
        arn = self.service.create_topic(p.get("Name"), _map_param(p, "Attributes"))
        return _sns_response("CreateTopic", f"<TopicArn>{_xml_value(arn)}</TopicArn>")

    def op_DeleteTopic(self, p: Mapping[str, str]) -> Response:
        self.service.delete_topic(p.get("TopicArn"))
        return _sns_response("DeleteTopic", None)

    def op_ListTopics(self, p: Mapping[str, str]) -> Response:
        arns, token = self.service.list_topics(p.get("NextToken"))
        result = f"<Topics>{_members([{'TopicArn': a} for a in arns])}</Topics>"
        if token:
            result += f"<NextToken>{_xml_value(token)}</NextToken>"
        return _sns_response("ListTopics", result)

    def op_GetTopicAttributes(self, p: Mapping[str, str]) -> Response:
        attributes = self.service.get_topic_attributes(p.get("TopicArn"))
        return _sns_response("GetTopicAttributes", f"<Attributes>{_entries(attributes)}</Attributes>")

    def op_SetTopicAttributes(self, p: Mapping[str, str]) -> Response:
        self.service.set_topic_attributes(p.get("TopicArn"), p.get("AttributeName"), p.get("AttributeValue"))
        return _sns_response("SetTopicAttributes", None)

    def op_Subscribe(self, p: Mapping[str, str]) -> Response:
        arn = self.service.subscribe(
            p.get("TopicArn"),
            p.get("Protocol"),
            p.get("Endpoint"),
            _map_param(p, "Attributes"),
            p.get("ReturnSubscriptionArn", "false").lower() == "true",
        )
        return _sns_response("Subscribe", f"<SubscriptionArn>{_xml_value(arn)}</SubscriptionArn>")

    def op_ConfirmSubscription(self, p: Mapping[str, str]) -> Response:
        arn = self.service.confirm_subscription(p.get("TopicArn"), p.get("Token"))
        return _sns_response("ConfirmSubscription", f"<SubscriptionArn>{_xml_value(arn)}</SubscriptionArn>")

    def op_Unsubscribe(self, p: Mapping[str, str]) -> Response:
        self.service.unsubscribe(p.get("SubscriptionArn"))
        return _sns_response("Unsubscribe", None)

    def _subscriptions(self, action: str, topic_arn: str | None, p: Mapping[str, str]) -> Response:
        subs, token = self.service.list_subscriptions(topic_arn, p.get("NextToken"))
        result = f"<Subscriptions>{_members(subs)}</Subscriptions>"
        if token:
            result += f"<NextToken>{_xml_value(token)}</NextToken>"
        return _sns_response(action, result)

    def op_ListSubscriptions(self, p: Mapping[str, str]) -> Response:
        return self._subscriptions("ListSubscriptions", None, p)

    def op_ListSubscriptionsByTopic(self, p: Mapping[str, str]) -> Response:
        topic = p.get("TopicArn")
        if not topic:
            raise EventsError("InvalidParameter", "Invalid parameter: TopicArn")
        return self._subscriptions("ListSubscriptionsByTopic", topic, p)

    def op_GetSubscriptionAttributes(self, p: Mapping[str, str]) -> Response:
        attributes = self.service.get_subscription_attributes(p.get("SubscriptionArn"))
        return _sns_response("GetSubscriptionAttributes", f"<Attributes>{_entries(attributes)}</Attributes>")

    def op_SetSubscriptionAttributes(self, p: Mapping[str, str]) -> Response:
        self.service.set_subscription_attributes(
            p.get("SubscriptionArn"), p.get("AttributeName"), p.get("AttributeValue")
        )
        return _sns_response("SetSubscriptionAttributes", None)

    def op_Publish(self, p: Mapping[str, str]) -> Response:
        if p.get("TargetArn") or p.get("PhoneNumber"):
            raise EventsError("InvalidParameter", "Invalid parameter: only TopicArn is supported")
        message_id = self.service.publish(
            p.get("TopicArn"), p.get("Message"), p.get("Subject"), p.get("MessageStructure"), _message_attributes(p)
        )
        return _sns_response("Publish", f"<MessageId>{message_id}</MessageId>")


class AwsRouter:
    """``/``: JSON 1.1 APIs by ``X-Amz-Target`` prefix, SNS by ``Action`` (form body or, for GET, query)."""

    def __init__(self, events: EventBridgeApi, sns: SnsApi, logs: Handler | None = None) -> None:
        self.events = events
        self.sns = sns
        self.logs = logs

    async def handle(self, request: Request) -> Response:
        target = request.headers.get("x-amz-target", "")
        if target.startswith(LOGS_PREFIX) and self.logs is not None:
            request.scope[OPERATION_KEY] = target[len(LOGS_PREFIX) :]
            return await self.logs(request)
        if target.startswith(EVENTS_PREFIX):
            operation = target[len(EVENTS_PREFIX) :]
            request.scope[OPERATION_KEY] = operation
            return self.events.handle(operation, await request.body())
        if target:
            return _json_error("UnknownOperationException", f"Unknown operation {target!r}")
        if request.method == "GET":
            params = dict(parse_qsl(request.url.query, keep_blank_values=True))
        else:
            try:
                params = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            except UnicodeDecodeError:
                return sns_error("InvalidParameter", "The request body is not valid UTF-8")
        action = params.get("Action", "")
        request.scope[OPERATION_KEY] = action or "unknown"
        if request.method == "GET" and action not in ("ConfirmSubscription", "Unsubscribe"):
            return sns_error("InvalidAction", "Only ConfirmSubscription and Unsubscribe may be called with GET")
        return self.sns.handle(params)
