"""Run an ECS task's or EKS pod's containers as child processes of one job attempt.

``python -m openbatch.runners.multi_container '<spec JSON>'`` where the spec is
``{"kind": "ecs"|"eks", "containers": [...], "initContainers": [...]}`` with each
container ``{"name", "command": [...], "environment": {...}, "essential": bool,
"dependsOn": [{"containerName", "condition"}]}`` (built by ``fidelity.multi_container``).

EKS: init containers run one after another, each must succeed, then the containers
run together; the pod succeeds when every container exits 0. ECS: a container
starts when its ``dependsOn`` conditions hold (START, COMPLETE, SUCCESS); the task
ends when every essential container has exited, stopping the others; it succeeds
when every essential container exited 0. Each output line is prefixed with the
container's name, as separate log streams would tell them apart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

POLL_SECONDS = 0.05
STOP_GRACE_SECONDS = 10.0
_print_lock = threading.Lock()


@dataclass
class Container:
    name: str
    command: list[str]
    environment: dict[str, str]
    essential: bool = True
    depends_on: list[tuple[str, str]] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    pump: threading.Thread | None = None

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Container:
        return cls(
            name=str(spec["name"]),
            command=[str(part) for part in spec.get("command") or []],
            environment={str(k): str(v) for k, v in (spec.get("environment") or {}).items()},
            essential=bool(spec.get("essential", True)),
            depends_on=[(str(d["containerName"]), str(d["condition"])) for d in spec.get("dependsOn") or []],
        )


def _write(line: str) -> None:
    """One line to the attempt's output (the job's log), flushed so lines interleave whole."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _pump(name: str, stream: IO[bytes]) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        with _print_lock:
            _write(f"[{name}] {line}")
    stream.close()


def _start(container: Container) -> None:
    if not container.command:
        _say(f"container {container.name} has no command")
        container.exit_code = 1
        return
    env = {**os.environ, **container.environment}
    try:
        container.process = subprocess.Popen(
            container.command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    except OSError as exc:
        _say(f"container {container.name} failed to start: {exc}")
        container.exit_code = 127
        return
    assert container.process.stdout is not None
    container.pump = threading.Thread(target=_pump, args=(container.name, container.process.stdout), daemon=True)
    container.pump.start()


def _poll(container: Container) -> bool:
    """True once the container has exited (or never started)."""
    if container.exit_code is not None:
        return True
    if container.process is None:
        return False
    code = container.process.poll()
    if code is None:
        return False
    container.exit_code = code if code >= 0 else 128 - code
    if container.pump is not None:
        container.pump.join(timeout=5)
    _say(f"container {container.name} exited with code {container.exit_code}")
    return True


def _say(message: str) -> None:
    with _print_lock:
        _write(f"[openbatch] {message}")


def _stop(containers: list[Container]) -> None:
    running = [c for c in containers if c.process is not None and c.exit_code is None]
    for container in running:
        assert container.process is not None
        container.process.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for container in running:
        assert container.process is not None
        try:
            container.process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            container.process.kill()
            container.process.wait()
        _poll(container)


def run_eks(init: list[Container], containers: list[Container]) -> int:
    for container in init:
        _start(container)
        while not _poll(container):
            time.sleep(POLL_SECONDS)
        if container.exit_code != 0:
            _say(f"init container {container.name} failed; the pod's containers do not start")
            return container.exit_code or 1
    for container in containers:
        _start(container)
    while not all(_poll(c) for c in containers):
        time.sleep(POLL_SECONDS)
    return next((c.exit_code for c in containers if c.exit_code), 0) or 0


def _ready(container: Container, by_name: dict[str, Container]) -> bool | None:
    """True: may start; False: not yet; None: never (a SUCCESS dependency failed)."""
    for name, condition in container.depends_on:
        other = by_name.get(name)
        if other is None:
            return None
        if condition == "START":
            if other.process is None and other.exit_code is None:
                return False
        elif other.exit_code is None:
            return False
        elif condition == "SUCCESS" and other.exit_code != 0:
            return None
    return True


def run_ecs(containers: list[Container]) -> int:
    by_name = {c.name: c for c in containers}
    pending = list(containers)
    never: list[Container] = []
    while True:
        for container in list(pending):
            ready = _ready(container, by_name)
            if ready is None:
                _say(f"container {container.name} will not start: a dependency did not succeed")
                container.exit_code = 1
                pending.remove(container)
                never.append(container)
            elif ready:
                pending.remove(container)
                _start(container)
        for container in containers:
            _poll(container)
        essential = [c for c in containers if c.essential]
        if all(c.exit_code is not None for c in essential):
            break
        time.sleep(POLL_SECONDS)
    _stop(containers)
    return next((c.exit_code for c in containers if c.essential and c.exit_code), 0) or 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m openbatch.runners.multi_container '<spec JSON>'\n")
        return 2
    spec = json.loads(argv[0])
    containers = [Container.from_spec(c) for c in spec.get("containers") or []]
    init = [Container.from_spec(c) for c in spec.get("initContainers") or []]

    # The executor stops an attempt by signalling its process group; children share it.
    def terminate(signum: int, frame: object) -> None:
        _stop([*init, *containers])
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    if spec.get("kind") == "eks":
        return run_eks(init, containers)
    return run_ecs(containers)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
