"""Composition root: builds the store, scheduler, executor and services for one server process."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from openbatch.api.limits import malloc_trim
from openbatch.api.operations import Reply
from openbatch.clock import SystemClock
from openbatch.cluster.leadership import instance_name
from openbatch.config import Settings
from openbatch.domain.arns import ResourceType
from openbatch.executors.gpu import detect_gpus
from openbatch.executors.local import Sandbox
from openbatch.executors.ray.environments import RayEnvironments, RayNodePlacement
from openbatch.executors.router import ExecutorRouter
from openbatch.fidelity.consumables import ConsumableCapacity, EngineConsumableUsage
from openbatch.logs.janitor import Janitor
from openbatch.logs.store import LogStore
from openbatch.scheduler.capacity import host_memory_mib
from openbatch.scheduler.engine import JobEngine
from openbatch.scheduler.registry import Registry
from openbatch.service import compute_environments as ces
from openbatch.service import job_queues as jqs
from openbatch.service import request_models as s
from openbatch.service.consumable_resources import ConsumableUsage, NoUsage
from openbatch.service.context import Caller, ServiceContext
from openbatch.service.jobs import JobService
from openbatch.store.sql import SqlStore
from openbatch.supervisor.client import OutcomeTarget, SupervisorExecutor
from openbatch.supervisor.outcomes import RecordedOutcomes
from openbatch.workflows.capability import Workflows

logger = logging.getLogger(__name__)
DEFAULT_NAME = "default"


class Runtime:
    """Everything one ``openbatch server`` process runs. ``start`` must run inside the event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # The store, keys and logs are the server's alone: jobs run as another user (see Settings.job_identity).
        settings.data_dir.chmod(0o700)
        self.store = SqlStore(settings.resolved_database_url)
        self.clock = SystemClock()
        self.caller = Caller(region=settings.region, account=settings.account_id)
        self.ctx = ServiceContext(store=self.store, clock=self.clock, default_caller=self.caller)
        self.registry = Registry(self.store, self.ctx.host_vcpus)
        # 0: no cap (and none left over from an earlier run); writers in other processes read it too.
        self.log_store = LogStore(settings.logs_dir, max_stream_bytes=settings.max_log_bytes_per_job or 0)
        self._janitor: Janitor | None = None
        self._jobs: JobService | None = None
        self.workflows: Workflows | None = None
        self.engine_hooks: list[Callable[[JobEngine], None]] = []
        """Called with the engine before it starts: capabilities register their engine hooks here."""
        self._consumable_usage: ConsumableUsage = NoUsage()

    @property
    def jobs(self) -> JobService:
        if self._jobs is None:
            raise RuntimeError("the runtime has not been started")
        return self._jobs

    @property
    def job_tags(self) -> JobService:
        return self.jobs

    @property
    def consumable_usage(self) -> ConsumableUsage:
        return self._consumable_usage

    def started_workflows(self) -> Workflows:
        if self.workflows is None:
            raise RuntimeError("the runtime has not been started")
        return self.workflows

    def job_operation(self, name: str, caller: Caller, request: Any) -> Reply:
        return self.jobs.dispatch(name, caller, request)

    async def start(self) -> None:
        self.store.migrate()
        if self.settings.create_defaults:
            self._create_defaults()
        identity = self.settings.job_identity()
        sandbox = None
        if identity is None and os.geteuid() != 0 and self.settings.container_runtime == "none":
            # Jobs share this server's uid: namespaces are what keeps them from its files and memory.
            sandbox = Sandbox.probe((self.settings.data_dir,))
        executor = SupervisorExecutor(
            self.settings.supervisor_dir,
            self.settings.logs_dir,
            kill_grace_seconds=self.settings.kill_grace_seconds,
            run_as=identity,
            sandbox_hidden=sandbox.hidden if sandbox is not None else (),
            # Another server may take over this one's attempts: they must not outlive it for long.
            fence_seconds=self.settings.lost_host_seconds / 4 if self.settings.clustered else None,
            # And the outcome of one that ends while this server is gone must reach the next leader.
            outcomes=self._outcome_target(),
        )
        await executor.start()
        self._log_isolation(sandboxed=sandbox is not None)
        # Compute environments bound to a Ray cluster (by tags, or --ray-address for ``default``) run there.
        router = ExecutorRouter(executor, lambda _name: None)
        ray_environments = RayEnvironments(
            self.registry,
            self.log_store,
            router,
            default_address=self.settings.ray_address,
            owner=self.settings.resolved_database_url,
            kill_grace_seconds=self.settings.kill_grace_seconds,
        )
        router.choose = ray_environments.executor_for
        await ray_environments.start()
        capacity = ConsumableCapacity(memory_mib=host_memory_mib(), gpus=detect_gpus(), store=self.store)
        capacity.pool_of = ray_environments.pool_for
        self.ctx.listeners.append(capacity.forget)
        usage = EngineConsumableUsage(capacity, self.caller.arns, self.registry)
        self._consumable_usage = usage
        engine = JobEngine(
            store=self.store,
            clock=self.clock,
            executor=router,
            registry=self.registry,
            capacity=capacity,
            work_dir=self.settings.work_dir,
            kill_grace_seconds=self.settings.kill_grace_seconds,
        )
        ray_environments.set_wake(engine.wake)
        ray_environments.set_started(engine.attempt_started)
        engine.node_placement = RayNodePlacement(ray_environments, capacity, engine.node_placement)
        if self.settings.clustered:
            engine.host = instance_name(self.settings.data_dir)
            engine.lost_host_seconds = self.settings.lost_host_seconds
            engine.recorded_outcomes = RecordedOutcomes(self.store)
        self._jobs = JobService(self.ctx, engine)
        usage.live_jobs = engine.jobs
        engine.add_status_listener(usage.on_status_changes)
        self.ctx.listeners.append(engine.resources_changed)
        # Before the hooks: capabilities that hook into the engine may hook into workflows too.
        self.workflows = Workflows(self._jobs, self.store, self.caller, self.settings.data_dir)
        for hook in self.engine_hooks:
            hook(engine)
        engine.start()
        # Recovery decoded a record per unfinished job and scanned indexes: hand that garbage's pages
        # and the page caches the scans filled back before serving.
        self.store.release_caches()
        trim = malloc_trim()
        if trim is not None:
            trim()
        self.workflows.start()
        retention = self.settings.work_dir_retention_hours
        self._janitor = Janitor(
            self.log_store,
            self.settings.work_dir,
            work_retention_seconds=retention * 3600 if retention is not None else None,
            is_live=engine.jobs.__contains__,
        )
        self._janitor.start()

    def _outcome_target(self) -> OutcomeTarget | None:
        if not self.settings.clustered:
            return None
        return OutcomeTarget(
            self.settings.resolved_database_url,
            instance_name(self.settings.data_dir),
            # The next leader declares the attempts lost this long after taking over, which may come
            # some time after this server's end: twice that covers it.
            keep_seconds=2 * self.settings.lost_host_seconds,
        )

    def attempt_outcomes_recorded(self) -> None:
        """A supervisor recorded attempt outcomes in the database: applied here if this server leads."""
        if self._jobs is not None:
            self._jobs.engine.outcomes_recorded()

    async def stop(self) -> None:
        if self._janitor is not None:
            await self._janitor.stop()
        if self.workflows is not None:
            await self.workflows.stop()
        if self._jobs is not None:
            await self._jobs.engine.stop()
        self.store.close()

    def _log_isolation(self, *, sandboxed: bool) -> None:
        """Say plainly which isolation is in force: who jobs run as, and what that hides from them."""
        identity = self.settings.job_identity()
        if sandboxed:
            who = (
                "this server's user, in bubblewrap: their own PID namespace (the server's processes, "
                "environment and memory out of sight) and the data dir hidden"
            )
        elif identity is not None:
            who = f"uid {identity[0]}: the server's environment, memory and data dir are out of their reach"
        elif self.settings.container_runtime != "none":
            who = (
                "this server's user, inside containers (their own root file system and process namespace; "
                "see the container runtime line)"
            )
        else:
            who = (
                "this server's user: they can read what this server can (bubblewrap is not usable here); run "
                "the server as root (jobs then run as nobody) or jobs in containers to wall them off"
            )
        logger.info(
            "jobs run under the supervisor in %s as %s; working directories in %s",
            self.settings.supervisor_dir,
            who,
            self.settings.work_dir,
        )

    def _create_defaults(self) -> None:
        """A compute environment and a job queue named ``default`` on an empty store."""
        if self.store.list_resources(ResourceType.JOB_QUEUE.value, limit=1):
            return
        if self.store.list_resources(ResourceType.COMPUTE_ENVIRONMENT.value, limit=1):
            return
        max_vcpus = self.settings.default_max_vcpus or self.ctx.host_vcpus
        ces.create(
            self.ctx,
            self.caller,
            s.CreateComputeEnvironment.model_validate(
                {
                    "computeEnvironmentName": DEFAULT_NAME,
                    "type": "MANAGED",
                    # instanceRole, instanceTypes and subnets are required by AWS for EC2; this
                    # host stands in for them, so the default carries placeholders.
                    "computeResources": {
                        "type": "EC2",
                        "maxvCpus": max_vcpus,
                        "minvCpus": 0,
                        "instanceTypes": ["optimal"],
                        "subnets": ["subnet-openbatch-local"],
                        "instanceRole": "ecsInstanceRole",
                    },
                }
            ),
        )
        jqs.create(
            self.ctx,
            self.caller,
            s.CreateJobQueue.model_validate(
                {
                    "jobQueueName": DEFAULT_NAME,
                    "priority": 1,
                    "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": DEFAULT_NAME}],
                }
            ),
        )
        logger.info("created compute environment and job queue %r (maxvCpus %s)", DEFAULT_NAME, max_vcpus)
