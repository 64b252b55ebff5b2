"""The one table from exception class to AWS error shape. Routes never build error JSON."""

from __future__ import annotations

import json
import logging
import uuid

from pydantic import ValidationError as PydanticValidationError
from starlette.responses import Response

from openbatch.domain.errors import BatchError, ClientError, ServerError

logger = logging.getLogger(__name__)

_STATUS: list[tuple[type[BaseException], int, str]] = [
    (ClientError, 400, "ClientException"),
    (ServerError, 500, "ServerException"),
    (BatchError, 500, "ServerException"),
]


def error_response(status: int, error_type: str, message: str, request_id: str | None = None) -> Response:
    rid = request_id or str(uuid.uuid4())
    return Response(
        json.dumps({"__type": error_type, "message": message}),
        status_code=status,
        media_type="application/json",
        headers={"x-amzn-RequestId": rid, "x-amzn-ErrorType": error_type},
    )


def client_error(message: str) -> Response:
    return error_response(400, "ClientException", message)


def response_for(exc: BaseException, operation: str) -> Response:
    if isinstance(exc, PydanticValidationError):
        return client_error(describe_validation_error(exc, operation))
    for cls, status, error_type in _STATUS:
        if isinstance(exc, cls):
            message = exc.message if isinstance(exc, BatchError) else str(exc)
            if status >= 500:
                logger.error("%s failed: %s", operation, message)
            return error_response(status, error_type, message)
    logger.exception("%s failed with an unexpected error", operation, exc_info=exc)
    return error_response(500, "ServerException", f"Internal server error while handling {operation}")


def describe_validation_error(exc: PydanticValidationError, operation: str) -> str:
    """Turn pydantic's report into one actionable sentence per problem, AWS style."""
    problems = []
    for error in exc.errors()[:5]:
        location = ".".join(str(part) for part in error["loc"]) or "request body"
        if error["type"] == "missing":
            problems.append(f"Missing required parameter in input: {location!r}")
        else:
            problems.append(f"Invalid value for parameter {location!r}: {error['msg']}")
    return f"{operation}: " + "; ".join(problems)
