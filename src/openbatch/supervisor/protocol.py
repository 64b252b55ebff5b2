"""What the server and the supervisor say to each other: one JSON object per line on a Unix socket.

server → supervisor: ``launch`` {key, spec}, ``kill`` {key, grace, reason}, ``forget`` {keys},
``fence`` {seconds} (kill every attempt once no server has been connected for that long),
``outcomes`` {databaseUrl, host, keepSeconds} (while no server is connected, for up to keepSeconds,
write the outcomes not yet acknowledged to that database for the next leader: ``outcomes.py``).
supervisor → server: ``state`` {attempts: [{key, spec, pid, exit}]} once per connection, then
``started`` {key, pid}, ``refused`` {key} (that attempt was launched already) and ``exit`` {key, exit}.
An exit is reported until the server says ``forget``: after a reconnect it comes again in ``state``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from openbatch.containers.spec import ContainerLaunch
from openbatch.executors.base import ExitInfo, LaunchSpec, attempt_key

__all__ = ["attempt_key"]

_MAX_SOCKET_PATH = 100
"""sun_path holds 108 bytes on Linux."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    value = json.loads(line)
    if not isinstance(value, dict):
        raise ValueError("a message is a JSON object")
    return value


def spec_to_json(spec: LaunchSpec) -> dict[str, Any]:
    return {
        "jobId": spec.job_id,
        "attempt": spec.attempt,
        "command": list(spec.command),
        "environment": spec.environment,
        "workingDir": str(spec.working_dir),
        "logStream": spec.log_stream,
        "memoryMib": spec.memory_mib,
        "gpuIds": list(spec.gpu_ids),
        "container": spec.container.to_json() if spec.container is not None else None,
    }


def spec_from_json(data: dict[str, Any]) -> LaunchSpec:
    return LaunchSpec(
        job_id=str(data["jobId"]),
        attempt=int(data["attempt"]),
        command=tuple(str(part) for part in data["command"]),
        environment={str(k): str(v) for k, v in data["environment"].items()},
        working_dir=Path(data["workingDir"]),
        log_stream=str(data["logStream"]),
        memory_mib=None if data.get("memoryMib") is None else int(data["memoryMib"]),
        gpu_ids=tuple(int(gpu) for gpu in data.get("gpuIds", ())),
        container=ContainerLaunch.from_json(data["container"]) if data.get("container") else None,
    )


def exit_to_json(info: ExitInfo, ended_at: int) -> dict[str, Any]:
    return {"exitCode": info.exit_code, "reason": info.reason, "started": info.started, "endedAt": ended_at}


def exit_from_json(data: dict[str, Any]) -> ExitInfo:
    code = data.get("exitCode")
    return ExitInfo(
        exit_code=None if code is None else int(code),
        reason=data.get("reason"),
        started=bool(data.get("started", True)),
        ended_at=None if data.get("endedAt") is None else int(data["endedAt"]),
    )


def socket_path(state_dir: Path) -> Path:
    """``<state_dir>/sock``, or a private directory under /tmp when that path is too long for a socket."""
    path = state_dir / "sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:16]
    return Path("/tmp") / f"openbatch-supervisor-{digest}" / "sock"
