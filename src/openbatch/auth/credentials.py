"""Job roles: the container credentials endpoint a job's SDK reads its role's credentials from.

A job whose definition names a ``jobRoleArn`` that the auth file has credentials
for gets ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` (on loopback, which boto3 insists
on for plain HTTP) and ``AWS_CONTAINER_AUTHORIZATION_TOKEN``, as containers on
AWS Batch do; boto3, the AWS CLI and the other SDKs pick them up unchanged. The
token belongs to one attempt and is revoked when that attempt ends, together
with the session token handed out with the role's keys: requests signed with the
role's keys must carry a live session token, so credentials copied out of a job
stop working when it ends.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


class StatusChangeLike(Protocol):
    @property
    def job_id(self) -> str: ...

    @property
    def job(self) -> Job: ...


@dataclass(frozen=True, slots=True)
class Grant:
    job_id: str
    attempt: int
    role_arn: str
    authorization_token: str
    session_token: str

    @property
    def session_name(self) -> str:
        return f"{self.job_id}-{self.attempt}"

    def __repr__(self) -> str:
        return f"Grant({self.job_id!r}, attempt={self.attempt}, role={self.role_arn!r})"


class CredentialBroker:
    def __init__(self, auth_file: AuthFile, endpoint: str) -> None:
        self.auth_file = auth_file
        self.endpoint = endpoint
        self._lock = threading.Lock()
        self._by_authorization: dict[str, Grant] = {}
        self._by_session: dict[str, Grant] = {}
        self._by_job: dict[str, list[Grant]] = {}

    def launch_environment(self, job: Job, attempt: int) -> Mapping[str, str]:
        """Engine hook: the variables that give this attempt its role, or none."""
        role_arn = job.spec.container.get("jobRoleArn")
        if not isinstance(role_arn, str) or not role_arn:
            return {}
        if self.auth_file.current().role(role_arn) is None:
            logger.warning(
                "job %s names jobRoleArn %s, which the auth file has no credentials for: it runs without any",
                job.id,
                role_arn,
            )
            return {}
        grant = Grant(job.id, attempt, role_arn, secrets.token_urlsafe(32), "OB" + secrets.token_urlsafe(48))
        with self._lock:
            self._by_authorization[grant.authorization_token] = grant
            self._by_session[grant.session_token] = grant
            self._by_job.setdefault(job.id, []).append(grant)
        return {FULL_URI_VARIABLE: self.endpoint, TOKEN_VARIABLE: grant.authorization_token}

    def on_status_changes(self, changes: Sequence[StatusChangeLike]) -> None:
        """Engine hook: keep only the grant of an attempt that is still STARTING or RUNNING."""
        with self._lock:
            for change in changes:
                grants = self._by_job.get(change.job_id)
                if not grants:
                    continue
                job = change.job
                live_attempt = job.attempt_number if job.status in _LIVE else None
                keep = [g for g in grants if g.attempt == live_attempt]
                for grant in grants:
                    if grant not in keep:
                        self._by_authorization.pop(grant.authorization_token, None)
                        self._by_session.pop(grant.session_token, None)
                if keep:
                    self._by_job[change.job_id] = keep
                else:
                    del self._by_job[change.job_id]

    def session(self, session_token: str) -> Grant | None:
        with self._lock:
            return self._by_session.get(session_token)

    def grant(self, authorization_token: str) -> Grant | None:
        with self._lock:
            return self._by_authorization.get(authorization_token)

    async def handle(self, request: Request) -> Response:
        """GET the attempt's credentials, in the ECS container credentials shape."""
        client = request.client.host if request.client else ""
        if not _is_loopback(client):
            return _refuse(403, "The container credentials endpoint answers on loopback only")
        token = request.headers.get("authorization", "")
        grant = self.grant(token) if token else None
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
                "Token": grant.session_token,
                "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )


def _refuse(status: int, message: str) -> Response:
    return JSONResponse({"code": "AccessDenied", "message": message}, status_code=status)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
