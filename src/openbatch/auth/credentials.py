"""Job roles: the container credentials endpoint a job's SDK reads its role's credentials from.

A job whose definition names a ``jobRoleArn`` that the auth file has credentials
for gets ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` (on loopback, which boto3 insists
on for plain HTTP) and ``AWS_CONTAINER_AUTHORIZATION_TOKEN``, as containers on
AWS Batch do; boto3, the AWS CLI and the other SDKs pick them up unchanged.

Both the authorization token and the session token handed out with the role's
keys name one attempt (``<jobId>.<attempt>.<MAC>``) and are good only while that
attempt is STARTING or RUNNING in the engine: they need no table, so nothing is
left to revoke when an attempt ends (they stop working by themselves). The MAC
key is kept in the data directory, so a restarted server that still tracks an
attempt as running keeps accepting its tokens. Requests signed with a role's
keys must carry a live session token, so credentials copied out of a job stop
working when it ends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from openbatch.auth.config import AuthFile
from openbatch.domain.job import Job
from openbatch.domain.states import JobStatus

logger = logging.getLogger(__name__)

CREDENTIALS_PATH = "/auth/container-credentials"
FULL_URI_VARIABLE = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
TOKEN_VARIABLE = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
_LIVE = (JobStatus.STARTING, JobStatus.RUNNING)
_EXPIRATION = timedelta(hours=1)
"""What the endpoint advertises; SDKs fetch again before it passes, and get the same keys while the attempt lives."""
_AUTHORIZATION, _SESSION = "authorization", "session"


class LiveJobs(Protocol):
    """The engine's unfinished jobs (``JobEngine.jobs``)."""

    @property
    def jobs(self) -> Mapping[str, Job]: ...


@dataclass(frozen=True, slots=True)
class Grant:
    job_id: str
    attempt: int
    role_arn: str

    @property
    def session_name(self) -> str:
        return f"{self.job_id}-{self.attempt}"


def load_or_create_key(path: Path) -> bytes:
    """The MAC key for attempt tokens, created once, readable by the server's user only."""
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


class CredentialBroker:
    def __init__(self, auth_file: AuthFile, endpoint: str, key: bytes) -> None:
        self.auth_file = auth_file
        self.endpoint = endpoint
        self._key = key
        self._engine: LiveJobs | None = None

    def attach(self, engine: LiveJobs) -> None:
        self._engine = engine

    def launch_environment(self, job: Job, attempt: int) -> Mapping[str, str]:
        """Engine hook: the variables that give this attempt its role, or none."""
        role_arn = _role_of(job)
        if role_arn is None:
            return {}
        if self.auth_file.current().role(role_arn) is None:
            logger.warning(
                "job %s names jobRoleArn %s, which the auth file has no credentials for: it runs without any",
                job.id,
                role_arn,
            )
            return {}
        token = self._token(_AUTHORIZATION, job.id, attempt, role_arn)
        return {FULL_URI_VARIABLE: self.endpoint, TOKEN_VARIABLE: token}

    def _mac(self, purpose: str, job_id: str, attempt: int, role_arn: str) -> str:
        message = f"{purpose}\n{job_id}\n{attempt}\n{role_arn}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def _token(self, purpose: str, job_id: str, attempt: int, role_arn: str) -> str:
        return f"{job_id}.{attempt}.{self._mac(purpose, job_id, attempt, role_arn)}"

    def _grant(self, purpose: str, token: str) -> Grant | None:
        job_id, _, rest = token.partition(".")
        attempt_text, _, mac = rest.partition(".")
        if self._engine is None or not attempt_text.isdigit() or not mac:
            return None
        job = self._engine.jobs.get(job_id)
        if job is None or job.status not in _LIVE or job.attempt_number != int(attempt_text):
            return None
        role_arn = _role_of(job)
        if role_arn is None:
            return None
        expected = self._mac(purpose, job_id, int(attempt_text), role_arn)
        if not hmac.compare_digest(expected, mac):
            return None
        return Grant(job_id, int(attempt_text), role_arn)

    def session(self, session_token: str) -> Grant | None:
        """The live attempt a session token was handed to, or ``None``."""
        return self._grant(_SESSION, session_token)

    async def handle(self, request: Request) -> Response:
        """GET the attempt's credentials, in the ECS container credentials shape."""
        client = request.client.host if request.client else ""
        if not _is_loopback(client):
            return _refuse(403, "The container credentials endpoint answers on loopback only")
        token = request.headers.get("authorization", "")
        grant = self._grant(_AUTHORIZATION, token) if token else None
        if grant is None:
            return _refuse(401, "The authorization token is missing, invalid or belongs to an attempt that has ended")
        role = self.auth_file.current().role(grant.role_arn)
        if role is None:
            return _refuse(404, f"No credentials are configured for role {grant.role_arn}")
        expiration = datetime.now(UTC).replace(microsecond=0) + _EXPIRATION
        return JSONResponse(
            {
                "RoleArn": role.role_arn,
                "AccessKeyId": role.access_key_id,
                "SecretAccessKey": role.secret_access_key,
                "Token": self._token(_SESSION, grant.job_id, grant.attempt, grant.role_arn),
                "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )


def _role_of(job: Job) -> str | None:
    role_arn = job.spec.container.get("jobRoleArn")
    return role_arn if isinstance(role_arn, str) and role_arn else None


def _refuse(status: int, message: str) -> Response:
    return JSONResponse({"code": "AccessDenied", "message": message}, status_code=status)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
