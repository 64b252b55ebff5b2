"""Persistence of rules, targets, topics, subscriptions and deliveries (SQLAlchemy Core).

Uses its own connection on the job store's engine. Every method commits before
returning, like the job store, and is called from the event loop's thread only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError

from openbatch.events.tables import events_rules, events_targets, sns_deliveries, sns_subscriptions, sns_topics

PENDING = "PENDING"
DELIVERED = "DELIVERED"
DEAD = "DEAD"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    name: str
    arn: str
    event_pattern: str
    state: str
    description: str | None
    created_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    rule: str
    target_id: str
    arn: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Topic:
    name: str
    arn: str
    attributes: dict[str, str]
    created_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription:
    arn: str
    topic_arn: str
    protocol: str
    endpoint: str
    token: str
    confirmed: bool
    attributes: dict[str, str]
    created_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NewDelivery:
    destination: str
    kind: str
    message_id: str
    payload: dict[str, Any]
    ordering_key: str = ""
    """Deliveries to one destination with the same key are sent one at a time, in order."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    id: int
    destination: str
    ordering_key: str
    kind: str
    message_id: str
    payload: dict[str, Any]
    state: str
    attempts: int
    next_attempt_at: int
    last_error: str | None
    created_at: int
    updated_at: int


def _rule(row: Any) -> Rule:
    return Rule(
        name=row.name,
        arn=row.arn,
        event_pattern=row.event_pattern,
        state=row.state,
        description=row.description,
        created_at=row.created_at,
    )


def _subscription(row: Any) -> Subscription:
    return Subscription(
        arn=row.arn,
        topic_arn=row.topic_arn,
        protocol=row.protocol,
        endpoint=row.endpoint,
        token=row.token,
        confirmed=bool(row.confirmed),
        attributes=json.loads(row.attributes),
        created_at=row.created_at,
    )


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        destination=row.destination,
        ordering_key=row.ordering_key,
        kind=row.kind,
        message_id=row.message_id,
        payload=json.loads(row.payload),
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class EventsStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        if self._conn is None or self._conn.closed:
            self._conn = self.engine.connect()
        conn = self._conn
        try:
            with conn.begin():
                yield conn
        except DBAPIError as exc:
            if exc.connection_invalidated or conn.invalidated:
                conn.close()
                self._conn = None
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- rules and targets ----------------------------------------------------------

    def put_rule(self, rule: Rule) -> None:
        with self._begin() as conn:
            values: dict[str, Any] = {
                "arn": rule.arn,
                "event_pattern": rule.event_pattern,
                "state": rule.state,
                "description": rule.description,
            }
            updated = conn.execute(update(events_rules).where(events_rules.c.name == rule.name).values(**values))
            if updated.rowcount == 0:
                conn.execute(insert(events_rules).values(name=rule.name, created_at=rule.created_at, **values))

    def get_rule(self, name: str) -> Rule | None:
        with self._begin() as conn:
            row = conn.execute(select(events_rules).where(events_rules.c.name == name)).first()
        return _rule(row) if row else None

    def list_rules(self, prefix: str | None = None, after: str | None = None, limit: int | None = None) -> list[Rule]:
        query = select(events_rules).order_by(events_rules.c.name)
        if prefix:
            query = query.where(events_rules.c.name.startswith(prefix, autoescape=True))
        if after is not None:
            query = query.where(events_rules.c.name > after)
        if limit is not None:
            query = query.limit(limit)
        with self._begin() as conn:
            return [_rule(row) for row in conn.execute(query)]

    def set_rule_state(self, name: str, state: str) -> bool:
        with self._begin() as conn:
            result = conn.execute(update(events_rules).where(events_rules.c.name == name).values(state=state))
            return result.rowcount > 0

    def delete_rule(self, name: str) -> None:
        with self._begin() as conn:
            conn.execute(delete(events_rules).where(events_rules.c.name == name))

    def put_targets(self, rule: str, targets: Sequence[Target]) -> None:
        with self._begin() as conn:
            for target in targets:
                key = (events_targets.c.rule == rule) & (events_targets.c.target_id == target.target_id)
                conn.execute(delete(events_targets).where(key))
                conn.execute(
                    insert(events_targets).values(
                        rule=rule, target_id=target.target_id, arn=target.arn, body=json.dumps(target.body)
                    )
                )

    def remove_targets(self, rule: str, ids: Sequence[str]) -> None:
        with self._begin() as conn:
            conn.execute(
                delete(events_targets).where((events_targets.c.rule == rule) & events_targets.c.target_id.in_(ids))
            )

    def list_targets(self, rule: str | None = None) -> list[Target]:
        query = select(events_targets).order_by(events_targets.c.rule, events_targets.c.target_id)
        if rule is not None:
            query = query.where(events_targets.c.rule == rule)
        with self._begin() as conn:
            return [
                Target(rule=row.rule, target_id=row.target_id, arn=row.arn, body=json.loads(row.body))
                for row in conn.execute(query)
            ]

    # --- topics and subscriptions ---------------------------------------------------

    def create_topic(self, topic: Topic) -> Topic:
        """Create ``topic`` unless one of that name exists; return the stored one (CreateTopic is idempotent)."""
        with self._begin() as conn:
            row = conn.execute(select(sns_topics).where(sns_topics.c.name == topic.name)).first()
            if row is not None:
                return Topic(
                    name=row.name, arn=row.arn, attributes=json.loads(row.attributes), created_at=row.created_at
                )
            conn.execute(
                insert(sns_topics).values(
                    name=topic.name, arn=topic.arn, attributes=json.dumps(topic.attributes), created_at=topic.created_at
                )
            )
        return topic

    def get_topic(self, arn: str) -> Topic | None:
        with self._begin() as conn:
            row = conn.execute(select(sns_topics).where(sns_topics.c.arn == arn)).first()
        if row is None:
            return None
        return Topic(name=row.name, arn=row.arn, attributes=json.loads(row.attributes), created_at=row.created_at)

    def list_topics(self, after: str | None = None, limit: int = 100) -> list[Topic]:
        query = select(sns_topics).order_by(sns_topics.c.arn).limit(limit)
        if after is not None:
            query = query.where(sns_topics.c.arn > after)
        with self._begin() as conn:
            return [
                Topic(name=r.name, arn=r.arn, attributes=json.loads(r.attributes), created_at=r.created_at)
                for r in conn.execute(query)
            ]

    def set_topic_attributes(self, arn: str, attributes: dict[str, str]) -> None:
        with self._begin() as conn:
            conn.execute(update(sns_topics).where(sns_topics.c.arn == arn).values(attributes=json.dumps(attributes)))

    def delete_topic(self, arn: str) -> None:
        with self._begin() as conn:
            conn.execute(delete(sns_subscriptions).where(sns_subscriptions.c.topic_arn == arn))
            conn.execute(delete(sns_topics).where(sns_topics.c.arn == arn))

    def insert_subscription(self, sub: Subscription, confirmation: NewDelivery | None) -> None:
        """Store ``sub`` and queue its confirmation message in the same transaction."""
        with self._begin() as conn:
            conn.execute(
                insert(sns_subscriptions).values(
                    arn=sub.arn,
                    topic_arn=sub.topic_arn,
                    protocol=sub.protocol,
                    endpoint=sub.endpoint,
                    token=sub.token,
                    confirmed=sub.confirmed,
                    attributes=json.dumps(sub.attributes),
                    created_at=sub.created_at,
                )
            )
            if confirmation is not None:
                _insert_deliveries(conn, [confirmation], sub.created_at)

    def get_subscription(self, arn: str) -> Subscription | None:
        with self._begin() as conn:
            row = conn.execute(select(sns_subscriptions).where(sns_subscriptions.c.arn == arn)).first()
        return _subscription(row) if row else None

    def find_subscription(self, topic_arn: str, protocol: str, endpoint: str) -> Subscription | None:
        query = select(sns_subscriptions).where(
            (sns_subscriptions.c.topic_arn == topic_arn)
            & (sns_subscriptions.c.protocol == protocol)
            & (sns_subscriptions.c.endpoint == endpoint)
        )
        with self._begin() as conn:
            row = conn.execute(query).first()
        return _subscription(row) if row else None

    def list_subscriptions(
        self, topic_arn: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[Subscription]:
        query = select(sns_subscriptions).order_by(sns_subscriptions.c.arn).limit(limit)
        if topic_arn is not None:
            query = query.where(sns_subscriptions.c.topic_arn == topic_arn)
        if after is not None:
            query = query.where(sns_subscriptions.c.arn > after)
        with self._begin() as conn:
            return [_subscription(row) for row in conn.execute(query)]

    def confirm_subscription(self, arn: str) -> None:
        with self._begin() as conn:
            conn.execute(update(sns_subscriptions).where(sns_subscriptions.c.arn == arn).values(confirmed=True))

    def set_subscription_attributes(self, arn: str, attributes: dict[str, str]) -> None:
        with self._begin() as conn:
            conn.execute(
                update(sns_subscriptions)
                .where(sns_subscriptions.c.arn == arn)
                .values(attributes=json.dumps(attributes))
            )

    def delete_subscription(self, arn: str) -> None:
        with self._begin() as conn:
            conn.execute(delete(sns_subscriptions).where(sns_subscriptions.c.arn == arn))
            # Undelivered messages to a removed subscription can never be delivered.
            conn.execute(
                update(sns_deliveries)
                .where((sns_deliveries.c.destination == arn) & (sns_deliveries.c.state == PENDING))
                .values(state=DEAD, last_error="the subscription was deleted")
            )

    # --- deliveries -----------------------------------------------------------------

    def add_deliveries(self, deliveries: Sequence[NewDelivery], now: int) -> None:
        if not deliveries:
            return
        with self._begin() as conn:
            _insert_deliveries(conn, deliveries, now)

    def due_deliveries(self, now: int, limit: int = 500) -> tuple[list[Delivery], bool]:
        """Pending deliveries due by ``now`` whose (destination, key) has nothing older waiting, in id order.

        The second value says whether ``limit`` cut the candidates short. A failed
        delivery pushes back its whole (destination, key) group (``mark_failed``), so a
        receiver that is down does not fill the candidates and starve the others.
        """
        due = sns_deliveries.c.state == PENDING
        query = select(sns_deliveries).where(due & (sns_deliveries.c.next_attempt_at <= now))
        with self._begin() as conn:
            rows = [_delivery(row) for row in conn.execute(query.order_by(sns_deliveries.c.id).limit(limit))]
            if not rows:
                return [], False
            destinations = {row.destination for row in rows}
            heads_query = (
                select(sns_deliveries.c.destination, sns_deliveries.c.ordering_key, func.min(sns_deliveries.c.id))
                .where(due & sns_deliveries.c.destination.in_(destinations))
                .group_by(sns_deliveries.c.destination, sns_deliveries.c.ordering_key)
            )
            heads = {(d, k): int(first) for d, k, first in conn.execute(heads_query)}
        firsts: dict[tuple[str, str], int] = {}
        for row in rows:
            firsts.setdefault((row.destination, row.ordering_key), row.id)
        ready = [
            row
            for row in rows
            if heads.get((row.destination, row.ordering_key)) == firsts[(row.destination, row.ordering_key)]
        ]
        return ready, len(rows) >= limit

    def next_attempt_at(self) -> int | None:
        with self._begin() as conn:
            value = conn.execute(
                select(func.min(sns_deliveries.c.next_attempt_at)).where(sns_deliveries.c.state == PENDING)
            ).scalar()
        return None if value is None else int(value)

    def mark_delivered(self, ids: Sequence[int], now: int) -> None:
        if not ids:
            return
        with self._begin() as conn:
            conn.execute(
                update(sns_deliveries)
                .where(sns_deliveries.c.id.in_(ids))
                .values(state=DELIVERED, attempts=sns_deliveries.c.attempts + 1, updated_at=now, last_error=None)
            )

    def mark_failed(self, delivery_id: int, *, error: str, next_attempt_at: int | None, now: int) -> None:
        """Record a failed attempt; ``next_attempt_at=None`` gives up (the delivery is dead)."""
        values: dict[str, Any] = {
            "attempts": sns_deliveries.c.attempts + 1,
            "updated_at": now,
            "last_error": error[:2000],
        }
        if next_attempt_at is None:
            values["state"] = DEAD
        else:
            values["next_attempt_at"] = next_attempt_at
        with self._begin() as conn:
            conn.execute(update(sns_deliveries).where(sns_deliveries.c.id == delivery_id).values(**values))
            if next_attempt_at is not None:
                # What waits behind it waits as long: it is not due before the retry.
                row = conn.execute(
                    select(sns_deliveries.c.destination, sns_deliveries.c.ordering_key).where(
                        sns_deliveries.c.id == delivery_id
                    )
                ).first()
                if row is not None:
                    conn.execute(
                        update(sns_deliveries)
                        .where(
                            (sns_deliveries.c.state == PENDING)
                            & (sns_deliveries.c.destination == row.destination)
                            & (sns_deliveries.c.ordering_key == row.ordering_key)
                            & (sns_deliveries.c.id > delivery_id)
                            & (sns_deliveries.c.next_attempt_at < next_attempt_at)
                        )
                        .values(next_attempt_at=next_attempt_at)
                    )

    def list_deliveries(
        self, *, state: str | None = None, destination: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[Delivery]:
        query = select(sns_deliveries).where(sns_deliveries.c.id > after_id).order_by(sns_deliveries.c.id).limit(limit)
        if state is not None:
            query = query.where(sns_deliveries.c.state == state)
        if destination is not None:
            query = query.where(sns_deliveries.c.destination == destination)
        with self._begin() as conn:
            return [_delivery(row) for row in conn.execute(query)]

    def count_deliveries(self, destination: str | None = None) -> dict[str, int]:
        query = select(sns_deliveries.c.state, func.count()).group_by(sns_deliveries.c.state)
        if destination is not None:
            query = query.where(sns_deliveries.c.destination == destination)
        with self._begin() as conn:
            counts = {state: int(n) for state, n in conn.execute(query)}
        return {state: counts.get(state, 0) for state in (PENDING, DELIVERED, DEAD)}

    def prune_delivered(self, before: int) -> None:
        """Forget successful deliveries older than ``before``: the log keeps failures longer."""
        with self._begin() as conn:
            conn.execute(
                delete(sns_deliveries).where(
                    (sns_deliveries.c.state == DELIVERED) & (sns_deliveries.c.updated_at < before)
                )
            )


def _insert_deliveries(conn: Connection, deliveries: Sequence[NewDelivery], now: int) -> None:
    conn.execute(
        insert(sns_deliveries),
        [
            {
                "destination": d.destination,
                "ordering_key": d.ordering_key,
                "kind": d.kind,
                "message_id": d.message_id,
                "payload": json.dumps(d.payload, separators=(",", ":")),
                "state": PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "last_error": None,
                "created_at": now,
                "updated_at": now,
            }
            for d in deliveries
        ],
    )
