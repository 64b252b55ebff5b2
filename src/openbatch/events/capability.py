"""The events capability as the server composes it: store, service, delivery worker and routes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from openbatch.clock import Clock
from openbatch.domain.job import Job
from openbatch.events.api import AwsRouter, EventBridgeApi, Handler, SnsApi
from openbatch.events.delivery import DeliveryWorker, Outbox, SmtpSettings
from openbatch.events.service import OUTBOX_TOPIC, EventsService
from openbatch.events.signing import CERT_FILE, Signer
from openbatch.events.store import DEAD, PENDING, EventsStore
from openbatch.observability.metrics import DeliveryFigures
from openbatch.store.sql import SqlStore

JobDetail = Callable[[Job], dict[str, Any]]


class EventsCapability:
    """Built with the app (routes must exist before start-up); ``start`` runs after the store is migrated."""

    def __init__(
        self,
        *,
        store: SqlStore,
        clock: Clock,
        region: str,
        account: str,
        public_url: str,
        data_dir: Path,
        smtp: SmtpSettings | None = None,
    ) -> None:
        self.job_store = store
        self.clock = clock
        self.region = region
        self.account = account
        self.public_url = public_url
        self.smtp = smtp
        self.store = EventsStore(store.engine)
        self.signer = Signer(data_dir / "sns")
        self._service: EventsService | None = None
        self._worker: DeliveryWorker | None = None
        self._router: AwsRouter | None = None

    @property
    def service(self) -> EventsService:
        if self._service is None:
            raise RuntimeError("the events capability has not been started")
        return self._service

    @property
    def worker(self) -> DeliveryWorker:
        if self._worker is None:
            raise RuntimeError("the events capability has not been started")
        return self._worker

    def start(self, engine: Any, job_detail: Callable[[], JobDetail], logs: Handler | None = None) -> None:
        """Load rules and subscriptions, hook into the engine and start delivering.

        ``engine`` offers ``add_outbox_source`` and ``add_status_listener``;
        ``job_detail()`` returns a function rendering a job as DescribeJobs does
        (called once per batch of changes).
        """
        service = EventsService(
            self.store, self.clock, region=self.region, account=self.account, public_url=self.public_url
        )
        outbox: Outbox = self.job_store
        worker = DeliveryWorker(service, self.store, outbox, self.clock, self.signer, smtp=self.smtp)
        service.wake = worker.wake
        self._service, self._worker = service, worker
        self._router = AwsRouter(EventBridgeApi(service), SnsApi(service), logs)

        def committed(changes: Any) -> None:
            # Outbox entries of this batch are committed now: let the worker move them.
            if service.has_rules:
                worker.wake()

        engine.add_outbox_source(service.outbox_source(job_detail))
        engine.add_status_listener(committed)
        worker.start()

    async def stop(self) -> None:
        if self._worker is not None:
            await self._worker.stop()
        self.store.close()

    def routes(self, logs: Handler | None = None) -> list[Route]:
        """``/`` (EventBridge, SNS and, through ``logs``, CloudWatch Logs), the signing certificate and
        the delivery log."""

        async def root(request: Request) -> Response:
            if self._router is None:
                return Response("starting", status_code=503)
            if self._router.logs is None:
                self._router.logs = logs
            return await self._router.handle(request)

        async def certificate(request: Request) -> Response:
            return Response(self.signer.certificate_pem, media_type="application/x-pem-file")

        return [
            Route("/", root, methods=["GET", "POST"]),
            Route(f"/{CERT_FILE}", certificate, methods=["GET"]),
            Route("/openbatch/deliveries", self._deliveries, methods=["GET"]),
        ]

    async def _deliveries(self, request: Request) -> Response:
        """The delivery log (an OpenBatch extension): ``?state=DEAD|PENDING|DELIVERED&destination=ARN&after=ID``."""
        params = request.query_params
        state = params.get("state")
        if state is not None and state not in (PENDING, DEAD, "DELIVERED"):
            return JSONResponse({"message": "state must be PENDING, DELIVERED or DEAD"}, status_code=400)
        try:
            after = int(params.get("after", "0"))
            limit = min(max(int(params.get("limit", "100")), 1), 1000)
        except ValueError:
            return JSONResponse({"message": "after and limit must be integers"}, status_code=400)
        rows = self.store.list_deliveries(
            state=state, destination=params.get("destination"), after_id=after, limit=limit
        )
        return JSONResponse(
            {
                "deliveries": [
                    {
                        "id": d.id,
                        "destination": d.destination,
                        "kind": d.kind,
                        "messageId": d.message_id,
                        "state": d.state,
                        "attempts": d.attempts,
                        "nextAttemptAt": d.next_attempt_at if d.state == PENDING else None,
                        "lastError": d.last_error,
                        "createdAt": d.created_at,
                        "updatedAt": d.updated_at,
                    }
                    for d in rows
                ],
                "nextAfter": rows[-1].id if len(rows) == limit else None,
            }
        )

    def figures(self) -> DeliveryFigures:
        counts = self.store.count_deliveries()
        outbox = len(self.job_store.read_outbox(OUTBOX_TOPIC, 0, 10_000))
        stats = self._worker.stats if self._worker else None
        return DeliveryFigures(
            backlog=outbox + counts[PENDING],
            delivered=dict(stats.delivered) if stats else {},
            failed_attempts=dict(stats.failed_attempts) if stats else {},
            dead=counts[DEAD],
        )
