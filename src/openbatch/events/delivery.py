"""The delivery worker: outbox → deliveries → HTTP(S), email and webhook receivers.

One asyncio task. Each pass moves committed events from the job store's outbox
into deliveries (routing them through the rules), then sends what is due. Each
destination (a subscription or a webhook target) gets one job's messages one at
a time in commit order, so a job's events arrive in order, while different jobs'
go out in parallel; a failure holds back that job's messages to that destination
until its retry, per the SNS delivery policy. After the
last retry a delivery is dead: it stays in the log (``GET /openbatch/deliveries``,
``DeliveriesFailed`` in GetSubscriptionAttributes, ``/metrics``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import httpx

from openbatch.clock import Clock
from openbatch.events.service import OUTBOX_TOPIC, EventsService, retry_delay, retry_policy
from openbatch.events.signing import CERT_FILE, Signer
from openbatch.events.store import Delivery, EventsStore, Subscription
from openbatch.store.base import OutboxRecord

logger = logging.getLogger(__name__)
_HTTP_TIMEOUT = 15.0
_MAX_PARALLEL = 16
_OUTBOX_BATCH = 500
_IDLE_SECONDS = 5.0
_BLOCKED_POLL_SECONDS = 1.0
_DELIVERED_RETENTION_MS = 7 * 24 * 3600 * 1000
_WEBHOOK_MAX_RETRIES = 185
_WEBHOOK_MAX_AGE_SECONDS = 86_400


class Outbox(Protocol):
    def read_outbox(self, topic: str, after_id: int = 0, limit: int = 100) -> list[OutboxRecord]: ...

    def delete_outbox(self, topic: str, up_to_id: int) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpSettings:
    """Where email subscriptions are sent: ``smtp://[user:password@]host:port`` (``smtps://`` for TLS)."""

    url: str
    sender: str = "openbatch@localhost"
    starttls: bool = False
    username: str | None = None
    password: str | None = None

    def connect(self) -> smtplib.SMTP:
        parts = urlsplit(self.url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"--smtp-url must look like smtp://host:port, not {self.url!r}")
        if parts.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                parts.hostname, parts.port or 465, timeout=_HTTP_TIMEOUT, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(parts.hostname, parts.port or 25, timeout=_HTTP_TIMEOUT)
            if self.starttls:
                client.starttls(context=ssl.create_default_context())
        username = self.username or (unquote(parts.username) if parts.username else None)
        password = self.password or (unquote(parts.password) if parts.password else None)
        if username:
            client.login(username, password or "")
        return client


@dataclass
class DeliveryStats:
    """Counters for /metrics, by protocol (``http``, ``https``, ``email``, ``email-json``, ``webhook``)."""

    delivered: dict[str, int]
    failed_attempts: dict[str, int]
    dead: dict[str, int]

    def bump(self, counter: dict[str, int], protocol: str) -> None:
        counter[protocol] = counter.get(protocol, 0) + 1


class DeliveryWorker:
    def __init__(
        self,
        service: EventsService,
        store: EventsStore,
        outbox: Outbox | None,
        clock: Clock,
        signer: Signer,
        *,
        smtp: SmtpSettings | None = None,
    ) -> None:
        self.service = service
        self.store = store
        self.outbox = outbox
        self.clock = clock
        self.signer = signer
        self.smtp = smtp
        self.stats = DeliveryStats({}, {}, {})
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._last_prune = 0

    @property
    def signing_cert_url(self) -> str:
        return f"{self.service.public_url}/{CERT_FILE}"

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=_HTTP_TIMEOUT, follow_redirects=False)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="event-delivery")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            try:
                delay = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A broken database connection or a bug must not end delivery for good.
                logger.exception("event delivery pass failed")
                delay = _IDLE_SECONDS
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(delay, 0.01))
            except TimeoutError:
                pass

    async def run_once(self) -> float:
        """Move the outbox, send what is due; return seconds until the next delivery is due."""
        self.drain_outbox()
        now = self.clock.now_ms()
        if now - self._last_prune > 3600_000:
            self.store.prune_delivered(now - _DELIVERED_RETENTION_MS)
            self._last_prune = now
        ready, more = self.store.due_deliveries(now)
        due: dict[tuple[str, str], list[Delivery]] = {}
        for delivery in ready:
            due.setdefault((delivery.destination, delivery.ordering_key), []).append(delivery)
        if due:
            limit = asyncio.Semaphore(_MAX_PARALLEL)
            delivered: list[int] = []

            async def one(rows: list[Delivery]) -> None:
                async with limit:
                    await self._deliver_in_order(rows, delivered)

            try:
                await asyncio.gather(*(one(rows) for rows in due.values()))
            finally:
                # One write for the whole pass; a crash before it only means a second delivery.
                self.store.mark_delivered(delivered, self.clock.now_ms())
            return 0.0
        upcoming = self.store.next_attempt_at()
        if upcoming is None:
            return _IDLE_SECONDS
        delay = (upcoming - self.clock.now_ms()) / 1000
        if more or delay <= 0:
            # Nothing was ready, yet something is due: it waits behind a delivery still to be retried.
            # Poll now and then rather than spin until that retry.
            return _BLOCKED_POLL_SECONDS
        return min(delay, _IDLE_SECONDS)

    def drain_outbox(self) -> None:
        if self.outbox is None:
            return
        for _ in range(100):
            records = self.outbox.read_outbox(OUTBOX_TOPIC, 0, _OUTBOX_BATCH)
            if not records:
                return
            deliveries = []
            for record in records:
                try:
                    deliveries.extend(self.service.route(json.loads(record.body)))
                except ValueError:
                    logger.error("dropping outbox entry %d: not valid JSON", record.id)
            # Deliveries are committed before the outbox entries go: a crash in between
            # delivers twice rather than never (at least once).
            self.store.add_deliveries(deliveries, self.clock.now_ms())
            self.outbox.delete_outbox(OUTBOX_TOPIC, records[-1].id)
            if len(records) < _OUTBOX_BATCH:
                return

    async def _deliver_in_order(self, rows: list[Delivery], delivered: list[int]) -> None:
        """Send ``rows`` (one destination and ordering key) one by one; stop at the first failure."""
        subscription = None
        if rows[0].kind != "webhook":
            subscription = self.store.get_subscription(rows[0].destination)
        protocol = subscription.protocol if subscription else "webhook"
        for delivery in rows:
            if delivery.next_attempt_at > self.clock.now_ms():
                return
            if delivery.kind != "webhook" and subscription is None:
                self._fail(delivery, protocol, "the subscription no longer exists", give_up=True)
                continue
            try:
                await self._send(delivery, subscription)
            except Exception as exc:
                self._fail(delivery, protocol, _describe(exc), subscription=subscription)
                return
            delivered.append(delivery.id)
            self.stats.bump(self.stats.delivered, protocol)

    def _fail(
        self,
        delivery: Delivery,
        protocol: str,
        error: str,
        *,
        subscription: Subscription | None = None,
        give_up: bool = False,
    ) -> None:
        now = self.clock.now_ms()
        failures = delivery.attempts + 1
        delay: float | None
        if give_up:
            delay = None
        elif delivery.kind == "webhook":
            delay = _webhook_delay(delivery, failures, now)
        else:
            topic = self.store.get_topic(subscription.topic_arn) if subscription else None
            delay = retry_delay(retry_policy(topic, subscription), failures)
        self.stats.bump(self.stats.failed_attempts, protocol)
        if delay is None:
            self.stats.bump(self.stats.dead, protocol)
            logger.warning(
                "delivery %d to %s is dead after %d attempts: %s", delivery.id, delivery.destination, failures, error
            )
        else:
            logger.info(
                "delivery %d to %s failed (attempt %d), retrying in %.0f s: %s",
                delivery.id,
                delivery.destination,
                failures,
                delay,
                error,
            )
        self.store.mark_failed(
            delivery.id, error=error, next_attempt_at=None if delay is None else now + int(delay * 1000), now=now
        )

    async def _send(self, delivery: Delivery, subscription: Subscription | None) -> None:
        if subscription is None:
            await self._post(delivery.payload["url"], delivery.payload["body"], {"Content-Type": "application/json"})
            return
        message = self._message(delivery, subscription)
        if subscription.protocol in ("http", "https"):
            raw = subscription.attributes.get("RawMessageDelivery", "false").lower() == "true"
            body = message["Message"] if raw and message["Type"] == "Notification" else json.dumps(message, indent=2)
            headers = {
                "Content-Type": "text/plain; charset=UTF-8",
                "x-amz-sns-message-type": message["Type"],
                "x-amz-sns-message-id": message["MessageId"],
                "x-amz-sns-topic-arn": message["TopicArn"],
                "User-Agent": "Amazon Simple Notification Service Agent",
            }
            if message["Type"] == "Notification":
                headers["x-amz-sns-subscription-arn"] = subscription.arn
            if raw:
                headers["x-amz-sns-rawdelivery"] = "true"
            await self._post(subscription.endpoint, body, headers)
        else:
            await self._email(message, subscription)

    def _message(self, delivery: Delivery, subscription: Subscription) -> dict[str, Any]:
        """The SNS JSON message, fields in SNS's order, signed."""
        payload = delivery.payload
        if delivery.kind == "confirmation":
            message: dict[str, Any] = {
                "Type": payload["Type"],
                "MessageId": delivery.message_id,
                "Token": payload["Token"],
                "TopicArn": payload["TopicArn"],
                "Message": payload["Message"],
                "SubscribeURL": payload["SubscribeURL"],
                "Timestamp": payload["Timestamp"],
            }
        else:
            message = {"Type": "Notification", "MessageId": delivery.message_id, "TopicArn": payload["TopicArn"]}
            if payload.get("Subject") is not None:
                message["Subject"] = payload["Subject"]
            message["Message"] = payload["Message"]
            message["Timestamp"] = payload["Timestamp"]
        message["SignatureVersion"] = "2"
        message["Signature"] = self.signer.sign(message)
        message["SigningCertURL"] = self.signing_cert_url
        if delivery.kind != "confirmation":
            message["UnsubscribeURL"] = self.service.unsubscribe_url(subscription.arn)
            if payload.get("MessageAttributes"):
                message["MessageAttributes"] = payload["MessageAttributes"]
        return message

    async def _post(self, url: str, body: str, headers: dict[str, str]) -> None:
        assert self._client is not None
        response = await self._client.post(url, content=body.encode(), headers=headers)
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"HTTP {response.status_code} from {url}")

    async def _email(self, message: dict[str, Any], subscription: Subscription) -> None:
        if self.smtp is None:
            raise DeliveryError("no SMTP server configured (start the server with --smtp-url)")
        email = EmailMessage()
        email["From"] = self.smtp.sender
        email["To"] = subscription.endpoint
        if message["Type"] == "SubscriptionConfirmation":
            email["Subject"] = "AWS Notification - Subscription Confirmation"
            email.set_content(
                f"You have chosen to subscribe to the topic:\n{message['TopicArn']}\n\n"
                f"To confirm this subscription, click or visit the link below "
                f"(If this was in error no action is necessary):\n{message['SubscribeURL']}\n"
            )
        elif subscription.protocol == "email-json":
            email["Subject"] = message.get("Subject") or "AWS Notification Message"
            email.set_content(json.dumps(message, indent=2))
        else:
            email["Subject"] = message.get("Subject") or "AWS Notification Message"
            email.set_content(
                f"{message['Message']}\n\n--\nIf you wish to stop receiving notifications from this topic, "
                f"please click or visit the link below to unsubscribe:\n{message['UnsubscribeURL']}\n"
            )
        smtp = self.smtp

        def send() -> None:
            with smtp.connect() as client:
                client.send_message(email)

        # smtplib blocks: keep it off the event loop.
        await asyncio.to_thread(send)


class DeliveryError(Exception):
    pass


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, DeliveryError) else text


def _webhook_delay(delivery: Delivery, failures: int, now: int) -> float | None:
    """EventBridge's target retry policy: exponential backoff within MaximumRetryAttempts / MaximumEventAgeInSeconds."""
    retry = delivery.payload.get("retry") or {}
    attempts = int(retry.get("MaximumRetryAttempts", _WEBHOOK_MAX_RETRIES))
    max_age = int(retry.get("MaximumEventAgeInSeconds", _WEBHOOK_MAX_AGE_SECONDS))
    if failures > attempts:
        return None
    delay = min(2.0 ** (failures - 1), 60.0)
    created = int(delivery.payload.get("created_at", delivery.created_at))
    if now + delay * 1000 - created > max_age * 1000:
        return None
    return delay
