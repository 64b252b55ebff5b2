"""Multi-node parallel jobs in the engine: gang placement, the main node deciding, whole-job retry and timeout.

A multi-node job waits in its queue like any job; it is *placed* only when all of its
nodes can start at once (``NodePlacement``: on this host, the nodes' sum must fit the
compute environment and the host). Placing it places every node job: capacity is taken
node by node, the main node is handed to the executor first, the others right after it
is RUNNING, as AWS launches the main node first and the children once it runs. The job
is STARTING, then RUNNING with its main node; its attempts are its main node's.

Nodes end on their own, each SUCCEEDED or FAILED by its exit code; a node other than
the main one ending changes nothing else (AWS: "If a child node dies, AWS Batch doesn't
take any action on the other nodes"). When the main node exits, the other nodes are
stopped, and once every node has ended the main node's attempt decides the job: success,
a new attempt of the whole job under its retry strategy (every node runs again), or
failure. The job's timeout covers the whole job, from its main node's start. Terminating
the job stops every node; cancelling it before it is placed closes its nodes as well.

On the local executor every node is a process of this host, so each child node's
``AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS`` is ``127.0.0.1``; as on AWS, the main
node itself does not get the variable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol

from openbatch.domain import multinode as mn
from openbatch.domain import transitions as t
from openbatch.domain.job import Attempt, Job
from openbatch.domain.jobspec import Resources
from openbatch.domain.resources import ComputeEnvironment
from openbatch.domain.states import TERMINAL, JobStatus
from openbatch.executors.base import ExitInfo, KnownAttempt, LaunchSpec, NodeGroup, attempt_key
from openbatch.scheduler.capacity import Capacity, Refusal
from openbatch.scheduler.core import HOST_TERMINATED, SERVER_STOPPED, RunningAttempt, S, _remove_empty_dir
from openbatch.scheduler.dispatch import DispatchMixin
from openbatch.scheduler.lost_hosts import LOST_REASON
from openbatch.scheduler.queues import Positions
from openbatch.scheduler.recovery import RecoveryMixin, _kill_orphan
from openbatch.store.job_codec import from_record

MAIN_NODE_EXITED = "The main node of the multi-node parallel job exited, so this node was stopped"
LOCAL_MAIN_NODE_ADDRESS = "127.0.0.1"
_ACTIVE = (S.STARTING, S.RUNNING)


class NodePlacement(Protocol):
    """Where the nodes of a multi-node parallel job go: all of them at once, or none.

    The seam for executors whose nodes are separate machines (a Ray placement group
    places the node groups there); the local one puts every node on this host.
    """

    def refusal(self, nodes: Sequence[Resources], total: Resources, ce: ComputeEnvironment) -> Refusal | None:
        """Why the nodes cannot all start on ``ce`` now, or None if they can."""
        ...

    def main_node_address(self, parent: Job) -> str:
        """The main node's address, for ``AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS``."""
        ...


class LocalNodePlacement:
    """Every node a process of this host: together they need their sum of vCPUs, memory and GPUs."""

    def __init__(self, capacity: Capacity) -> None:
        self.capacity = capacity

    def refusal(self, nodes: Sequence[Resources], total: Resources, ce: ComputeEnvironment) -> Refusal | None:
        refusal = self.capacity.refusal(total, ce)
        if refusal is None:
            return None
        code, _sep, text = refusal.reason.partition(" - ")
        return Refusal(
            f"{code} - the {len(nodes)} nodes of this multi-node parallel job start together: {text}",
            refusal.permanent,
        )

    def main_node_address(self, parent: Job) -> str:
        return LOCAL_MAIN_NODE_ADDRESS


@dataclass(slots=True)
class Gang:
    """The node jobs of one multi-node job (index order) and how its current attempt is going."""

    nodes: list[Job]
    main_attempt: Attempt | None = None
    """The main node's attempt, once it ended: it decides the job when every node has ended."""
    stop_reason: str | None = None
    """TerminateJob's reason, while the nodes are being stopped."""
    timed_out: bool = False
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    def main(self) -> Job:
        return self.nodes[self.main_index]

    @property
    def main_index(self) -> int:
        return int((self.nodes[0].spec.node_properties or {})["mainNode"])

    def next_attempt(self) -> None:
        self.main_attempt = None
        self.stop_reason = None
        self.timed_out = False
        self.cancel_timer()

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class MultiNodeMixin(DispatchMixin, RecoveryMixin):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gangs: dict[str, Gang] = {}
        """Unfinished multi-node jobs by id."""
        self.node_placement: NodePlacement = LocalNodePlacement(self.capacity)
        """Replaced by the composition root for an executor whose nodes are separate machines."""

    # --- admission and evaluation ------------------------------------------------------

    def admit(self, jobs: Iterable[Job]) -> None:
        batch = list(jobs)
        super().admit(batch)
        self._track(batch)

    def _track(self, jobs: Sequence[Job]) -> None:
        """Group node jobs under their multi-node job (given together with it)."""
        new = {job.id: Gang([]) for job in jobs if job.is_multinode_parent}
        for job in jobs:
            gang = new.get(job.parent_id or "") if job.is_node else None
            if gang is not None:
                gang.nodes.append(job)
        for parent_id, gang in new.items():
            gang.nodes.sort(key=lambda node: node.node_index or 0)
            self.gangs[parent_id] = gang

    def _release_pending(self, job: Job, now: int) -> None:
        if job.is_node:
            return  # a node job waits for its multi-node job to be placed
        super()._release_pending(job, now)

    def _array_done(self, parent: Job) -> bool:
        if parent.is_multinode_parent:
            return False  # decided by its main node, never by counting nodes
        return super()._array_done(parent)

    def _waiting_reason(self, job: Job, positions: dict[str, Positions]) -> str | None:
        if job.is_node and job.status is S.PENDING and job.parent_id is not None:
            parent = self.jobs.get(job.parent_id)
            if parent is not None and parent.status not in TERMINAL:
                return f"Waiting for multi-node parallel job {parent.id} ({parent.status.value}) to start its nodes"
        return super()._waiting_reason(job, positions)

    # --- placement ------------------------------------------------------------------------

    def _refusal(self, job: Job, ce: ComputeEnvironment) -> Refusal | None:
        gang = self.gangs.get(job.id) if job.is_multinode_parent else None
        if gang is None:
            return super()._refusal(job, ce)
        return self.node_placement.refusal([n.spec.resources for n in gang.nodes], job.spec.resources, ce)

    def _launch(self, job: Job, ce_name: str, now: int) -> None:
        gang = self.gangs.get(job.id) if job.is_multinode_parent else None
        if gang is None:
            super()._launch(job, ce_name, now)
            return
        gang.next_attempt()
        main = gang.main()
        # The main node first: it is handed to the executor first, the others once it is RUNNING.
        for node in [main, *(n for n in gang.nodes if n is not main)]:
            if node.status in TERMINAL:
                self._set(node, partial(mn.rerun_node, now=now))
                self.jobs[node.id] = node
            else:
                self._set(node, lambda j: t.make_runnable(j, now))
            super()._launch(node, ce_name, now)
        placed = main.current or Attempt()
        attempt = Attempt(task_id=placed.task_id, log_stream=placed.log_stream)
        self._set(job, lambda j: t.place(j, ce_name, attempt))

    def _hand_to_executor(self, job: Job, running: RunningAttempt) -> None:
        super()._hand_to_executor(job, running)
        parent = self._parent_of(job)
        if parent is None or parent.status is not S.STARTING or job.status is not S.RUNNING:
            return
        gang = self.gangs.get(parent.id)
        if gang is not None and job.node_index == gang.main_index:
            self._start_parent(parent, job)

    def _start_parent(self, parent: Job, main: Job) -> None:
        started = main.started_at or self.clock.now_ms()
        self._set(parent, lambda j: t.start(j, started))
        self._arm_gang_timeout(parent)

    def launch_spec(self, job: Job, gpu_ids: tuple[int, ...]) -> LaunchSpec:
        launch = super().launch_spec(job, gpu_ids)
        shape = job.spec.node_properties
        if job.node_index is None or shape is None:
            return launch
        main_index = int(shape["mainNode"])
        launch.environment.update(
            AWS_BATCH_JOB_NODE_INDEX=str(job.node_index),
            AWS_BATCH_JOB_NUM_NODES=str(shape["numNodes"]),
            AWS_BATCH_JOB_MAIN_NODE_INDEX=str(main_index),
        )
        parent = self._parent_of(job)
        if job.node_index != main_index and parent is not None:
            launch.environment["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] = self.node_placement.main_node_address(
                parent
            )
        gang = self.gangs.get(job.parent_id or "")
        if gang is None:
            return launch
        group = NodeGroup(
            # Every node of one attempt of the job runs its own attempt of that number.
            key=attempt_key(job.parent_id or "", job.attempt_number),
            index=job.node_index,
            main_index=main_index,
            nodes=tuple(node.spec.resources for node in gang.nodes),
        )
        return replace(launch, node_group=group)

    def _parent_of(self, job: Job) -> Job | None:
        if not job.is_node or job.parent_id is None:
            return None
        return self.jobs.get(job.parent_id)

    # --- timeout, cancel and terminate ---------------------------------------------------------

    def _arm_gang_timeout(self, parent: Job) -> None:
        gang = self.gangs.get(parent.id)
        timeout = parent.spec.timeout_seconds
        if gang is None or not timeout:
            return
        gang.cancel_timer()
        elapsed = (self.clock.now_ms() - (parent.started_at or self.clock.now_ms())) / 1000
        gang.timer = asyncio.get_running_loop().call_later(max(0.0, timeout - elapsed), self._gang_timed_out, parent.id)

    def _gang_timed_out(self, parent_id: str) -> None:
        gang = self.gangs.get(parent_id)
        if gang is None:
            return
        gang.timer = None
        gang.timed_out = True
        for node in gang.nodes:
            self._stop_node(node, None)

    def _stop_node(self, node: Job, reason: str | None) -> None:
        """Stop one node's process group; ``reason`` None: the job's time ran out."""
        running = self._running.get(node.id)
        if running is None:
            return
        if reason is None:
            running.timed_out = True
        elif running.stop_reason is None:
            running.stop_reason = reason  # also keeps a node placed but not yet launched from starting
        if running.handle is not None:
            self.executor.kill(running.handle, self.kill_grace_seconds, None)

    def cancel(self, job: Job, reason: str) -> None:
        parent = self._parent_of(job)
        super().cancel(parent if parent is not None else job, reason)

    def terminate(self, job: Job, reason: str) -> None:
        """TerminateJob on the job or any of its nodes ends the whole job, every node stopped."""
        parent = self._parent_of(job)
        if parent is not None:
            job = parent
        gang = self.gangs.get(job.id) if job.is_multinode_parent else None
        if gang is None or job.status not in _ACTIVE:
            super().terminate(job, reason)
            return
        if gang.stop_reason is None:
            gang.stop_reason = reason
            for node in gang.nodes:
                self._stop_node(node, reason)

    # --- node exits and the job's outcome ------------------------------------------------------

    def _on_exit(self, job_id: str, info: ExitInfo) -> None:
        job = self.jobs.get(job_id)
        if job is None or not job.is_node:
            super()._on_exit(job_id, info)
            return
        ended = self._end_attempt(job_id, info)
        if ended is not None:
            node, _running, info, now, status_reason = ended
            self._node_ended(node, now, info, status_reason)

    def _node_ended(self, node: Job, now: int, info: ExitInfo, status_reason: str) -> None:
        gang = self.gangs.get(node.parent_id or "")
        attempt = t.finish_attempt(node, now, info.exit_code, info.reason, status_reason)
        stop_reason = gang.stop_reason if gang is not None else None
        if stop_reason is not None:
            self._finish(node, lambda j: t.terminate(j, now, stop_reason))
        elif gang is not None and gang.timed_out:
            self._finish(node, lambda j: t.fail(j, now, t.TIMEOUT_REASON))
        elif info.exit_code == 0 and info.started:
            self._finish(node, lambda j: t.succeed(j, now))
        else:
            self._finish(node, lambda j: t.fail(j, now, status_reason))
        if gang is not None:
            if node.node_index == gang.main_index and gang.main_attempt is None:
                gang.main_attempt = attempt
                for other in gang.nodes:
                    if other is not node:
                        self._stop_node(other, MAIN_NODE_EXITED)
            parent = self.jobs.get(node.parent_id or "")
            if parent is not None:
                self._settle(parent, gang, now)
        self.wake()

    def _settle(self, parent: Job, gang: Gang, now: int) -> None:
        """Once the main node has ended and every node with it, its attempt decides the job."""
        main = gang.main_attempt
        if main is None or parent.status not in _ACTIVE or any(n.status in _ACTIVE for n in gang.nodes):
            return
        gang.cancel_timer()
        attempt = t.finish_attempt(parent, now, main.exit_code, main.reason, main.status_reason or "")
        attempt.started_at = main.started_at
        self._release_share(parent)
        stop_reason = gang.stop_reason
        if stop_reason is not None:
            self._finish(parent, lambda j: t.terminate(j, now, stop_reason))
        elif gang.timed_out:
            self._finish(parent, lambda j: t.fail(j, now, t.TIMEOUT_REASON))
        elif main.exit_code == 0:
            self._finish(parent, lambda j: t.succeed(j, now))
        elif t.should_retry(parent.spec.retry, len(parent.attempts), attempt):
            self._set(parent, lambda j: t.retry(j, now))
            self._enqueue(parent)
        else:
            reason = main.status_reason or t.ESSENTIAL_CONTAINER_EXITED
            self._finish(parent, lambda j: t.fail(j, now, reason))

    def _set(self, job: Job, change: Callable[[Job], JobStatus]) -> None:
        super()._set(job, change)
        # Every way a job can finish passes here (dependency cascades included, which do not
        # go through _on_terminal): a finished multi-node job closes the nodes that never ran.
        if job.status in TERMINAL and job.node_index is None and job.spec.node_properties is not None:
            self._close_gang(job)

    def _close_gang(self, job: Job) -> None:
        gang = self.gangs.pop(job.id, None)
        if gang is None:
            return
        gang.cancel_timer()
        now = self.clock.now_ms()
        reason = job.status_reason or t.DEPENDENT_JOB_FAILED
        for node in gang.nodes:
            if node.status in TERMINAL:
                continue
            # Never placed: the job was cancelled, terminated or failed before its nodes started.
            if job.is_terminated:
                self._set(node, partial(t.terminate, now=now, reason=reason))
            elif job.is_cancelled:
                self._set(node, partial(t.cancel, now=now, reason=reason))
            else:
                self._set(node, partial(t.fail, now=now, reason=reason))
        for node in gang.nodes:
            # Only now: a node's directory must outlive its own end while its job may run it again.
            self._janitor.submit(_remove_empty_dir, self.work_dir_of(node.id))

    def _after_exit(self, job: Job) -> None:
        if job.is_node:
            self.wake()
            return
        super()._after_exit(job)

    # --- restart ------------------------------------------------------------------------------

    def _recount_arrays(self, loaded: list[Job]) -> None:
        super()._recount_arrays(loaded)
        parents = [job for job in loaded if job.is_multinode_parent]
        wanted = [
            mn.node_job_id(p.id, i)
            for p in parents
            for i in range(int((p.spec.node_properties or {})["numNodes"]))
            if mn.node_job_id(p.id, i) not in self.jobs
        ]
        finished: list[Job] = []
        for start in range(0, len(wanted), 500):
            finished.extend(self._load_nodes(wanted[start : start + 500]))
        self._track([*parents, *(j for j in loaded if j.is_node), *finished])

    def _load_nodes(self, ids: list[str]) -> list[Job]:
        return [from_record(record) for record in self.store.get_jobs(ids)]

    def _reattach(self, job: Job, known: KnownAttempt | None) -> int:
        if job.is_multinode_parent:
            return 0  # runs nothing itself: its nodes are followed
        return super()._reattach(job, known)

    def _abandon_attempt(self, job: Job, now: int) -> None:
        if job.is_multinode_parent:
            return  # decided by its nodes' ends
        if not job.is_node:
            super()._abandon_attempt(job, now)
            return
        pid = job.current.pid if job.current else None
        if pid:
            _kill_orphan(pid, job.id)
        self._node_ended(job, now, ExitInfo(exit_code=None, reason=SERVER_STOPPED), HOST_TERMINATED)

    def _attempt_lost(self, job: Job, now: int, status_reason: str, stop_reason: str | None) -> None:
        if not job.is_node:
            super()._attempt_lost(job, now, status_reason, stop_reason)
            return
        # A node lost with another server's host: its gang decides, as for any node's end.
        self._node_ended(job, now, ExitInfo(exit_code=None, reason=LOST_REASON), status_reason)

    def _ended_elsewhere(self, job: Job, info: ExitInfo, now: int, status_reason: str, stop_reason: str | None) -> None:
        if not job.is_node:
            super()._ended_elsewhere(job, info, now, status_reason, stop_reason)
            return
        # A node's recorded end on another server's host: its gang decides, as for any node's end.
        self._node_ended(job, now, info, status_reason)

    def recover(self) -> None:
        """Then, per multi-node job still running: its clock, its main node's end if that came first."""
        super().recover()
        now = self.clock.now_ms()
        for parent_id, gang in list(self.gangs.items()):
            parent = self.jobs.get(parent_id)
            if parent is None or parent.status not in _ACTIVE:
                continue
            main = gang.main()
            if parent.status is S.STARTING and main.status is S.RUNNING:
                self._start_parent(parent, main)
            elif parent.status is S.RUNNING:
                self._arm_gang_timeout(parent)
            if gang.main_attempt is None and main.status in TERMINAL and main.attempts:
                # The main node ended before the restart; the nodes it leaves are stopped now.
                gang.main_attempt = main.attempts[-1]
                for node in gang.nodes:
                    if node is not main:
                        self._stop_node(node, MAIN_NODE_EXITED)
            self._settle(parent, gang, now)
