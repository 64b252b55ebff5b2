"""What every server-facing command shares: where the server is, a signed boto3 client, output, errors.

The endpoint comes from ``--endpoint-url``, then ``OPENBATCH_ENDPOINT_URL``, then the
profile chosen with ``--profile`` / ``OPENBATCH_PROFILE`` (or the profile named
``default``) in ``~/.config/openbatch/config.yaml``::

    profiles:
      default: {endpoint_url: http://127.0.0.1:8080, region: us-east-1}
      lab: {endpoint_url: http://127.0.0.1:9090}

Requests are signed by the normal AWS credential chain (environment, shared files,
``AWS_PROFILE``), with dummy keys when none are configured so that a local
unauthenticated server just works.

Exit codes: 0 done, 1 the operation (or the job) failed, 2 the command line or an
input file is wrong.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import typer
import yaml
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)
from rich.console import Console

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
DEFAULT_REGION = "us-east-1"
EXIT_FAILED = 1
EXIT_USAGE = 2
OUTPUTS = ("table", "wide", "json", "yaml")

stderr = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)

EndpointOption = typer.Option(
    None,
    "--endpoint-url",
    envvar="OPENBATCH_ENDPOINT_URL",
    help=f"OpenBatch server URL (default: the profile's, else {DEFAULT_ENDPOINT}).",
    show_default=False,
)
ProfileOption = typer.Option(
    None,
    "--profile",
    envvar="OPENBATCH_PROFILE",
    help="Profile in ~/.config/openbatch/config.yaml.",
    show_default=False,
)
OutputOption = typer.Option(
    "table",
    "--output",
    "-o",
    help="table, wide, json or yaml.",
    autocompletion=lambda incomplete: [o for o in OUTPUTS if o.startswith(incomplete)],
)


class CliError(Exception):
    """Reported as ``error: message`` (and an indented hint) on stderr, then exit ``code``."""

    def __init__(self, message: str, hint: str | None = None, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


def usage(message: str, hint: str | None = None) -> CliError:
    return CliError(message, hint, EXIT_USAGE)


@dataclass(frozen=True)
class Target:
    """The server a command talks to."""

    endpoint_url: str
    region: str


def config_path() -> Path:
    if explicit := os.environ.get("OPENBATCH_CONFIG"):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "openbatch" / "config.yaml"


def _profiles() -> dict[str, Any]:
    path = config_path()
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError) as exc:
        raise usage(f"cannot read {path}: {exc}") from None
    profiles = (loaded or {}).get("profiles") if isinstance(loaded, dict) else None
    if profiles is None:
        return {}
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise usage(f"{path}: 'profiles' must map names to {{endpoint_url, region}}")
    return profiles


def resolve(endpoint_url: str | None, profile: str | None) -> Target:
    profiles = _profiles()
    chosen: Mapping[str, Any] = {}
    if profile:
        if profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise usage(f"unknown profile {profile!r} (profiles in {config_path()}: {known})")
        chosen = profiles[profile]
    elif "default" in profiles:
        chosen = profiles["default"]
    url = endpoint_url or chosen.get("endpoint_url") or DEFAULT_ENDPOINT
    region = (
        chosen.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    )
    if not str(url).startswith(("http://", "https://")):
        raise usage(f"endpoint URL {url!r} must start with http:// or https://")
    global _resolved
    _resolved = Target(str(url).rstrip("/"), str(region))
    return _resolved


_resolved: Target | None = None
"""The server this process talks to, for error messages (one command per process)."""


def _credential_session() -> Any:
    """A botocore session on the AWS credential chain, without the instance and container metadata
    lookups, which cost seconds where there is no metadata service (a local server never needs them)."""
    import botocore.session

    session = botocore.session.Session()
    resolver = session.get_component("credential_provider")
    for name in ("iam-role", "container-role"):
        resolver.remove(name)
    return session


def signed_headers(target: Target, method: str, url: str, content: bytes) -> dict[str, str]:
    """SigV4 headers for a call to the server's native APIs (workflows), signed like the Batch client:
    the AWS credential chain, or dummy keys when it has none (an unauthenticated server ignores them)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    credentials = _credential_session().get_credentials() or Credentials("openbatch", "openbatch")
    request = AWSRequest(method=method, url=url, data=content, headers={"Content-Type": "application/json"})
    SigV4Auth(credentials, "batch", target.region).add_auth(request)
    return dict(request.headers.items())


def boto_client(service: str, target: Target) -> Any:
    """A boto3-compatible client of ``service`` (events, sns, logs…) for ``target``, on the same credentials."""
    from botocore.config import Config

    session = _credential_session()
    keys: dict[str, Any] = {}
    if session.get_credentials() is None:
        keys = {"aws_access_key_id": "openbatch", "aws_secret_access_key": "openbatch"}
    config = Config(connect_timeout=3, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"})
    return session.create_client(
        service, endpoint_url=target.endpoint_url, region_name=target.region, config=config, **keys
    )


def batch_client(target: Target) -> BatchClient:
    """A Batch client for ``target``, signed by the AWS credential chain (dummy keys when it has none)."""
    return cast("BatchClient", boto_client("batch", target))


@contextmanager
def reported() -> Iterator[None]:
    """Turn every expected failure into one line on stderr and an exit code; never a traceback."""
    try:
        yield
    except CliError as exc:
        fail(exc.message, exc.hint, exc.code)
    except (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError) as exc:
        where = _resolved.endpoint_url if _resolved else "the server"
        reason = getattr(exc, "kwargs", {}).get("error") or exc
        fail(f"cannot reach OpenBatch at {where}: {_short(reason)} (is `openbatch server` running?)")
    except ReadTimeoutError:
        fail(f"OpenBatch at {_resolved.endpoint_url if _resolved else 'the server'} did not answer in time")
    except ParamValidationError as exc:
        fail(" ".join(str(exc).split()), code=EXIT_USAGE)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        fail(f"{error.get('Code', 'Error')}: {error.get('Message', exc)}")
    except BotoCoreError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except BrokenPipeError:
        # `openbatch ls | head`: the reader went away; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None


def _short(reason: object) -> str:
    text = str(reason)
    # urllib3 wraps the useful part ("[Errno 111] Connection refused") in a long repr.
    if "] " in text and "Errno" in text:
        return text[text.index("[Errno") :].rstrip(")'\"")
    return text


def fail(message: str, hint: str | None = None, code: int = EXIT_FAILED) -> NoReturn:
    stderr.print(f"error: {message}", markup=False)
    if hint:
        stderr.print(f"  hint: {hint}", markup=False)
    raise typer.Exit(code)


def check_output(output: str) -> None:
    if output not in OUTPUTS:
        raise usage(f"--output must be one of {', '.join(OUTPUTS)}; got {output!r}")


def dump(data: Any, output: str) -> None:
    """Print ``data`` as JSON or YAML on stdout."""
    plain = json.loads(json.dumps(data, default=str))
    if output == "json":
        sys.stdout.write(json.dumps(plain, indent=2) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(plain, sort_keys=False, default_flow_style=False))
    sys.stdout.flush()


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table, like ``kubectl get``: one line per row, whatever the width, so that
    grep, awk and cut work on it."""
    cells = [list(columns), *(["" if cell is None else str(cell) for cell in row] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    text = "".join("   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n" for line in cells)
    sys.stdout.write(text)
    sys.stdout.flush()


def name_of(arn_or_name: str) -> str:
    """``arn:…:job-queue/q`` → ``q``; a name stays as it is."""
    return arn_or_name.rsplit("/", 1)[-1] if arn_or_name.startswith("arn:") else arn_or_name


def age(epoch_ms: int | None, now_ms: int) -> str:
    if not epoch_ms:
        return ""
    seconds = max(0, (now_ms - epoch_ms) // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def known_queues(batch: BatchClient) -> list[str]:
    names: list[str] = []
    for page in batch.get_paginator("describe_job_queues").paginate():
        names.extend(q["jobQueueName"] for q in page["jobQueues"])
    return sorted(names)


def require_queue(batch: BatchClient, queue: str) -> dict[str, Any]:
    """The queue's description, or an error listing the queues there are."""
    found = batch.describe_job_queues(jobQueues=[queue])["jobQueues"]
    if not found:
        known = ", ".join(known_queues(batch)) or "none"
        raise CliError(f"unknown job queue {queue!r}", f"known job queues: {known}")
    return dict(found[0])
