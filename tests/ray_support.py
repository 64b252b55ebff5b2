"""A real multi-node Ray cluster on this machine, for tests and benchmarks.

Each node is a ``ray start --block`` child process in a session of its own, on a loopback address
of its own (127.0.0.2 and up: Ray swaps 127.0.0.1 for the machine's routable address). Every port
is picked free, so the cluster does not meet another one on the same machine, and stopping it
signals only its own processes (never ``ray stop``, which stops every Ray node of the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from openbatch.cli.background import free_port

START_SECONDS = 180.0
"""A node starts in 5–20 s on an idle 2-core machine; much more under load."""
START_TRIES = 3
_MIB = 1024 * 1024


@dataclass
class RayNode:
    address: str
    cpus: int
    memory_mib: int
    resources: dict[str, float] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None


@dataclass
class LocalRayCluster:
    """A head with no CPUs (it runs only Ray's services and OpenBatch's dispatcher) and worker nodes."""

    workers: list[RayNode]
    head_address: str = "127.0.0.2"
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="obray-", dir="/tmp")))
    head: RayNode | None = None

    @property
    def address(self) -> str:
        return f"{self.head_address}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}

    def start(self) -> LocalRayCluster:
        self.head = RayNode(self.head_address, 0, 256)
        try:
            self._start_node(self.head, head=True)
            for worker in self.workers:
                self._start_node(worker, head=False)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, node: RayNode, *, head: bool) -> None:
        ray = Path(sys.executable).with_name("ray")
        args = [
            str(ray),
            "start",
            "--block",
            f"--node-ip-address={node.address}",
            f"--num-cpus={node.cpus}",
            f"--memory={node.memory_mib * _MIB}",
            f"--object-store-memory={80 * _MIB}",
            f"--resources={json.dumps(node.resources)}",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            "--disable-usage-stats",
        ]
        if head:
            args += [
                "--head",
                f"--port={self.port}",
                "--include-dashboard=false",
                f"--temp-dir={self.root}",
            ]
        else:
            args += [f"--address={self.address}"]
        node.log = self.root / f"node-{node.address}.log"
        for _try in range(START_TRIES):
            node.log.write_bytes(b"")
            with open(node.log, "ab") as log:
                node.process = subprocess.Popen(
                    args, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
                )
            if self._wait_started(node):
                return
            # Ray gives a node's raylet 30 s to register, which a loaded machine can miss: try again.
            _stop_node(node)
        raise RuntimeError(f"Ray node {node.address} did not start; its output:\n{node.log.read_text()[-3000:]}")

    def _wait_started(self, node: RayNode) -> bool:
        assert node.process is not None and node.log is not None
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if "Ray runtime started" in node.log.read_text(errors="replace"):
                return True
            if node.process.poll() is not None:
                return False
            time.sleep(0.2)
        return False

    def kill(self, node: RayNode) -> None:
        """The machine is gone: SIGKILL every process of the node at once (its raylet and its workers)."""
        if node.process is not None:
            _kill_session(node.process.pid, signal.SIGKILL)
            node.process.wait(30)
            node.process = None

    def restart(self, node: RayNode) -> None:
        self._start_node(node, head=False)

    def stop(self) -> None:
        nodes = [*self.workers, *([self.head] if self.head is not None else [])]
        threads = [threading.Thread(target=_stop_node, args=(node,)) for node in nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        shutil.rmtree(self.root, ignore_errors=True)


def _stop_node(node: RayNode) -> None:
    process = node.process
    if process is None:
        return
    process.send_signal(signal.SIGTERM)  # ray start --block stops its node's processes
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    _kill_session(process.pid, signal.SIGKILL)  # whatever it left behind in its session
    node.process = None


def _kill_session(sid: int, sig: int) -> None:
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.getsid(int(name)) == sid:
                os.kill(int(name), sig)
        except OSError:
            continue


def dispatcher_stats(address: str) -> dict[str, int]:
    """What the dispatcher actors on the cluster at ``address`` counted (``Dispatcher.stats``: slot tasks,
    slot calls, attempts handed and given back), summed, read by a driver process of its own."""
    code = (
        "import json, sys, ray\n"
        "ray.init(address=sys.argv[1], _node_ip_address=sys.argv[1].split(':')[0], log_to_driver=False,"
        " configure_logging=False)\n"
        "actors = ray.util.list_named_actors(all_namespaces=True)\n"
        "names = [a['name'] for a in actors if a['namespace'] == 'openbatch']\n"
        "counts = {}\n"
        "for one in ray.get([ray.get_actor(name, namespace='openbatch').stats.remote() for name in names]):\n"
        "    for key, value in one.items():\n"
        "        counts[key] = counts.get(key, 0) + value\n"
        "print(json.dumps(counts))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, address],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={"RAY_USAGE_STATS_ENABLED": "0", "PATH": "/usr/bin:/bin"},
    )
    counts: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return counts
