"""The ``openbatch`` command line."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import typer

from openbatch.cli import (
    demo,
    image_cmd,
    jobs_cmd,
    keys_cmd,
    logs_cmd,
    notify_cmd,
    resources_cmd,
    status_cmd,
    workflow_cmd,
)
from openbatch.config import Settings
from openbatch.domain.errors import ValidationError
from openbatch.executors.binding import ADDRESS_TAG, EXECUTOR_TAG, check_binding_tags


class _Cli(typer.Typer):
    """Every command's unexpected error is one line on stderr and exit status 1, never a traceback
    (``OPENBATCH_DEBUG=1`` shows it)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            if os.environ.get("OPENBATCH_DEBUG"):
                raise
            typer.echo(f"error: {exc or type(exc).__name__}", err=True)
            raise SystemExit(1) from None


_EXAMPLES = """Examples:

  openbatch server --port 8080

  openbatch apply -f resources.yaml --dry-run

  openbatch get queues -o wide

  openbatch submit -q default --wait -- echo hi

  openbatch ls --status RUNNING

  openbatch logs JOB_ID -f

  openbatch status

Every command that talks to a server takes --endpoint-url (OPENBATCH_ENDPOINT_URL) or
--profile (OPENBATCH_PROFILE, profiles in ~/.config/openbatch/config.yaml). Exit codes: 0 done,
1 the operation or the job failed, 2 a usage error or a bad input file."""

app = _Cli(
    help="OpenBatch: a self-hosted, wire-compatible AWS Batch.",
    epilog=_EXAMPLES,
    no_args_is_help=True,
    add_completion=True,
)
app.command("logs")(logs_cmd.logs)
app.command("apply", epilog="Example: openbatch apply -f resources.yaml --dry-run")(resources_cmd.apply)
app.command("get", epilog="Examples: openbatch get queues; openbatch get jd my-def -o yaml")(resources_cmd.get)
app.command("describe", epilog="Examples: openbatch describe queue default; openbatch describe JOB_ID")(
    resources_cmd.describe
)
app.command("delete", epilog="Example: openbatch delete queue analytics")(resources_cmd.delete)
app.command(
    "submit",
    epilog="Examples: openbatch submit -q default -- echo hi; "
    "openbatch submit -q default -d my-def --array-size 10 -p k=v --wait",
)(jobs_cmd.submit)
app.command("ls", epilog="Example: openbatch ls -q default --status FAILED -o wide")(jobs_cmd.ls)
app.command("cancel", epilog="Example: openbatch cancel JOB_ID --reason 'not needed'")(jobs_cmd.cancel)
app.command("terminate", epilog="Example: openbatch terminate JOB_ID")(jobs_cmd.terminate)
app.command("retry", epilog="Example: openbatch retry JOB_ID --wait")(jobs_cmd.retry)
app.command("status", epilog="Example: openbatch status -o json")(status_cmd.status)
app.command("demo")(demo.demo)
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(workflow_cmd.app, name="workflow")
app.add_typer(notify_cmd.app, name="notify")
app.add_typer(image_cmd.app, name="image")

DEFAULT_DATA_DIR = Path(os.environ.get("OPENBATCH_DATA_DIR", Path.home() / ".openbatch"))


@app.command()
def server(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8080, min=1, max=65535, help="Port to listen on."),
    data_dir: Path = typer.Option(DEFAULT_DATA_DIR, help="Where the SQLite store, logs and job work dirs live."),
    database_url: str | None = typer.Option(
        None, envvar="OPENBATCH_DATABASE_URL", help="postgresql://… to use PostgreSQL instead of SQLite."
    ),
    account_id: str = typer.Option("123456789012", envvar="OPENBATCH_ACCOUNT_ID", help="Account id in ARNs."),
    region: str = typer.Option(
        "us-east-1", envvar="OPENBATCH_REGION", help="Region in ARNs when a request is unsigned."
    ),
    max_vcpus: int | None = typer.Option(
        None, help="maxvCpus of the compute environment 'default' created on an empty store (default: CPUs)."
    ),
    kill_grace_seconds: float = typer.Option(30.0, help="SIGTERM→SIGKILL grace for terminate and timeout."),
    job_user: str | None = typer.Option(
        None, envvar="OPENBATCH_JOB_USER", help="User jobs run as (default: nobody when run as root, else yours)."
    ),
    work_dir: Path | None = typer.Option(
        None, envvar="OPENBATCH_WORK_DIR", help="Where job working directories go (default: under the temp dir)."
    ),
    max_log_bytes_per_job: int | None = typer.Option(
        None,
        min=1024,
        envvar="OPENBATCH_MAX_LOG_BYTES_PER_JOB",
        help="Cap each attempt's log; output past it is dropped after a marker line (default: no cap).",
    ),
    work_dir_retention_hours: float = typer.Option(
        24.0, min=0, help="Remove finished jobs' work directories after this many hours (logs keep their own)."
    ),
    max_request_bytes: int = typer.Option(
        1024 * 1024, min=1, help="Largest request body; larger ones get HTTP 413 ClientException."
    ),
    max_concurrent_requests: int = typer.Option(
        256, min=1, help="Requests handled at once; more get HTTP 429 TooManyRequestsException (clients retry)."
    ),
    container_runtime: str = typer.Option(
        "none",
        envvar="OPENBATCH_CONTAINER_RUNTIME",
        help="Run jobs' images with none (host processes), bwrap, podman or auto (the first that works here).",
    ),
    image_map: Path | None = typer.Option(
        None,
        envvar="OPENBATCH_IMAGE_MAP",
        help="JSON file mapping job images to local directories (a virtualenv, a prefix) put first on PATH.",
    ),
    auth_file: Path | None = typer.Option(
        None,
        envvar="OPENBATCH_AUTH_FILE",
        help="Access keys (SigV4), IAM policies and job role credentials (YAML/JSON). Without it: loopback only.",
    ),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
    log_format: str = typer.Option("text", help="text (key=value fields) or json (one object per line)."),
    public_url: str | None = typer.Option(
        None, envvar="OPENBATCH_PUBLIC_URL", help="URL receivers use to reach this server (default http://HOST:PORT)."
    ),
    cluster_url: str | None = typer.Option(
        None,
        envvar="OPENBATCH_CLUSTER_URL",
        help="URL the other servers on the same PostgreSQL database forward calls to (default http://HOST:PORT).",
    ),
    lost_host_seconds: float = typer.Option(
        120.0,
        min=1.0,
        envvar="OPENBATCH_LOST_HOST_SECONDS",
        help="Several servers on PostgreSQL: a dead server's running jobs end as a lost host this long after "
        "another takes over (its supervisor kills them first).",
    ),
    smtp_url: str | None = typer.Option(
        None, envvar="OPENBATCH_SMTP_URL", help="smtp://[user:pass@]host:port (smtps:// for TLS) for email topics."
    ),
    smtp_from: str = typer.Option("openbatch@localhost", envvar="OPENBATCH_SMTP_FROM", help="Sender of emails."),
    smtp_starttls: bool = typer.Option(False, help="Upgrade smtp:// connections with STARTTLS."),
    smtp_username: str | None = typer.Option(None, envvar="OPENBATCH_SMTP_USERNAME", help="SMTP login."),
    smtp_password: str | None = typer.Option(None, envvar="OPENBATCH_SMTP_PASSWORD", help="SMTP password."),
    ray_address: str | None = typer.Option(
        None,
        envvar="OPENBATCH_RAY_ADDRESS",
        help="HOST:PORT of a Ray cluster's head: the default compute environment runs its jobs there "
        "(pip install 'openbatch[ray]').",
    ),
) -> None:
    """Run the API server, scheduler and local executor in one process."""
    from openbatch import instance
    from openbatch.observability.logging import FORMATS, configure
    from openbatch.server import listen, serve

    if log_format not in FORMATS or log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        typer.echo("--log-format must be text or json; --log-level debug, info, warning or error", err=True)
        raise typer.Exit(2)
    configure(log_level, log_format)
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        host=host,
        port=port,
        account_id=account_id,
        region=region,
        default_max_vcpus=max_vcpus,
        kill_grace_seconds=kill_grace_seconds,
        job_user=job_user,
        work_root=work_dir,
        max_log_bytes_per_job=max_log_bytes_per_job,
        work_dir_retention_hours=work_dir_retention_hours,
        max_request_bytes=max_request_bytes,
        max_concurrent_requests=max_concurrent_requests,
        image_map=image_map,
        container_runtime=container_runtime,
        auth_file=auth_file,
        public_url=public_url,
        cluster_url=cluster_url,
        lost_host_seconds=lost_host_seconds,
        smtp_url=smtp_url,
        smtp_from=smtp_from,
        smtp_starttls=smtp_starttls,
        smtp_username=smtp_username,
        smtp_password=smtp_password,
        ray_address=ray_address,
    )
    if ray_address is not None:
        try:
            check_binding_tags({EXECUTOR_TAG: "ray", ADDRESS_TAG: ray_address})
        except ValidationError as exc:
            typer.echo(f"--ray-address: {exc}", err=True)
            raise typer.Exit(2) from None
    try:
        identity = settings.job_identity()
    except KeyError:
        typer.echo(f"--job-user: no such user {job_user!r}", err=True)
        raise typer.Exit(2) from None
    if identity is None and os.geteuid() == 0:
        typer.echo("warning: jobs run as root, with access to this server's files", err=True)
    try:
        # Before the port and before any job is read: a second server here would take the first one's jobs.
        instance.claim(settings)
    except instance.DataDirInUse as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        sock = listen(host, port)
    except OSError as exc:
        taken = exc.errno == errno.EADDRINUSE
        why = "the port is already in use (another `openbatch server`?)" if taken else exc.strerror or str(exc)
        typer.echo(f"error: cannot listen on {host}:{port}: {why}; pick another with --port", err=True)
        raise typer.Exit(1) from None
    serve(settings, log_level=log_level, sock=sock)


if __name__ == "__main__":
    app()
