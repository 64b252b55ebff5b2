"""SigV4 verification of requests signed by botocore's own signers (header and presigned forms)."""

from __future__ import annotations

import calendar
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from openbatch.auth.errors import AuthError, Failure
from openbatch.auth.sigv4 import HttpRequest, check_time, parse, parse_query, verify

KEY, SECRET = "AKIAEXAMPLE00001", "secret/with+chars"
URL = "http://127.0.0.1:8080"


def to_http(request: AWSRequest, body: bytes = b"") -> HttpRequest:
    """The request as the server receives it (the client's HTTP library adds Host)."""
    parts = urlsplit(str(request.url))
    headers = [(k.lower(), str(v)) for k, v in request.headers.items()]
    headers.append(("host", str(parts.netloc)))
    return HttpRequest(str(request.method), str(parts.path), parse_query(str(parts.query)), headers, body)


def signed(
    method: str = "POST", path: str = "/v1/describejobs", body: bytes = b'{"jobs":["a"]}', token: str | None = None
) -> HttpRequest:
    request = AWSRequest(method=method, url=URL + path, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(KEY, SECRET, token), "batch", "eu-west-1").add_auth(request)
    return to_http(request, body)


def signed_at(timestamp: str) -> HttpRequest:
    """Signed with botocore's signer at a chosen time (its own steps, a fixed clock)."""
    body = b"{}"
    request = AWSRequest(method="POST", url=URL + "/v1/describejobqueues", data=body)
    # The private steps of add_auth (absent from the stubs), so the clock can be chosen.
    signer: Any = SigV4Auth(Credentials(KEY, SECRET), "batch", "us-east-1")
    request.context["timestamp"] = timestamp
    signer._modify_request_before_signing(request)
    signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    signer._inject_signature_to_request(request, signature)
    return to_http(request, body)


def accept(request: HttpRequest, secret: str = SECRET) -> None:
    claims = parse(request)
    check_time(claims, time.time())
    verify(claims, request, secret)


def failure(request: HttpRequest, secret: str = SECRET) -> AuthError:
    with pytest.raises(AuthError) as info:
        accept(request, secret)
    return info.value


def test_header_signature_round_trip() -> None:
    request = signed()
    claims = parse(request)
    assert (claims.access_key_id, claims.region, claims.service) == (KEY, "eu-west-1", "batch")
    accept(request)
    assert failure(request, "other").failure is Failure.BAD_SIGNATURE


def test_encoded_path_and_repeated_query_keys() -> None:
    path = "/v1/tags/arn%3Aaws%3Abatch%3Aus-east-1%3A123456789012%3Ajob%2Fx?tagKeys=b%20c&tagKeys=a&z=%2B"
    accept(signed("DELETE", path, b""))


def test_tampered_body_header_or_path_is_refused() -> None:
    request = signed()
    tampered = HttpRequest(request.method, request.raw_path, request.query, request.headers, b'{"jobs":["b"]}')
    assert failure(tampered).failure is Failure.BAD_SIGNATURE
    headers = [(k, "text/plain" if k == "content-type" else v) for k, v in request.headers]
    assert failure(HttpRequest("POST", request.raw_path, [], headers, request.body)).failure is Failure.BAD_SIGNATURE
    moved = HttpRequest("POST", "/v1/canceljob", [], request.headers, request.body)
    assert failure(moved).failure is Failure.BAD_SIGNATURE


def test_declared_payload_hash_must_match_the_body() -> None:
    request = signed()
    headers = [*request.headers, ("x-amz-content-sha256", "0" * 64)]
    error = failure(HttpRequest("POST", request.raw_path, [], headers, request.body))
    assert "x-amz-content-sha256" in error.message


def test_unsigned_payload_only_without_a_body() -> None:
    request = AWSRequest(method="GET", url=URL + "/v1/tags/x")
    request.context["payload_signing_enabled"] = False
    SigV4Auth(Credentials(KEY, SECRET), "batch", "us-east-1").add_auth(request)
    http = to_http(request)
    assert http.header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD"
    accept(http)
    with_body = HttpRequest("GET", http.raw_path, [], http.headers, b"x")
    assert "UNSIGNED-PAYLOAD" in failure(with_body).message


def test_expired_and_future_signatures() -> None:
    old = failure(signed_at("20010101T000000Z"))
    assert old.failure is Failure.BAD_SIGNATURE
    assert old.message.startswith("Signature expired: 20010101T000000Z is now earlier than ")
    assert old.message.endswith(" - 15 min.)")
    future = failure(signed_at("20991231T000000Z"))
    assert future.message.startswith("Signature not yet current: 20991231T000000Z is still later than ")
    recent = datetime.fromtimestamp(time.time() - 600, UTC).strftime("%Y%m%dT%H%M%SZ")
    accept(signed_at(recent))


def test_presigned_url() -> None:
    request = AWSRequest(method="GET", url=URL + "/v1/describejobqueues?maxResults=1")
    SigV4QueryAuth(Credentials(KEY, SECRET, "session"), "batch", "us-east-1", expires=60).add_auth(request)
    http = to_http(request)
    claims = parse(http)
    assert claims.presigned and claims.security_token == "session" and claims.expires_s == 60
    accept(http)
    assert failure(http, "other").failure is Failure.BAD_SIGNATURE
    changed = [(k, "2" if k == "maxResults" else v) for k, v in http.query]
    assert failure(HttpRequest("GET", http.raw_path, changed, http.headers, b"")).failure is Failure.BAD_SIGNATURE
    # Past its expiry the URL is refused, however recent its signing date.
    signed_epoch = calendar.timegm(datetime.strptime(claims.timestamp, "%Y%m%dT%H%M%SZ").timetuple())
    with pytest.raises(AuthError, match="Signature expired"):
        check_time(claims, signed_epoch + 61)


@pytest.mark.parametrize(
    ("authorization", "failure_kind", "fragment"),
    [
        (None, Failure.MISSING, "Missing Authentication Token"),
        ("AWS4-HMAC-SHA256 SignedHeaders=host", Failure.INCOMPLETE, "requires 'Credential' parameter"),
        ("AWS AKID:signature", Failure.INCOMPLETE, "Unsupported authorization type"),
        ("AWS4-HMAC-SHA256 Credential", Failure.INCOMPLETE, "missing equal-sign"),
        (
            "AWS4-HMAC-SHA256 Credential=k/20260101/us-east-1/batch/aws4_request, SignedHeaders=date, Signature=0",
            Failure.INCOMPLETE,
            "'Host' or ':authority' must be a 'SignedHeader'",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=k/2026/us-east-1/batch/aws4_request, SignedHeaders=host, Signature=0",
            Failure.INCOMPLETE,
            "not a valid SigV4 credential scope",
        ),
    ],
)
def test_malformed_authorization(authorization: str | None, failure_kind: Failure, fragment: str) -> None:
    headers = [("host", "h"), ("x-amz-date", "20260101T000000Z")]
    if authorization is not None:
        headers.append(("authorization", authorization))
    with pytest.raises(AuthError) as info:
        parse(HttpRequest("POST", "/v1/describejobs", [], headers, b""))
    assert info.value.failure is failure_kind
    assert fragment in info.value.message


def test_signed_header_missing_from_request() -> None:
    request = signed()
    without = [(k, v) for k, v in request.headers if k != "content-type"]
    error = failure(HttpRequest("POST", request.raw_path, [], without, request.body))
    assert error.message == "'content-type' is named as a SignedHeader, but it does not exist in the HTTP request."


def test_scope_date_must_match_request_date() -> None:
    request = signed()
    headers = list(request.headers)
    auth = dict(headers)["authorization"]
    day = auth.split("Credential=")[1].split("/")[1]
    other_day = "20000101" if day != "20000101" else "20000102"
    headers = [(k, v.replace(f"/{day}/", f"/{other_day}/") if k == "authorization" else v) for k, v in headers]
    with pytest.raises(AuthError, match="Date in Credential scope does not match"):
        accept(HttpRequest("POST", request.raw_path, [], headers, request.body))
