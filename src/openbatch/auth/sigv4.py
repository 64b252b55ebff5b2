"""AWS Signature Version 4 verification, header and presigned-query forms.

The canonical request is built by botocore's own ``SigV4Auth`` (path
normalisation and encoding, query and header canonicalisation, string to sign,
key derivation), so what we verify is byte for byte what botocore signs. Only
the choice of headers differs: a verifier must use exactly the headers the
client listed in ``SignedHeaders``.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from botocore.auth import EMPTY_SHA256_HASH, UNSIGNED_PAYLOAD, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from openbatch.auth.errors import (
    MISSING_TOKEN_MESSAGE,
    SIGNATURE_MISMATCH_MESSAGE,
    AuthError,
    Failure,
)

ALGORITHM = "AWS4-HMAC-SHA256"
WINDOW_S = 15 * 60
"""AWS accepts a request signed up to 15 minutes before or after its own clock."""
MAX_PRESIGN_EXPIRES_S = 7 * 24 * 3600
_TIMESTAMP = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What the client claims: who signed, for which scope, at what time, over which headers."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: str
    security_token: str | None
    presigned: bool
    expires_s: int | None = None


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    raw_path: str
    """The path exactly as sent (still percent-encoded)."""
    query: Sequence[tuple[str, str]]
    """Query parameters, percent-decoded, in order."""
    headers: Sequence[tuple[str, str]]
    """Header names lower-cased; repeated headers appear once per value."""
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def query_value(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None


def parse_query(query_string: str) -> list[tuple[str, str]]:
    pairs = []
    for part in query_string.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        # '+' stays '+': SigV4 clients encode spaces as %20, and botocore re-encodes '+' as %2B.
        pairs.append((unquote(key), unquote(value)))
    return pairs


def parse(request: HttpRequest) -> SignedRequest:
    """Read the signature's parameters from the Authorization header or the presigned query string."""
    authorization = request.header("authorization")
    if authorization is None and request.query_value("X-Amz-Algorithm") is not None:
        return _parse_presigned(request)
    if authorization is None:
        if request.query_value("X-Amz-Signature") or request.query_value("X-Amz-Credential"):
            raise AuthError(Failure.INCOMPLETE, "AWS query-string parameters must include 'X-Amz-Algorithm'.")
        raise AuthError(Failure.MISSING, MISSING_TOKEN_MESSAGE)
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise AuthError(
            Failure.INCOMPLETE,
            f"Unsupported authorization type: {algorithm[:32]!r}; only {ALGORITHM} (Signature Version 4) is accepted.",
        )
    params: dict[str, str] = {}
    for part in rest.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise AuthError(
                Failure.INCOMPLETE,
                f"'{part}' not a valid key=value pair (missing equal-sign) in Authorization header: '{authorization}'.",
            )
        params[key] = value
    problems = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not params.get(name)
    ]
    amz_date = request.header("x-amz-date")
    date_header = request.header("date")
    if amz_date is None and date_header is None:
        problems.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if problems:
        raise AuthError(Failure.INCOMPLETE, " ".join(problems) + f" Authorization={authorization}")
    timestamp = _timestamp(amz_date, date_header)
    key_id, date, region, service = _credential(params["Credential"])
    return SignedRequest(
        access_key_id=key_id,
        date=date,
        region=region,
        service=service,
        signed_headers=_signed_headers(params["SignedHeaders"]),
        signature=params["Signature"],
        timestamp=timestamp,
        security_token=request.header("x-amz-security-token"),
        presigned=False,
    )


def _parse_presigned(request: HttpRequest) -> SignedRequest:
    names = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders", "X-Amz-Date")
    missing = [name for name in names if not request.query_value(name)]
    if missing:
        raise AuthError(
            Failure.INCOMPLETE,
            "AWS query-string parameters must include " + ", ".join(f"'{name}'" for name in missing) + ".",
        )
    if request.query_value("X-Amz-Algorithm") != ALGORITHM:
        raise AuthError(Failure.INCOMPLETE, f"X-Amz-Algorithm only supports '{ALGORITHM}'.")
    expires_raw = request.query_value("X-Amz-Expires") or "900"
    try:
        expires = int(expires_raw)
    except ValueError:
        raise AuthError(Failure.INCOMPLETE, "X-Amz-Expires should be a number.") from None
    if not 1 <= expires <= MAX_PRESIGN_EXPIRES_S:
        raise AuthError(
            Failure.INCOMPLETE, f"X-Amz-Expires must be between 1 and {MAX_PRESIGN_EXPIRES_S} seconds; got {expires}."
        )
    key_id, date, region, service = _credential(request.query_value("X-Amz-Credential") or "")
    return SignedRequest(
        access_key_id=key_id,
        date=date,
        region=region,
        service=service,
        signed_headers=_signed_headers(request.query_value("X-Amz-SignedHeaders") or ""),
        signature=request.query_value("X-Amz-Signature") or "",
        timestamp=_timestamp(request.query_value("X-Amz-Date"), None),
        security_token=request.query_value("X-Amz-Security-Token"),
        presigned=True,
        expires_s=expires,
    )


def _credential(value: str) -> tuple[str, str, str, str]:
    parts = value.split("/")
    if len(parts) != 5:
        raise AuthError(
            Failure.INCOMPLETE,
            f"Credential should be scoped to a valid region, service and terminator: "
            f"'<key>/<yyyymmdd>/<region>/<service>/aws4_request', not '{value}'.",
        )
    key_id, date, region, service, terminator = parts
    if terminator != "aws4_request":
        raise AuthError(
            Failure.INCOMPLETE,
            f"Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'.",
        )
    if not key_id or not region or not service or len(date) != 8 or not date.isdigit():
        raise AuthError(Failure.INCOMPLETE, f"Credential '{value}' is not a valid SigV4 credential scope.")
    return key_id, date, region, service


def _signed_headers(value: str) -> tuple[str, ...]:
    names = tuple(name.strip().lower() for name in value.split(";") if name.strip())
    if "host" not in names:
        raise AuthError(Failure.INCOMPLETE, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    return names


def _timestamp(amz_date: str | None, date_header: str | None) -> str:
    if amz_date is not None:
        if _epoch_or_none(amz_date) is None:
            raise AuthError(
                Failure.INCOMPLETE,
                f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601",
            )
        return amz_date
    try:
        parsed = parsedate_to_datetime(date_header or "")
    except (TypeError, ValueError):
        raise AuthError(Failure.INCOMPLETE, f"Date header '{date_header}' is not an HTTP date.") from None
    return parsed.astimezone(UTC).strftime(_TIMESTAMP)


_BASIC_FORMAT = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")


def _epoch_or_none(timestamp: str) -> int | None:
    """``YYYYMMDDTHHMMSSZ`` to epoch seconds (a regex: strptime costs more than the rest of a check)."""
    match = _BASIC_FORMAT.fullmatch(timestamp)
    if match is None:
        return None
    year, month, day, hour, minute, second = map(int, match.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


def _epoch(timestamp: str) -> int:
    epoch = _epoch_or_none(timestamp)
    assert epoch is not None, "timestamps are validated when parsed"
    return epoch


def _format(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime(_TIMESTAMP)


def check_time(signed: SignedRequest, now: float) -> None:
    """Header signatures are good for 15 minutes either side of our clock; presigned ones until they expire."""
    if signed.date != signed.timestamp[:8]:
        raise AuthError(
            Failure.BAD_SIGNATURE,
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{signed.date}' != '{signed.timestamp[:8]}', from '{signed.timestamp}'.",
        )
    signed_at = _epoch(signed.timestamp)
    if signed.presigned:
        expires_at = signed_at + (signed.expires_s or 0)
        if now > expires_at:
            raise AuthError(
                Failure.BAD_SIGNATURE,
                f"Signature expired: {_format(expires_at)} is now earlier than {_format(now)} "
                f"({signed.timestamp} + {signed.expires_s} s).",
            )
    elif signed_at < now - WINDOW_S:
        raise AuthError(
            Failure.BAD_SIGNATURE,
            f"Signature expired: {signed.timestamp} is now earlier than {_format(now - WINDOW_S)} "
            f"({_format(now)} - 15 min.)",
        )
    if signed_at > now + WINDOW_S:
        raise AuthError(
            Failure.BAD_SIGNATURE,
            f"Signature not yet current: {signed.timestamp} is still later than {_format(now + WINDOW_S)} "
            f"({_format(now)} + 15 min.)",
        )


class _SignedHeaders(dict[str, list[str]]):
    """The headers the client signed, with the one method botocore's canonicalisation reads
    (``get_all``); much cheaper than building an ``HTTPHeaders`` message per request."""

    def get_all(self, name: str) -> list[str]:
        return self[name]


class _Canonicalizer(SigV4Auth):
    """botocore's signer, told which headers the client signed instead of choosing them itself."""

    def __init__(self, signed: SignedRequest, secret: str, headers: _SignedHeaders) -> None:
        super().__init__(Credentials(signed.access_key_id, secret), signed.service, signed.region)
        self._headers = headers
        self._key_scope = (secret, signed.date, signed.region, signed.service)

    def headers_to_sign(self, request: Any) -> Any:
        return self._headers

    def signature(self, string_to_sign: str, request: Any) -> str:
        key = _signing_key(*self._key_scope)
        return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


@lru_cache(maxsize=1024)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The derived key changes once a day per scope: derive it once (botocore derives it per call)."""
    k_date = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    k_region = hmac.new(k_date, region.encode(), hashlib.sha256).digest()
    k_service = hmac.new(k_region, service.encode(), hashlib.sha256).digest()
    return hmac.new(k_service, b"aws4_request", hashlib.sha256).digest()


def verify(signed: SignedRequest, request: HttpRequest, secret: str) -> None:
    """Recompute the signature with ``secret``; raise ``AuthError`` when it differs."""
    present: dict[str, list[str]] = {}
    for name, value in request.headers:
        present.setdefault(name, []).append(value)
    chosen = _SignedHeaders()
    for name in signed.signed_headers:
        if name not in present:
            raise AuthError(
                Failure.INCOMPLETE, f"'{name}' is named as a SignedHeader, but it does not exist in the HTTP request."
            )
        chosen[name] = present[name]
    query = [(k, v) for k, v in request.query if not (signed.presigned and k == "X-Amz-Signature")]
    signer = _Canonicalizer(signed, secret, chosen)
    for payload in _payload_hashes(signed, request):
        aws_request = AWSRequest(method=request.method, url=f"http://host{request.raw_path}")
        # A list, not the mapping the stubs name: repeated keys (tagKeys=a&tagKeys=b) must all be signed.
        loose: Any = aws_request
        loose.params = query
        aws_request.context["timestamp"] = signed.timestamp
        # The payload hash goes in through the header botocore's canonical_request reads first.
        aws_request.headers["X-Amz-Content-SHA256"] = payload
        canonical = signer.canonical_request(aws_request)
        expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
        if hmac.compare_digest(expected, signed.signature):
            return
    raise AuthError(Failure.BAD_SIGNATURE, SIGNATURE_MISMATCH_MESSAGE)


def _payload_hashes(signed: SignedRequest, request: HttpRequest) -> tuple[str, ...]:
    """The payload hashes the signature may have been computed over."""
    actual = hashlib.sha256(request.body).hexdigest() if request.body else EMPTY_SHA256_HASH
    declared = request.header("x-amz-content-sha256")
    if declared is None:
        # botocore presigns with the body's hash, S3-style presigning with UNSIGNED-PAYLOAD;
        # a presigned request has no body for either to matter.
        return (actual, UNSIGNED_PAYLOAD) if signed.presigned and not request.body else (actual,)
    if declared == UNSIGNED_PAYLOAD:
        if request.body:
            # Only S3 lets a body go unsigned; for these APIs the body is what is being authorised.
            raise AuthError(
                Failure.BAD_SIGNATURE,
                "x-amz-content-sha256 UNSIGNED-PAYLOAD is only accepted for requests without a body.",
            )
        return (declared,)
    if not hmac.compare_digest(declared.lower(), actual):
        raise AuthError(
            Failure.BAD_SIGNATURE, "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    return (declared,)
