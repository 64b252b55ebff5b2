"""The events store and routing on SQLite and PostgreSQL: rules, topics, subscriptions, the delivery queue."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from openbatch.clock import FakeClock
from openbatch.events.service import EventsError, EventsService
from openbatch.events.store import DEAD, DELIVERED, PENDING, EventsStore, NewDelivery
from openbatch.store.sql import SqlStore


@pytest.fixture
def service(migrated_store: SqlStore) -> Iterator[EventsService]:
    events = EventsStore(migrated_store.engine)
    try:
        yield EventsService(
            events, FakeClock(), region="us-east-1", account="123456789012", public_url="http://127.0.0.1:1"
        )
    finally:
        events.close()


def test_routing_fans_out_to_confirmed_subscriptions_only(service: EventsService) -> None:
    topic = service.create_topic("alerts", {})
    assert service.create_topic("alerts", {}) == topic  # CreateTopic is idempotent
    service.put_rule({"Name": "failed", "EventPattern": json.dumps({"detail": {"status": ["FAILED"]}})})
    service.put_targets({"Rule": "failed", "Targets": [{"Id": "t", "Arn": topic}]})
    assert service.subscribe(topic, "http", "http://127.0.0.1:9/a", {}, False) == "pending confirmation"
    pending_arn = service.subscribe(topic, "email", "ops@example.com", {}, True)
    confirmations = service.store.list_deliveries(state=PENDING)
    assert [d.kind for d in confirmations] == ["confirmation", "confirmation"]
    token = next(d.payload["Token"] for d in confirmations if d.destination != pending_arn)
    with pytest.raises(EventsError):
        service.confirm_subscription(topic, "wrong")
    confirmed = service.confirm_subscription(topic, token)

    assert service.route({"detail": {"status": "SUCCEEDED"}}) == []
    [delivery] = service.route({"detail": {"status": "FAILED"}, "id": "e1"})
    assert delivery.destination == confirmed and delivery.kind == "notification"
    assert json.loads(delivery.payload["Message"])["id"] == "e1"

    service.accept([delivery])
    rows = service.store.list_deliveries(destination=confirmed)
    service.store.mark_failed(rows[-1].id, error="HTTP 503", next_attempt_at=None, now=5)
    assert service.store.count_deliveries(confirmed) == {PENDING: 1, DELIVERED: 0, DEAD: 1}
    service.store.mark_delivered([rows[0].id], now=6)
    assert service.get_subscription_attributes(confirmed)["DeliveriesFailed"] == "1"
    assert service.get_topic_attributes(topic)["SubscriptionsConfirmed"] == "1"

    service.set_rule_state({"Name": "failed"}, "DISABLED")
    assert service.route({"detail": {"status": "FAILED"}}) == []
    with pytest.raises(EventsError):
        service.delete_rule({"Name": "failed"})
    service.remove_targets({"Rule": "failed", "Ids": ["t"]})
    service.delete_rule({"Name": "failed"})
    service.unsubscribe(confirmed)
    service.delete_topic(topic)
    assert service.list_topics(None) == ([], None)
    assert service.store.list_subscriptions() == []


def test_a_waiting_destination_does_not_hold_back_others(service: EventsService) -> None:
    store = service.store

    def new(destination: str, key: str, n: int) -> NewDelivery:
        return NewDelivery(destination=destination, kind="webhook", message_id=str(n), payload={}, ordering_key=key)

    store.add_deliveries([new("down", "job-1", n) for n in range(30)], now=1000)
    store.add_deliveries([new("down", "job-2", 0), new("up", "job-3", 0)], now=1001)
    ready, more = store.due_deliveries(now=2000, limit=10)
    assert more and {d.ordering_key for d in ready} == {"job-1"}
    head = ready[0]
    store.mark_failed(head.id, error="HTTP 503", next_attempt_at=60_000, now=2000)
    # Everything behind the failed head waits as long; other keys and destinations go ahead.
    ready, more = store.due_deliveries(now=2001, limit=10)
    assert not more and sorted((d.destination, d.ordering_key) for d in ready) == [("down", "job-2"), ("up", "job-3")]
    assert store.next_attempt_at() == 1001
    store.mark_delivered([d.id for d in ready], now=2002)
    assert store.due_deliveries(now=2003, limit=10) == ([], False)
    assert store.next_attempt_at() == 60_000
    ready, _ = store.due_deliveries(now=60_000, limit=100)
    assert [d.id for d in ready] == [head.id + n for n in range(30)]
