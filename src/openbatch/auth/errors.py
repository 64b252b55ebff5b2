"""Authentication and authorization failures, rendered in the error shape of the protocol that was called.

The same failure has different codes per AWS protocol: JSON protocols (Batch's
REST-JSON, CloudWatch Logs' and EventBridge's JSON 1.1) answer
``UnrecognizedClientException``/``InvalidSignatureException``; query protocols
(SNS, CloudWatch metrics) answer ``InvalidClientTokenId``/``SignatureDoesNotMatch``
in an XML ``ErrorResponse``.
"""

from __future__ import annotations

import json
import uuid
from enum import Enum
from xml.sax.saxutils import escape

from starlette.responses import Response


class Failure(Enum):
    # (JSON protocol code, query protocol code)
    MISSING = ("MissingAuthenticationTokenException", "MissingAuthenticationToken")
    INCOMPLETE = ("IncompleteSignatureException", "IncompleteSignature")
    UNKNOWN_KEY = ("UnrecognizedClientException", "InvalidClientTokenId")
    BAD_SIGNATURE = ("InvalidSignatureException", "SignatureDoesNotMatch")
    ACCESS_DENIED = ("AccessDeniedException", "AccessDenied")


class AuthError(Exception):
    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message


MISSING_TOKEN_MESSAGE = "Missing Authentication Token"
INVALID_TOKEN_MESSAGE = "The security token included in the request is invalid."
SIGNATURE_MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)


class Protocol(Enum):
    REST_JSON = "rest-json"
    JSON = "json"
    QUERY = "query"


def protocol_of(path: str, headers: dict[str, str]) -> Protocol:
    if "/v1/" in path:
        return Protocol.REST_JSON
    if "x-amz-target" in headers:
        return Protocol.JSON
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return Protocol.QUERY
    return Protocol.REST_JSON


def error_response(error: AuthError, protocol: Protocol) -> Response:
    request_id = str(uuid.uuid4())
    json_code, query_code = error.failure.value
    # CloudWatch Logs answers AccessDenied with HTTP 400; the other failures are 403 everywhere.
    status = 400 if error.failure is Failure.ACCESS_DENIED and protocol is Protocol.JSON else 403
    if protocol is Protocol.QUERY:
        body = (
            "<ErrorResponse><Error><Type>Sender</Type>"
            f"<Code>{query_code}</Code><Message>{escape(error.message)}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return Response(body, status_code=status, media_type="text/xml", headers={"x-amzn-RequestId": request_id})
    media_type = "application/x-amz-json-1.1" if protocol is Protocol.JSON else "application/json"
    return Response(
        json.dumps({"__type": json_code, "message": error.message}),
        status_code=status,
        media_type=media_type,
        headers={"x-amzn-RequestId": request_id, "x-amzn-ErrorType": json_code},
    )
