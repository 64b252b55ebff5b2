"""Server settings, resolved once at start-up from CLI options and environment."""

from __future__ import annotations

import hashlib
import os
import pwd
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    data_dir: Path
    database_url: str | None = None
    """SQLAlchemy URL; ``None`` means the SQLite file ``<data_dir>/openbatch.db``."""
    host: str = "127.0.0.1"
    port: int = 8080
    account_id: str = "123456789012"
    region: str = "us-east-1"
    auth_file: Path | None = None
    """Access keys, policies and job role credentials (``auth/config.py``); ``None``: no authentication,
    loopback only."""
    kill_grace_seconds: float = 30.0
    """SIGTERM→SIGKILL grace for terminate and timeout (AWS uses 30 s)."""
    max_log_bytes_per_job: int | None = None
    """Cap on each attempt's log stream: output past it is dropped after a marker line. ``None``: no cap."""
    work_dir_retention_hours: float | None = 24.0
    """Finished jobs' work directories are removed after this long (``logs/janitor.py``); ``None`` keeps them."""
    create_defaults: bool = True
    """Create compute environment and job queue ``default`` on an empty store."""
    default_max_vcpus: int | None = None
    """maxvCpus of the ``default`` compute environment; ``None`` means this host's CPU count."""
    job_user: str | None = None
    """User jobs run as; ``None``: ``nobody`` when the server runs as root, else the server's own user."""
    work_root: Path | None = None
    """Where job working directories go; ``None``: a directory of this server under the system's temp dir."""
    max_request_bytes: int = 1024 * 1024
    """Largest request body accepted; larger ones get HTTP 413 (see ``api/limits.py``)."""
    max_concurrent_requests: int = 256
    """Requests handled at once; more get HTTP 429 ``TooManyRequestsException``."""
    container_runtime: str = "none"
    """``none`` (host processes), ``bwrap``, ``podman`` or ``auto``: what runs jobs' images (``containers/``)."""
    image_map: Path | None = None
    """JSON file mapping job ``image`` names to local directories put first on PATH (``fidelity/container_env``)."""
    public_url: str | None = None
    """How receivers reach this server (SNS SubscribeURL, SigningCertURL); default ``http://host:port``."""
    cluster_url: str | None = None
    """How the other servers on the same PostgreSQL database reach this one; default ``http://host:port``."""
    lost_host_seconds: float = 120.0
    """Several servers on PostgreSQL: a lost server's attempts are killed by its supervisor and, this long
    after another server took over, end with ``Host EC2 (instance …) terminated.`` (see ``cluster/``)."""
    smtp_url: str | None = None
    """``smtp://[user:password@]host:port`` (``smtps://`` for TLS) for email subscriptions; ``None``: no email."""
    ray_address: str | None = None
    """``HOST:PORT`` of a Ray cluster that runs the ``default`` compute environment's jobs (``executors/ray``)."""
    smtp_from: str = "openbatch@localhost"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalize_database_url(self.database_url)
        return f"sqlite:///{self.data_dir / 'openbatch.db'}"

    @property
    def clustered(self) -> bool:
        """On PostgreSQL, servers elect the one that runs the scheduler (one server alone leads at once)."""
        return self.resolved_database_url.startswith("postgresql")

    @property
    def advertised_url(self) -> str:
        if self.cluster_url:
            return self.cluster_url.rstrip("/")
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.getfqdn()
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def work_dir(self) -> Path:
        """Jobs' working directories: outside the data dir, which jobs must not reach."""
        if self.work_root is not None:
            return self.work_root
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"openbatch-work-{digest}"

    @property
    def supervisor_dir(self) -> Path:
        return self.data_dir / "supervisor"

    def job_identity(self) -> tuple[int, int] | None:
        """(uid, gid) jobs run as, or ``None`` for this process's own user.

        A server running as root runs jobs as ``nobody`` unless ``job_user`` says otherwise:
        a job must not be able to read the server's files or memory. Raises KeyError for an
        unknown user.
        """
        name = self.job_user
        if name is None:
            if os.geteuid() != 0:
                return None
            name = "nobody"
        entry = pwd.getpwnam(name)
        if entry.pw_uid == os.geteuid():
            return None
        return entry.pw_uid, entry.pw_gid


def normalize_database_url(url: str) -> str:
    """Let users write ``postgresql://`` and still get the psycopg 3 driver."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url
