"""A CloudWatch Logs-compatible read API (JSON 1.1, ``X-Amz-Target: Logs_20140328.*``) over the log store.

Point a CloudWatch Logs client at the server (``AWS_ENDPOINT_URL_LOGS``) to
read job output with the tools users already have.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from openbatch.api.errors import error_response
from openbatch.logs.store import InvalidTokenError, LogStore, LogStreamNotFoundError

_PREFIX = "Logs_20140328."


def _ok(payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload), media_type="application/x-amz-json-1.1")


def _invalid(message: str) -> Response:
    return error_response(400, "InvalidParameterException", message)


class LogsApi:
    def __init__(self, store: LogStore) -> None:
        self.store = store

    async def handle(self, request: Request) -> Response:
        target = request.headers.get("x-amz-target", "")
        if not target.startswith(_PREFIX):
            return error_response(400, "UnknownOperationException", f"Unknown operation {target!r}")
        operation = target[len(_PREFIX) :]
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return error_response(400, "SerializationException", "The request body is not valid JSON")
        if not isinstance(body, dict):
            return error_response(400, "SerializationException", "The request body must be a JSON object")
        if operation == "GetLogEvents":
            return self.get_log_events(body)
        if operation == "DescribeLogStreams":
            return self.describe_log_streams(body)
        return error_response(400, "UnknownOperationException", f"Operation {operation} is not supported")

    def get_log_events(self, body: dict[str, Any]) -> Response:
        group, stream = body.get("logGroupName"), body.get("logStreamName")
        if not isinstance(group, str) or not isinstance(stream, str):
            return _invalid("logGroupName and logStreamName are required")
        try:
            page = self.store.get_log_events(
                group,
                stream,
                start_time=body.get("startTime"),
                end_time=body.get("endTime"),
                next_token=body.get("nextToken"),
                limit=int(body.get("limit") or 10000),
                start_from_head=bool(body.get("startFromHead", False)),
            )
        except LogStreamNotFoundError as exc:
            return error_response(400, "ResourceNotFoundException", str(exc))
        except (InvalidTokenError, ValueError) as exc:
            return _invalid(str(exc))
        return _ok(
            {
                "events": [
                    {"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion_time}
                    for e in page.events
                ],
                "nextForwardToken": page.next_forward_token,
                "nextBackwardToken": page.next_backward_token,
            }
        )

    def describe_log_streams(self, body: dict[str, Any]) -> Response:
        group = body.get("logGroupName")
        if not isinstance(group, str):
            return _invalid("logGroupName is required")
        streams = self.store.describe_log_streams(group, body.get("logStreamNamePrefix"))
        return _ok(
            {
                "logStreams": [
                    {
                        "logStreamName": info.name,
                        "creationTime": info.creation_time,
                        "firstEventTimestamp": info.first_event_timestamp,
                        "lastEventTimestamp": info.last_event_timestamp,
                        "lastIngestionTime": info.last_ingestion_time,
                        "storedBytes": info.stored_bytes,
                    }
                    for info in streams
                ]
            }
        )
