"""Puts authentication in front of a server's app, or refuses an unsafe configuration."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from openbatch.auth.config import AuthFile, AuthFileError
from openbatch.auth.credentials import CREDENTIALS_PATH, CredentialBroker, load_or_create_key
from openbatch.auth.middleware import SigV4Middleware
from openbatch.config import Settings
from openbatch.domain.job import Job
from openbatch.service.context import ServiceContext

logger = logging.getLogger(__name__)


class EngineHooks(Protocol):
    """What job roles need from the job engine (``JobEngine``): its launch environment seam and
    its unfinished jobs (an attempt's tokens are good while it is STARTING or RUNNING there)."""

    @property
    def jobs(self) -> Mapping[str, Job]: ...

    def add_launch_environment(self, source: Callable[[Job, int], Mapping[str, str]]) -> None: ...


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def install_auth(app: Starlette, ctx: ServiceContext, settings: Settings) -> CredentialBroker | None:
    """SigV4 and IAM policies on every route when an auth file is given; loopback only when not.

    Raises ``SystemExit`` with a message for the operator when the configuration is refused.
    """
    if settings.auth_file is None:
        if not is_loopback_host(settings.host):
            raise SystemExit(
                f"Refusing to listen on {settings.host} without access keys: anyone who can reach the port could "
                "run commands on this host. Give --auth-file FILE with keys (openbatch keys create --auth-file FILE), "
                "or listen on 127.0.0.1."
            )
        logger.warning(
            "No access keys configured (--auth-file): requests are not authenticated, so the server listens on "
            "loopback (%s) only",
            settings.host,
        )
        return None
    try:
        auth_file = AuthFile(settings.auth_file)
    except AuthFileError as exc:
        raise SystemExit(f"--auth-file: {exc}") from None
    config = auth_file.current()
    if not settings.auth_file.exists():
        logger.warning("auth file %s does not exist yet: every request is refused until keys are added", auth_file.path)
    # Jobs run on this host and reach the endpoint on loopback (boto3 accepts nothing else over HTTP).
    endpoint = f"http://127.0.0.1:{settings.port}{CREDENTIALS_PATH}"
    broker = CredentialBroker(auth_file, endpoint, load_or_create_key(settings.data_dir / "job-credentials.key"))
    if not is_loopback_host(settings.host) and settings.host not in ("0.0.0.0", "::"):
        logger.warning(
            "job roles need the server on 127.0.0.1: listening on %s only, jobs cannot reach their credentials",
            settings.host,
        )
    app.router.routes.insert(0, Route(CREDENTIALS_PATH, broker.handle, methods=["GET"]))

    def latest_revision(name: str) -> int | None:
        record = ctx.definition_cache.get((name, None)) or ctx.store.get_job_definition(name, None)
        return record.revision if record is not None else None

    # Innermost of the user middleware: request limits (size, concurrency) apply before signatures are checked.
    app.user_middleware.append(
        Middleware(
            SigV4Middleware,
            auth_file=auth_file,
            broker=broker,
            account=settings.account_id,
            latest_revision=latest_revision,
        )
    )
    logger.info(
        "SigV4 authentication on: %d access key(s), %d job role(s) from %s",
        len(config.keys),
        len(config.roles),
        settings.auth_file,
    )
    return broker


def attach_job_roles(broker: CredentialBroker, engine: EngineHooks) -> None:
    broker.attach(engine)
    engine.add_launch_environment(broker.launch_environment)
