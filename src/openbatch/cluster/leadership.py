"""Which server runs the scheduler: the holder of a PostgreSQL session advisory lock.

Every server on the database waits for the lock on a connection of its own (``pg_advisory_lock``
blocks in PostgreSQL, so nothing polls). The holder is the *leader*: it starts the runtime (store,
supervisor, scheduler, recovery), then announces the URL where the others reach it in the
``cluster_leader`` row and with ``NOTIFY openbatch_leader`` in the same transaction; the others
(*followers*) ``LISTEN`` and forward the calls they receive to it (``forwarding.py``).

PostgreSQL releases the lock the moment the leader's session ends: when its process dies the
kernel closes the socket and the backend exits at once (a lost host is noticed through TCP
keepalives, set short on that session). The next server in line then gets the lock and takes
over within the time it takes to start a runtime.

The lock is held on the store's own connection, and every write the leader makes goes through it
(``SqlStore.pin``): a write commits only while this server leads, and all of them have committed
before another server can lead. A leader that loses that connection, or cannot confirm from a
connection of its own for ``lost_host_seconds / 2`` that its session still holds the lock, stops
at once (crash-only: its supervisor then kills its attempts; see ``scheduler/lost_hosts.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, text
from sqlalchemy.dialects.postgresql import insert

from openbatch.cluster.tables import cluster_leader
from openbatch.store.sql import SqlStore
from openbatch.supervisor.outcomes import CHANNEL as OUTCOMES_CHANNEL

logger = logging.getLogger(__name__)

LOCK_KEY = 74659
"""The advisory lock whose holder leads (74657 and 74658 serialise numbering and migrations)."""
CHANNEL = "openbatch_leader"
_LOST_EXIT = 70
_KEEPALIVES = ("tcp_keepalives_idle = 5", "tcp_keepalives_interval = 2", "tcp_keepalives_count = 3")
"""PostgreSQL notices a leader whose host vanished (no FIN ever comes) within ~11 s, not hours."""


_HOLDS = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 "
    "AND objid = :key AND objsubid = 1 AND pid = :pid AND granted)"
)


def instance_name(data_dir: Path) -> str:
    """This server as attempts record it: the host, and which of its data dirs (several may share one)."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:6]
    return f"openbatch-{socket.gethostname()}-{digest}"


class Leadership:
    """This server's part in the election. ``start`` and everything else run on the event loop."""

    def __init__(
        self,
        store: SqlStore,
        *,
        instance: str,
        url: str,
        lost_host_seconds: float,
        lead: Callable[[], Awaitable[None]],
        outcomes_recorded: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.instance = instance
        self.url = url.rstrip("/")
        self.lost_host_seconds = lost_host_seconds
        self._lead = lead
        self._outcomes_recorded = outcomes_recorded
        """Called on the loop when a supervisor has recorded attempt outcomes (``supervisor/outcomes.py``)."""
        self.role = "follower"
        """``leader`` once this server's runtime has started and it has announced itself."""
        self.leader_url: str | None = None
        self._changed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._waiting: Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._confirmed = 0.0
        self._check_interval = min(lost_host_seconds / 12, 1.0)

    # --- for the forwarding middleware ----------------------------------------------

    @property
    def leads(self) -> bool:
        return self.role == "leader"

    async def changed(self, timeout: float) -> None:
        """Return when the leader (or this server's role) changes, or after ``timeout``."""
        assert self._changed is not None
        try:
            await asyncio.wait_for(self._changed.wait(), max(timeout, 0.0))
        except TimeoutError:
            pass

    def describe(self) -> dict[str, Any]:
        return {"role": self.role, "instance": self.instance, "url": self.url, "leader": self.leader_url}

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        # The leader row's table, before anyone reads it (the runtime migrates again: a no-op).
        await asyncio.to_thread(self.store.migrate)
        for target, name in ((self._listen, "openbatch-leader-listener"), (self._campaign, "openbatch-candidate")):
            threading.Thread(target=target, name=name, daemon=True).start()

    async def stop(self) -> None:
        self._stopping.set()
        waiting = self._waiting
        if waiting is not None and self.role != "leader":
            try:
                waiting.connection.driver_connection.cancel_safe()  # type: ignore[union-attr]
            except Exception:
                pass
        for task in self._tasks:
            task.cancel()

    # --- threads -----------------------------------------------------------------------

    def _campaign(self) -> None:
        """Wait for the lock, blocking in PostgreSQL; hand the connection that holds it to the loop."""
        while not self._stopping.is_set():
            conn: Connection | None = None
            try:
                conn = self.store.engine.connect()
                for setting in _KEEPALIVES:
                    conn.exec_driver_sql(f"SET {setting}")
                self._waiting = conn
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({LOCK_KEY})")
                conn.commit()
            except Exception as exc:
                self._waiting = None
                if conn is not None:
                    conn.close()
                if self._stopping.is_set():
                    return
                logger.warning("waiting for the leadership failed (%s); trying again", exc)
                time.sleep(1.0)
                continue
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._elected, conn)
            return

    def _listen(self) -> None:
        """Follow the announcements: the row once (at start, or after a reconnect), then each NOTIFY.
        Recorded attempt outcomes likewise: once after (re)connecting, then on each NOTIFY."""
        while not self._stopping.is_set():
            try:
                with self.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.exec_driver_sql(f"LISTEN {CHANNEL}")
                    conn.exec_driver_sql(f"LISTEN {OUTCOMES_CHANNEL}")
                    row = conn.execute(select(cluster_leader.c.url).where(cluster_leader.c.id == 1)).first()
                    self._heard(row.url if row is not None else None)
                    self._outcomes_heard()
                    raw: Any = conn.connection.driver_connection
                    while not self._stopping.is_set():
                        for note in raw.notifies(timeout=1.0):
                            if note.channel == OUTCOMES_CHANNEL:
                                self._outcomes_heard()
                            else:
                                self._heard(note.payload)
            except Exception as exc:
                if self._stopping.is_set():
                    return
                logger.warning("listening for the leader failed (%s); listening again", exc)
                time.sleep(1.0)

    def _heard(self, url: str | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._set_leader, url)

    def _outcomes_heard(self) -> None:
        if self._loop is not None and self._outcomes_recorded is not None:
            self._loop.call_soon_threadsafe(self._outcomes_recorded)

    def _confirm(self, holder: int) -> None:
        """From a connection of its own, off the event loop: is the session holding the lock alive?"""
        while not self._stopping.is_set():
            try:
                with self.store.engine.connect() as conn:
                    while not self._stopping.is_set():
                        asked = time.monotonic()  # the lock was held when the answer was made, after this
                        held = conn.execute(_HOLDS, {"key": LOCK_KEY, "pid": holder}).scalar()
                        conn.commit()
                        if not held:
                            self._give_up("the database session that held the leadership has ended")
                        self._confirmed = asked
                        time.sleep(self._check_interval)
            except Exception as exc:
                logger.warning("could not confirm the leadership: %s", exc)
                time.sleep(self._check_interval)

    def _watchdog(self) -> None:
        """The leader stops if its leadership has not been confirmed for half of ``lost_host_seconds``:
        another server may lead by then, and this one's attempts must be dead before it declares them lost
        (its supervisor kills them a quarter of ``lost_host_seconds`` after this process is gone)."""
        limit = self.lost_host_seconds / 2
        while not self._stopping.is_set():
            time.sleep(self._check_interval)
            silent = time.monotonic() - self._confirmed
            if silent > limit:
                self._give_up(f"the leadership could not be confirmed for {silent:.1f} s")

    # --- on the event loop ---------------------------------------------------------------

    def _set_leader(self, url: str | None) -> None:
        if url is not None and url.rstrip("/") == self.url and not self.leads:
            url = None  # our own announcement from an earlier life: no one to forward to yet
        self.leader_url = url
        self._wake()

    def _wake(self) -> None:
        assert self._changed is not None
        self._changed.set()
        self._changed = asyncio.Event()

    def _elected(self, conn: Connection) -> None:
        self._waiting = None
        if self._stopping.is_set():
            conn.close()
            return
        task = asyncio.get_running_loop().create_task(self._take_over(conn), name="openbatch-take-over")
        self._tasks.append(task)

    async def _take_over(self, conn: Connection) -> None:
        began = time.monotonic()
        logger.warning("this server (%s) leads: starting the scheduler", self.instance)
        self.store.pin(conn, lambda: self._give_up("lost the database session that holds the leadership"))
        holder = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        conn.commit()
        self._confirmed = time.monotonic()
        threading.Thread(target=self._watchdog, name="openbatch-leader-watchdog", daemon=True).start()
        threading.Thread(target=self._confirm, args=(holder,), name="openbatch-leader-check", daemon=True).start()
        try:
            await self._lead()
            with self.store.transaction() as tx:
                now = int(time.time() * 1000)
                values = {"instance": self.instance, "url": self.url, "since": now}
                tx.execute(
                    insert(cluster_leader)
                    .values(id=1, **values)
                    .on_conflict_do_update(index_elements=["id"], set_=values)
                )
                tx.exec_driver_sql("SELECT pg_notify(%(channel)s, %(url)s)", {"channel": CHANNEL, "url": self.url})
        except Exception:
            logger.exception("could not take over the scheduler")
            self._give_up("the runtime did not start")
        self.role = "leader"
        self.leader_url = self.url
        self._wake()
        logger.warning(
            "leading since %.2f s after the lock was granted; announced %s", time.monotonic() - began, self.url
        )

    def _give_up(self, why: str) -> None:
        if self._stopping.is_set():
            return
        logger.critical("%s: stopping this server at once, so that another can lead", why)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(_LOST_EXIT)
