"""Request authentication seam.

Today every request is accepted; the caller's region is taken from the SigV4
credential scope so ARNs match what the client expects. A verifying
authenticator (SigV4 with configured secrets) plugs in here later.
"""

from __future__ import annotations

import re
from typing import Protocol

from openbatch.service.context import Caller

_SCOPE = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([a-z0-9-]{1,32})/([^/]+)/aws4_request")


class Authenticator(Protocol):
    def authenticate(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Caller:
        """Return the caller or raise ``openbatch.domain.errors.ClientError``."""
        ...


class ScopeAuthenticator:
    """Accepts every request; reads the region from the Authorization header's scope."""

    def __init__(self, default: Caller) -> None:
        self.default = default
        self._callers: dict[str, Caller] = {}

    def authenticate(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Caller:
        auth = headers.get("authorization")
        if not auth:
            return self.default
        match = _SCOPE.search(auth)
        if match is None:
            return self.default
        region = match.group(3)
        caller = self._callers.get(region)
        if caller is None:
            caller = self._callers.setdefault(region, Caller(region=region, account=self.default.account))
        return caller
