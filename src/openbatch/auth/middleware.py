"""One ASGI middleware in front of every route: SigV4 authentication, then the IAM policy check.

Being in front of the router, it covers every route, including ones added later
(events, notifications, metrics, the native API, the console); only the paths in
``PUBLIC`` are exempt. What it lets through carries the principal in the ASGI
scope (``scope["openbatch.principal"]``).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from openbatch.api.asgi_body import BodyTooLarge, read_body, replay
from openbatch.api.errors import error_response as api_error
from openbatch.auth.actions import LatestRevision, Scope, requests_for
from openbatch.auth.config import AuthFile
from openbatch.auth.credentials import CREDENTIALS_PATH, CredentialBroker
from openbatch.auth.errors import (
    INVALID_TOKEN_MESSAGE,
    AuthError,
    Failure,
    Protocol,
    error_response,
    protocol_of,
)
from openbatch.auth.policy import Outcome, Policy
from openbatch.auth.sigv4 import HttpRequest, SignedRequest, check_time, parse, parse_query, verify
from openbatch.console import console_files
from openbatch.events.signing import CERT_FILE

logger = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

PUBLIC = {
    ("GET", "/health"),
    ("HEAD", "/health"),
    ("GET", "/health/cluster"),
    ("GET", CREDENTIALS_PATH),
    ("GET", f"/{CERT_FILE}"),
}
"""Health for load balancers (and a server's role among several); the credentials endpoint checks its
own per-attempt token; SNS receivers fetch the signing certificate unsigned, as they do from AWS."""
SNS_LINK_ACTIONS = ("ConfirmSubscription", "Unsubscribe")
"""The SubscribeURL and UnsubscribeURL in SNS messages are followed unsigned (the token or the
subscription ARN is the credential), as on AWS."""
CONSOLE_FILES = console_files()
"""The web console's static files (HTML, CSS, scripts), by exact path: the page is public, every call
it makes is signed."""
LOOPBACK_PUBLIC = {("GET", "/metrics")}
"""Prometheus cannot sign requests: metrics are open to scrapers on this host, signed from elsewhere."""
LOOPBACK_PUBLIC_PREFIXES = ("/ecs/v4/",)
"""The ECS task metadata endpoint jobs read unsigned (as containers do on their link-local address)."""
MAX_BODY_BYTES = 16 * 1024 * 1024
PRINCIPAL_KEY = "openbatch.principal"


@dataclass(frozen=True, slots=True)
class Principal:
    arn: str
    policy: Policy
    access_key_id: str


class SigV4Middleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        auth_file: AuthFile,
        broker: CredentialBroker,
        account: str,
        latest_revision: LatestRevision,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.auth_file = auth_file
        self.broker = broker
        self.account = account
        self.latest_revision = latest_revision
        self.clock = clock

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        websocket = scope["type"] == "websocket"
        method = "GET" if websocket else scope["method"]
        query = parse_query(scope.get("query_string", b"").decode("latin-1"))
        if not websocket and _is_public(scope, query):
            await self.app(scope, receive, send)
            return
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        header_map = dict(headers)
        protocol = protocol_of(scope["path"], header_map)
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1").split("?", 1)[0]
        body = b""
        try:
            # Everything that needs no body is checked before the body is read.
            request = HttpRequest(method, raw_path, query, headers, b"")
            signed = parse(request)
            principal = self._principal(signed)
            check_time(signed, self.clock())
            if not websocket:
                body = await read_body(receive, MAX_BODY_BYTES)
            request = HttpRequest(method, raw_path, query, headers, body)
            verify(signed, request, self._secret(signed))
            self._authorize(principal, protocol, method, scope["path"], header_map, query, body, signed)
        except AuthError as error:
            logger.info("refused %s %s: %s (%s)", method, scope["path"], error.failure.value[0], error.message[:200])
            if websocket:
                # Closing before accepting makes the server answer the handshake with HTTP 403.
                await send({"type": "websocket.close", "code": 1008})
            else:
                await error_response(error, protocol)(scope, receive, send)
            return
        except BodyTooLarge:
            await _too_large()(scope, receive, send)
            return
        if websocket:
            await self.app({**scope, PRINCIPAL_KEY: principal}, receive, send)
        else:
            await self.app({**scope, PRINCIPAL_KEY: principal}, replay(body, receive), send)

    def _principal(self, signed: SignedRequest) -> Principal:
        config = self.auth_file.current()
        key = config.key(signed.access_key_id)
        if key is not None:
            if signed.security_token is not None:
                # A long-term key never comes with a session token.
                raise AuthError(Failure.UNKNOWN_KEY, INVALID_TOKEN_MESSAGE)
            return Principal(f"arn:aws:iam::{self.account}:user/{key.user}", key.policy, key.access_key_id)
        role = config.role_by_key(signed.access_key_id)
        if role is None or signed.security_token is None:
            raise AuthError(Failure.UNKNOWN_KEY, INVALID_TOKEN_MESSAGE)
        grant = self.broker.session(signed.security_token)
        if grant is None or grant.role_arn != role.role_arn:
            raise AuthError(Failure.UNKNOWN_KEY, INVALID_TOKEN_MESSAGE)
        account = role.role_arn.split(":")[4]
        arn = f"arn:aws:sts::{account}:assumed-role/{role.role_name}/{grant.session_name}"
        return Principal(arn, role.policy, role.access_key_id)

    def _secret(self, signed: SignedRequest) -> str:
        config = self.auth_file.current()
        key = config.key(signed.access_key_id)
        if key is not None:
            return key.secret_access_key
        role = config.role_by_key(signed.access_key_id)
        if role is None:
            raise AuthError(Failure.UNKNOWN_KEY, INVALID_TOKEN_MESSAGE)
        return role.secret_access_key

    def _authorize(
        self,
        principal: Principal,
        protocol: Protocol,
        method: str,
        path: str,
        headers: dict[str, str],
        query: list[tuple[str, str]],
        body: bytes,
        signed: SignedRequest,
    ) -> None:
        scope = Scope(region=signed.region, account=self.account)
        for access in requests_for(
            protocol, method, path, headers, query, body, scope, signed.service, self.latest_revision
        ):
            decision = principal.policy.evaluate(access.action, access.resources)
            if decision.allowed:
                continue
            reason = (
                "with an explicit deny in an identity-based policy"
                if decision.outcome is Outcome.EXPLICIT_DENY
                else f"because no identity-based policy allows the {access.action} action"
            )
            raise AuthError(
                Failure.ACCESS_DENIED,
                f"User: {principal.arn} is not authorized to perform: {access.action} "
                f"on resource: {decision.resource} {reason}",
            )


def _is_public(scope: MutableMapping[str, Any], query: list[tuple[str, str]]) -> bool:
    route = (scope["method"], scope["path"])
    if route in PUBLIC:
        return True
    if route[0] in ("GET", "HEAD") and route[1] in CONSOLE_FILES:
        return True
    if route == ("GET", "/"):
        # Exactly one Action: with several, the route might act on another one than we checked.
        actions = [v for k, v in query if k == "Action"]
        return len(actions) == 1 and actions[0] in SNS_LINK_ACTIONS
    if route in LOOPBACK_PUBLIC or (route[0] == "GET" and route[1].startswith(LOOPBACK_PUBLIC_PREFIXES)):
        client = scope.get("client") or ("", 0)
        return _is_loopback(client[0])
    return False


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _too_large() -> Response:
    return api_error(413, "ClientException", f"The request body is larger than {MAX_BODY_BYTES} bytes")
