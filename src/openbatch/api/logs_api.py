"""A CloudWatch Logs-compatible read API (JSON 1.1, ``X-Amz-Target: Logs_20140328.*``) over the log store.

Point a CloudWatch Logs client at the server with
``AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`` (the variable boto3 and the AWS CLI read
for the ``logs`` service) to read job output with the tools users already
have: GetLogEvents, FilterLogEvents, DescribeLogStreams, DescribeLogGroups,
PutRetentionPolicy and DeleteRetentionPolicy.

``LogsApi.handle`` takes a Starlette request whose target is a
``Logs_20140328.<Operation>``; the router on ``POST /`` calls it.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from openbatch.api.errors import error_response
from openbatch.api.wire import MalformedBody, check_input, parse_body
from openbatch.domain.errors import ValidationError
from openbatch.logs.filter_pattern import FilterPattern, FilterPatternError
from openbatch.logs.store import (
    MAX_LIMIT,
    RETENTION_DAYS,
    EventBatch,
    InvalidTokenError,
    LogStore,
    LogStreamInfo,
    LogStreamNotFoundError,
)

_PREFIX = "Logs_20140328."
_MEDIA_TYPE = "application/x-amz-json-1.1"
_DESCRIBE_LIMIT = 50
"""DescribeLogStreams and DescribeLogGroups return at most 50 items per page."""


class _Invalid(Exception):
    """A request CloudWatch Logs rejects with InvalidParameterException."""


def _ok(payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), media_type=_MEDIA_TYPE)


def _invalid(message: str) -> Response:
    return error_response(400, "InvalidParameterException", message)


def _int(body: dict[str, Any], key: str, default: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"{key} must be an integer")
    return value


def _limit(body: dict[str, Any], maximum: int) -> int:
    limit = _int(body, "limit", maximum)
    assert limit is not None
    if not 1 <= limit <= maximum:
        raise _Invalid(f"limit must be between 1 and {maximum}")
    return limit


def _page_token(token: Any) -> int:
    """Position in a sorted listing, from a DescribeLogStreams/DescribeLogGroups token."""
    if token is None:
        return 0
    try:
        value = json.loads(base64.urlsafe_b64decode(str(token).encode()))
    except (ValueError, binascii.Error):
        raise _Invalid(f"The specified nextToken is not valid: {token}") from None
    if not isinstance(value, int) or value < 0:
        raise _Invalid(f"The specified nextToken is not valid: {token}")
    return value


def _make_page_token(position: int) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def _events_json(batches: list[EventBatch]) -> str:
    """The ``events`` array, built per batch with C-level joins: a 10,000-event page costs milliseconds."""
    parts = []
    for batch in batches:
        head = f'{{"timestamp":{batch.timestamp},"message":'
        tail = f',"ingestionTime":{batch.ingestion_time}}}'
        parts.append(head + (tail + "," + head).join(map(encode_basestring, batch.messages)) + tail)
    return "[" + ",".join(parts) + "]"


class LogsApi:
    def __init__(self, store: LogStore, *, region: str = "us-east-1", account_id: str = "123456789012") -> None:
        self.store = store
        self.region = region
        self.account_id = account_id
        self._operations: dict[str, Callable[[dict[str, Any]], Response]] = {
            "GetLogEvents": self.get_log_events,
            "FilterLogEvents": self.filter_log_events,
            "DescribeLogStreams": self.describe_log_streams,
            "DescribeLogGroups": self.describe_log_groups,
            "PutRetentionPolicy": self.put_retention_policy,
            "DeleteRetentionPolicy": self.delete_retention_policy,
        }

    async def handle(self, request: Request) -> Response:
        target = request.headers.get("x-amz-target", "")
        if not target.startswith(_PREFIX):
            return error_response(400, "UnknownOperationException", f"Unknown operation {target!r}")
        operation = target[len(_PREFIX) :]
        handler = self._operations.get(operation)
        if handler is None:
            return error_response(400, "UnknownOperationException", f"Operation {operation!r} is not supported")
        try:
            body = parse_body(await request.body())
            # CloudWatch Logs' own model: member types, lengths and ranges (an empty group name too).
            check_input("logs", operation, body)
        except MalformedBody as exc:
            return error_response(400, "SerializationException", exc.message)
        except ValidationError as exc:
            return _invalid(exc.message)
        # File reads (and for large pages, decompression) stay off the event loop.
        return await run_in_threadpool(self._call, handler, body)

    def _call(self, handler: Callable[[dict[str, Any]], Response], body: dict[str, Any]) -> Response:
        try:
            return handler(body)
        except LogStreamNotFoundError as exc:
            return error_response(400, "ResourceNotFoundException", str(exc))
        except (_Invalid, InvalidTokenError, FilterPatternError) as exc:
            return _invalid(str(exc))
        except (TypeError, ValueError) as exc:
            # A member of the wrong type (a number where a name belongs, a non-list of streams...).
            return _invalid(f"Invalid request: {exc}")

    # -- names and ARNs ------------------------------------------------------------------

    def _group(self, body: dict[str, Any]) -> str:
        name = body.get("logGroupName")
        identifier = body.get("logGroupIdentifier")
        if name is not None and identifier is not None:
            raise _Invalid("Specify either logGroupName or logGroupIdentifier, not both")
        if identifier is not None:
            name = str(identifier)
            if name.startswith("arn:"):
                # arn:aws:logs:<region>:<account>:log-group:<name>[:*]
                _, _, rest = name.partition(":log-group:")
                name = rest[:-2] if rest.endswith(":*") else rest
        if not isinstance(name, str) or not name:
            raise _Invalid("logGroupName or logGroupIdentifier is required")
        if len(name) > 512 or "\x00" in name:
            raise _Invalid("logGroupName must be 1 to 512 characters")
        return name

    def _group_arn(self, group: str) -> str:
        return f"arn:aws:logs:{self.region}:{self.account_id}:log-group:{group}"

    # -- operations ----------------------------------------------------------------------

    def get_log_events(self, body: dict[str, Any]) -> Response:
        group = self._group(body)
        stream = body.get("logStreamName")
        if not isinstance(stream, str) or not stream or len(stream) > 512 or "\x00" in stream:
            raise _Invalid("logStreamName is required (1 to 512 characters)")
        token = body.get("nextToken")
        page = self.store.get_log_events(
            group,
            stream,
            start_time=_int(body, "startTime"),
            end_time=_int(body, "endTime"),
            next_token=str(token) if token is not None else None,
            limit=_limit(body, MAX_LIMIT),
            start_from_head=body.get("startFromHead") is True,
        )
        forward, backward = json.dumps(page.next_forward_token), json.dumps(page.next_backward_token)
        text = f'{{"events":{_events_json(page.batches)},"nextForwardToken":{forward},"nextBackwardToken":{backward}}}'
        return Response(text, media_type=_MEDIA_TYPE)

    def filter_log_events(self, body: dict[str, Any]) -> Response:
        group = self._group(body)
        names = body.get("logStreamNames")
        prefix = body.get("logStreamNamePrefix")
        if names is not None and (
            not isinstance(names, list) or not 1 <= len(names) <= 100 or not all(isinstance(n, str) for n in names)
        ):
            raise _Invalid("logStreamNames must be a list of 1 to 100 stream names")
        if prefix is not None and not isinstance(prefix, str):
            raise _Invalid("logStreamNamePrefix must be a string")
        if names is not None and prefix is not None:
            raise _Invalid("logStreamNames and logStreamNamePrefix cannot both be specified")
        pattern_text = body.get("filterPattern")
        pattern = FilterPattern.parse(pattern_text) if isinstance(pattern_text, str) and pattern_text.strip() else None
        token = body.get("nextToken")
        # ``interleaved`` is accepted and ignored: results are always merged by time, as on AWS since 2019.
        page = self.store.filter_log_events(
            group,
            stream_names=[str(n) for n in names] if isinstance(names, list) else None,
            stream_prefix=prefix if isinstance(prefix, str) else None,
            pattern=pattern,
            start_time=_int(body, "startTime"),
            end_time=_int(body, "endTime"),
            next_token=str(token) if token is not None else None,
            limit=_limit(body, MAX_LIMIT),
        )
        parts = []
        for batch in page.batches:
            stream_id = zlib.crc32(batch.stream.encode()) & 0xFFFFFFFF
            head = f'{{"logStreamName":{json.dumps(batch.stream)},"timestamp":{batch.timestamp},"message":'
            for i, message in enumerate(batch.messages):
                # Unique within a response and stable for an event: stream, time, position.
                event_id = f"{stream_id:010d}{batch.timestamp:020d}{batch.offset + i:026d}"
                parts.append(
                    head
                    + encode_basestring(message)
                    + f',"ingestionTime":{batch.ingestion_time},"eventId":"{event_id}"}}'
                )
        searched = [{"logStreamName": n, "searchedCompletely": page.next_token is None} for n in page.searched_streams]
        more = f',"nextToken":{json.dumps(page.next_token)}' if page.next_token else ""
        text = f'{{"events":[{",".join(parts)}],"searchedLogStreams":{json.dumps(searched)}{more}}}'
        return Response(text, media_type=_MEDIA_TYPE)

    def describe_log_streams(self, body: dict[str, Any]) -> Response:
        group = self._group(body)
        prefix = body.get("logStreamNamePrefix")
        order = body.get("orderBy", "LogStreamName")
        if order not in ("LogStreamName", "LastEventTime"):
            raise _Invalid("orderBy must be LogStreamName or LastEventTime")
        if order == "LastEventTime" and prefix:
            raise _Invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
        descending = body.get("descending") is True
        limit = _limit(body, _DESCRIBE_LIMIT)
        start = _page_token(body.get("nextToken"))
        infos: list[LogStreamInfo]
        if order == "LogStreamName":
            names = self.store.list_streams(group, prefix if isinstance(prefix, str) else None)
            if descending:
                names.reverse()
            page_names = names[start : start + limit]
            total = len(names)
            infos = [info for name in page_names if (info := self.store.stream_info(group, name)) is not None]
        else:
            if not self.store.group_exists(group):
                raise LogStreamNotFoundError(f"The specified log group does not exist: {group}")
            every = self.store.describe_log_streams(group)
            # Streams without events have no event time: they sort as older than any with events.
            every.sort(
                key=lambda i: (i.last_event_timestamp is not None, i.last_event_timestamp or i.creation_time, i.name),
                reverse=descending,
            )
            infos = every[start : start + limit]
            total = len(every)
        arn = self._group_arn(group)
        payload: dict[str, Any] = {"logStreams": [_stream_json(info, arn) for info in infos]}
        if start + limit < total:
            payload["nextToken"] = _make_page_token(start + limit)
        return _ok(payload)

    def describe_log_groups(self, body: dict[str, Any]) -> Response:
        prefix = body.get("logGroupNamePrefix")
        pattern = body.get("logGroupNamePattern")
        if prefix is not None and pattern is not None:
            raise _Invalid("logGroupNamePrefix and logGroupNamePattern are mutually exclusive")
        limit = _limit(body, _DESCRIBE_LIMIT)
        start = _page_token(body.get("nextToken"))
        groups = self.store.describe_log_groups(prefix if isinstance(prefix, str) else None)
        if isinstance(pattern, str):
            groups = [g for g in groups if pattern in g.name]
        page = groups[start : start + limit]
        items = []
        for g in page:
            item: dict[str, Any] = {
                "logGroupName": g.name,
                "creationTime": g.creation_time,
                "metricFilterCount": 0,
                "arn": self._group_arn(g.name) + ":*",
                "logGroupArn": self._group_arn(g.name),
                "storedBytes": g.stored_bytes,
                "logGroupClass": "STANDARD",
            }
            if g.retention_in_days is not None:
                item["retentionInDays"] = g.retention_in_days
            items.append(item)
        payload: dict[str, Any] = {"logGroups": items}
        if start + limit < len(groups):
            payload["nextToken"] = _make_page_token(start + limit)
        return _ok(payload)

    def put_retention_policy(self, body: dict[str, Any]) -> Response:
        group = self._group(body)
        days = _int(body, "retentionInDays")
        if days not in RETENTION_DAYS:
            raise _Invalid(f"Invalid retentionInDays {days}: possible values are {', '.join(map(str, RETENTION_DAYS))}")
        assert days is not None
        self.store.put_retention_policy(group, days)
        return _ok({})

    def delete_retention_policy(self, body: dict[str, Any]) -> Response:
        self.store.delete_retention_policy(self._group(body))
        return _ok({})


def _stream_json(info: LogStreamInfo, group_arn: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "logStreamName": info.name,
        "creationTime": info.creation_time,
        "arn": f"{group_arn}:log-stream:{info.name}",
        "storedBytes": info.stored_bytes,
    }
    if info.first_event_timestamp is not None:
        item["firstEventTimestamp"] = info.first_event_timestamp
    if info.last_event_timestamp is not None:
        item["lastEventTimestamp"] = info.last_event_timestamp
    if info.last_ingestion_time is not None:
        item["lastIngestionTime"] = info.last_ingestion_time
    return item
