"""The store contract (``openbatch.store.base.Store``), run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from openbatch.config import normalize_database_url
from openbatch.domain.errors import Conflict, NotFound
from openbatch.store.base import Body, JobQuery, JobRecord, Store
from openbatch.store.sql import SqlStore

CE = "compute-environment"
JQ = "job-queue"
ARN = "arn:aws:batch:us-east-1:123456789012:"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'openbatch.db'}"
    return normalize_database_url(request.getfixturevalue("postgres_url"))


@pytest.fixture
def open_store(store_url: str) -> Iterator[Callable[[], SqlStore]]:
    """Opens (and migrates) further stores on the same database; all are closed afterwards."""
    opened: list[SqlStore] = []

    def open_one() -> SqlStore:
        store = SqlStore(store_url)
        opened.append(store)
        store.migrate()
        return store

    try:
        yield open_one
    finally:
        for store in opened:
            store.close()


@pytest.fixture
def store(open_store: Callable[[], SqlStore]) -> Store:
    return open_store()


def _arn(kind: str, name: str) -> str:
    return f"{ARN}{kind}/{name}"


def _insert(store: Store, kind: str, name: str, created_at: int = 1, **body: Any) -> None:
    store.insert_resource(kind, name, _arn(kind, name), created_at, {"name": name, **body})


def _job(
    job_id: str | None = None,
    *,
    queue: str = "q",
    status: str = "SUBMITTED",
    name: str = "job",
    created_at: int = 1000,
    parent_id: str | None = None,
    array_index: int | None = None,
    share: str | None = None,
    body: Body | None = None,
) -> JobRecord:
    job_id = job_id or str(uuid.uuid4())
    return JobRecord(
        id=job_id,
        parent_id=parent_id,
        array_index=array_index,
        queue=queue,
        status=status,
        job_name=name,
        share_identifier=share,
        created_at=created_at,
        body=body if body is not None else {"jobId": job_id, "nested": {"list": [1, "ü", None]}},
    )


def _ids(records: list[JobRecord]) -> list[str]:
    return [r.id for r in records]


# --- schema -------------------------------------------------------------------------------


def test_migrate_is_idempotent(open_store: Callable[[], SqlStore]) -> None:
    store = open_store()
    _insert(store, CE, "kept")
    store.migrate()
    store.migrate()
    second = open_store()  # migrates again, as a restarted server would
    record = second.get_resource(CE, "kept")
    assert record is not None
    assert record.body == {"name": "kept"}


def test_dialect_matches_the_url(store_url: str, store: SqlStore) -> None:
    assert store.dialect == ("sqlite" if store_url.startswith("sqlite") else "postgresql")


# --- resources ------------------------------------------------------------------------------


def test_insert_get_update_delete_resource(store: Store) -> None:
    body = {"computeEnvironmentName": "ce1", "tags": {"ü": "✓"}, "computeResources": {"maxvCpus": 4}}
    inserted = store.insert_resource(CE, "ce1", _arn(CE, "ce1"), 1234, body)
    assert inserted.kind == CE
    assert inserted.name == "ce1"
    assert inserted.arn == _arn(CE, "ce1")
    assert inserted.created_at == 1234
    assert inserted.body == body
    got = store.get_resource(CE, "ce1")
    assert got == inserted
    assert store.get_resource(JQ, "ce1") is None
    assert store.get_resource(CE, "CE1") is None

    store.update_resource(CE, "ce1", {**body, "state": "DISABLED"})
    updated = store.get_resource(CE, "ce1")
    assert updated is not None
    assert updated.body["state"] == "DISABLED"
    assert (updated.seq, updated.created_at, updated.arn) == (inserted.seq, 1234, inserted.arn)

    store.delete_resource(CE, "ce1")
    assert store.get_resource(CE, "ce1") is None
    store.delete_resource(CE, "ce1")  # absent: a no-op


def test_update_missing_resource_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.update_resource(CE, "missing", {})


def test_duplicates_conflict(store: Store) -> None:
    _insert(store, CE, "dup")
    with pytest.raises(Conflict):
        _insert(store, CE, "dup")
    with pytest.raises(Conflict):
        store.insert_resource(JQ, "other", _arn(CE, "dup"), 1, {})
    # Same name, different kind: a different resource.
    _insert(store, JQ, "dup")
    # A failed insert leaves the store usable and unchanged.
    assert [r.name for r in store.list_resources(CE)] == ["dup"]
    assert [r.name for r in store.list_resources(JQ)] == ["dup"]


def test_list_resources_in_insertion_order_with_seq_pagination(store: Store) -> None:
    names = [f"ce-{i:02d}" for i in range(7)]
    for i, name in enumerate(reversed(names)):
        _insert(store, CE, name, created_at=i)
        _insert(store, JQ, f"q-{name}")
    listed = store.list_resources(CE)
    assert [r.name for r in listed] == list(reversed(names))
    seqs = [r.seq for r in listed]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    pages: list[str] = []
    after = 0
    while True:
        page = store.list_resources(CE, after_seq=after, limit=3)
        if not page:
            break
        assert len(page) <= 3
        pages.extend(r.name for r in page)
        after = page[-1].seq
    assert pages == [r.name for r in listed]

    subset = store.list_resources(CE, names=["ce-03", "ce-01", "missing"])
    assert [r.name for r in subset] == ["ce-03", "ce-01"]
    assert store.list_resources(CE, names=[]) == []
    assert [r.name for r in store.list_resources(CE, names=names, after_seq=listed[4].seq, limit=1)] == ["ce-01"]
    assert store.list_resources(CE, after_seq=listed[-1].seq) == []


def test_deleted_names_can_be_reused_and_sort_last(store: Store) -> None:
    _insert(store, CE, "a")
    _insert(store, CE, "b")
    store.delete_resource(CE, "a")
    _insert(store, CE, "a", marker=2)
    assert [(r.name, r.body.get("marker")) for r in store.list_resources(CE)] == [("b", None), ("a", 2)]


# --- job definitions ------------------------------------------------------------------------


def _register(store: Store, name: str, **extra: Any) -> int:
    record = store.insert_job_definition(
        name,
        lambda rev: f"{ARN}job-definition/{name}:{rev}",
        lambda rev: {"jobDefinitionName": name, "revision": rev, "status": "ACTIVE", **extra},
    )
    assert record.name == name
    assert record.status == "ACTIVE"
    assert record.arn == f"{ARN}job-definition/{name}:{record.revision}"
    assert record.body["revision"] == record.revision
    return record.revision


def _deregister(store: Store, name: str, revision: int) -> None:
    record = store.get_job_definition(name, revision)
    assert record is not None
    store.set_job_definition_status(name, revision, "INACTIVE", {**record.body, "status": "INACTIVE"})


def test_revisions_count_up_per_name(store: Store) -> None:
    assert [_register(store, "a") for _ in range(3)] == [1, 2, 3]
    assert _register(store, "b") == 1
    record = store.get_job_definition("a", 2)
    assert record is not None
    assert (record.name, record.revision, record.status) == ("a", 2, "ACTIVE")
    assert record.body == {"jobDefinitionName": "a", "revision": 2, "status": "ACTIVE"}
    assert store.get_job_definition("a", 9) is None
    assert store.get_job_definition("missing", None) is None


def test_revisions_are_never_reused_after_inactive(store: Store) -> None:
    for _ in range(3):
        _register(store, "jd")
    _deregister(store, "jd", 3)
    _deregister(store, "jd", 2)
    assert _register(store, "jd") == 4
    _deregister(store, "jd", 4)
    _deregister(store, "jd", 1)
    assert _register(store, "jd") == 5


def test_latest_active_lookup(store: Store) -> None:
    for _ in range(3):
        _register(store, "jd")
    latest = store.get_job_definition("jd", None)
    assert latest is not None and latest.revision == 3
    _deregister(store, "jd", 3)
    latest = store.get_job_definition("jd", None)
    assert latest is not None and latest.revision == 2
    inactive = store.get_job_definition("jd", 3)
    assert inactive is not None
    assert inactive.status == "INACTIVE"
    assert inactive.body["status"] == "INACTIVE"
    _deregister(store, "jd", 2)
    _deregister(store, "jd", 1)
    assert store.get_job_definition("jd", None) is None


def test_set_status_replaces_the_body(store: Store) -> None:
    _register(store, "jd")
    record = store.get_job_definition("jd", 1)
    assert record is not None
    store.set_job_definition_status("jd", 1, "ACTIVE", {**record.body, "tags": {"k": "v"}})
    again = store.get_job_definition("jd", 1)
    assert again is not None
    assert again.status == "ACTIVE"
    assert again.body["tags"] == {"k": "v"}


def test_list_job_definitions_filters_refs_and_keyset(store: Store) -> None:
    for name in ("b", "a", "c", "a", "b", "a"):
        _register(store, name)
    _deregister(store, "a", 2)

    def keys(**kwargs: Any) -> list[tuple[str, int]]:
        return [(r.name, r.revision) for r in store.list_job_definitions(**kwargs)]

    everything = [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("c", 1)]
    assert keys() == everything
    assert keys(name="a") == [("a", 1), ("a", 2), ("a", 3)]
    assert keys(status="INACTIVE") == [("a", 2)]
    assert keys(name="a", status="ACTIVE") == [("a", 1), ("a", 3)]
    assert keys(refs=[("b", 2), ("a", None)]) == [("a", 1), ("a", 2), ("a", 3), ("b", 2)]
    assert keys(refs=[("c", 9), ("zzz", None)]) == []
    assert keys(refs=[]) == []
    assert keys(after=("a", 2)) == everything[2:]
    assert keys(after=("a", 3), limit=2) == [("b", 1), ("b", 2)]
    assert keys(after=("c", 1)) == []

    paged: list[tuple[str, int]] = []
    after: tuple[str, int] | None = None
    while True:
        page = store.list_job_definitions(after=after, limit=4)
        if not page:
            break
        paged.extend((r.name, r.revision) for r in page)
        after = (page[-1].name, page[-1].revision)
    assert paged == everything


# Several servers may share one PostgreSQL database (SQLite serves exactly one
# process), so number allocation must hold up across connections.


@pytest.fixture
def pg_stores(postgres_url: str) -> Iterator[list[SqlStore]]:
    stores = [SqlStore(normalize_database_url(postgres_url)) for _ in range(4)]
    try:
        stores[0].migrate()
        yield stores
    finally:
        for store in stores:
            store.close()


def test_concurrent_registrations_get_distinct_revisions(pg_stores: list[SqlStore]) -> None:
    stores = pg_stores
    revisions: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def register_many(store: Store) -> None:
        try:
            barrier.wait()
            revisions.extend(_register(store, "shared") for _ in range(5))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=register_many, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert sorted(revisions) == list(range(1, 21))


def test_concurrent_resource_inserts_get_distinct_seqs(pg_stores: list[SqlStore]) -> None:
    stores = pg_stores
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def insert_many(index: int, store: Store) -> None:
        try:
            barrier.wait()
            for i in range(10):
                _insert(store, CE, f"ce-{index}-{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=insert_many, args=(i, s)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    listed = stores[0].list_resources(CE)
    assert len(listed) == 40
    assert len({r.seq for r in listed}) == 40
    paged: list[str] = []
    after = 0
    while page := stores[0].list_resources(CE, after_seq=after, limit=7):
        paged.extend(r.name for r in page)
        after = page[-1].seq
    assert sorted(paged) == sorted(r.name for r in listed)


# --- jobs ------------------------------------------------------------------------------------


def test_insert_get_save_jobs(store: Store) -> None:
    first, second = _job(), _job(status="RUNNABLE", share="teamA")
    store.insert_jobs([first, second])
    assert sorted(store.get_jobs([second.id, first.id, "missing"]), key=lambda r: r.id) == sorted(
        [first, second], key=lambda r: r.id
    )
    assert store.get_jobs([]) == []
    assert store.count_jobs() == 2

    running = JobRecord(**{**_fields(first), "status": "RUNNING", "body": {"jobId": first.id, "attempts": [1]}})
    store.save_jobs([running])
    [got] = store.get_jobs([first.id])
    assert got == running
    assert got.created_at == first.created_at
    store.save_jobs([])
    store.insert_jobs([])


def test_bodies_round_trip_whatever_json_they_hold(store: Store) -> None:
    # Integers beyond 64 bits and keys that are not strings take the store's slower encoder; they come back too.
    bodies: list[Body] = [
        {"big": 2**70, "text": "ünïcode ☃", "nested": [{"a": None}]},
        {"summary": {1: 2}},
        {"float": 0.1, "negative": -(2**63)},
    ]
    records = [_job(body=body) for body in bodies]
    store.insert_jobs(records)
    got = {r.id: r.body for r in store.get_jobs([r.id for r in records])}
    assert got[records[0].id] == bodies[0]
    assert got[records[1].id] == {"summary": {"1": 2}}
    assert got[records[2].id] == bodies[2]


def _fields(record: JobRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in JobRecord.__dataclass_fields__}


def test_duplicate_job_ids_conflict_and_roll_back(store: Store) -> None:
    existing = _job()
    store.insert_jobs([existing])
    with pytest.raises(Conflict):
        store.insert_jobs([_job(), _job(existing.id)])
    assert store.count_jobs() == 1


def test_bulk_insert_and_save_of_ten_thousand_jobs(store: Store) -> None:
    parent = _job(status="PENDING", created_at=5, body={"arrayProperties": {"size": 10_000}})
    children = [
        _job(f"{parent.id}:{i}", parent_id=parent.id, array_index=i, created_at=5, body={"i": i}) for i in range(10_000)
    ]
    store.insert_jobs([parent, *children])
    assert store.count_jobs() == 10_001
    assert store.count_children(parent.id) == {"SUBMITTED": 10_000}
    assert len(store.get_jobs([c.id for c in children])) == 10_000

    # A generator, as the engine passes: the store must not need a sized sequence.
    store.save_jobs(
        JobRecord(**{**_fields(c), "status": "SUCCEEDED" if i % 2 else "FAILED"}) for i, c in enumerate(children)
    )
    assert store.count_children(parent.id) == {"SUCCEEDED": 5_000, "FAILED": 5_000}
    assert _ids(store.load_unfinished_jobs()) == [parent.id]

    page = store.list_jobs(JobQuery(parent_id=parent.id), limit=3)
    assert [r.array_index for r in page] == [0, 1, 2]
    page = store.list_jobs(JobQuery(parent_id=parent.id), after=(9_997, ""), limit=10)
    assert [r.array_index for r in page] == [9_998, 9_999]
    assert _ids(store.list_jobs(JobQuery(queue="q"), limit=10)) == [parent.id]


def test_list_jobs_by_queue_excludes_array_children(store: Store) -> None:
    parent = _job(status="PENDING", created_at=10)
    plain = _job(created_at=20)
    other_queue = _job(queue="other", created_at=30)
    children = [_job(parent_id=parent.id, array_index=i, created_at=10) for i in range(3)]
    store.insert_jobs([parent, plain, other_queue, *children])
    assert _ids(store.list_jobs(JobQuery(queue="q"))) == [plain.id, parent.id]
    assert _ids(store.list_jobs(JobQuery(queue="q"), newest_first=False)) == [parent.id, plain.id]
    assert _ids(store.list_jobs(JobQuery(queue="other"))) == [other_queue.id]
    assert store.list_jobs(JobQuery(queue="nobody")) == []


def test_list_children_ordered_by_index(store: Store) -> None:
    parent = _job(status="PENDING")
    # Inserted out of order, with ids that sort differently from the indexes.
    children = [_job(f"z{9 - i}", parent_id=parent.id, array_index=i, status="RUNNABLE") for i in (3, 0, 2, 1)]
    store.insert_jobs([parent, *children])
    indexes = [r.array_index for r in store.list_jobs(JobQuery(parent_id=parent.id))]
    assert indexes == [0, 1, 2, 3]
    assert [r.array_index for r in store.list_jobs(JobQuery(parent_id=parent.id), after=(1, ""))] == [2, 3]
    assert store.count_children(parent.id) == {"RUNNABLE": 4}
    assert store.count_children("nobody") == {}
    assert store.list_jobs(JobQuery(parent_id=parent.id, statuses=("FAILED",))) == []


def test_list_jobs_filters(store: Store) -> None:
    jobs = {
        "alpha": _job(name="Alpha-1", status="RUNNING", created_at=100, share="teamA"),
        "alpha2": _job(name="alpha-2", status="SUCCEEDED", created_at=200, share="teamB"),
        "beta": _job(name="beta", status="RUNNING", created_at=300, share="teamA"),
        "under": _job(name="a_b", status="FAILED", created_at=400),
        "wild": _job(name="axb", status="FAILED", created_at=500),
        "pct": _job(name="50%off", status="RUNNABLE", created_at=600),
    }
    store.insert_jobs(jobs.values())

    def listed(**query: Any) -> set[str]:
        found = set(_ids(store.list_jobs(JobQuery(queue="q", **query))))
        return {key for key, job in jobs.items() if job.id in found}

    assert listed() == set(jobs)
    assert listed(statuses=("RUNNING",)) == {"alpha", "beta"}
    assert listed(statuses=("RUNNING", "FAILED")) == {"alpha", "beta", "under", "wild"}
    assert listed(name_exact="ALPHA-1") == {"alpha"}
    assert listed(name_exact="alpha") == set()
    assert listed(name_prefix="ALPHA") == {"alpha", "alpha2"}
    assert listed(name_prefix="a_") == {"under"}
    assert listed(name_prefix="50%") == {"pct"}
    assert listed(name_prefix="5%") == set()
    assert listed(created_before=300) == {"alpha", "alpha2"}
    assert listed(created_after=300) == {"under", "wild", "pct"}
    assert listed(created_after=100, created_before=400) == {"alpha2", "beta"}
    assert listed(share_identifier="teamA") == {"alpha", "beta"}
    assert listed(share_identifier="teamA", statuses=("SUCCEEDED",)) == set()


def test_newest_first_keyset_pagination_has_no_duplicates(store: Store) -> None:
    # Many jobs share a created_at, so the id must break ties for the cursor to be exact.
    records = [_job(f"job-{i:03d}", created_at=1000 + i // 7) for i in range(50)]
    store.insert_jobs(records)
    expected = sorted(records, key=lambda r: (r.created_at, r.id), reverse=True)

    for newest_first in (True, False):
        seen: list[str] = []
        after: tuple[int, str] | None = None
        while True:
            page = store.list_jobs(JobQuery(queue="q"), after=after, limit=6, newest_first=newest_first)
            if not page:
                break
            seen.extend(_ids(page))
            after = (page[-1].created_at, page[-1].id)
        wanted = _ids(expected) if newest_first else _ids(list(reversed(expected)))
        assert seen == wanted
        assert len(set(seen)) == 50


def test_load_unfinished_jobs(store: Store) -> None:
    statuses = ["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"]
    records = {status: _job(status=status) for status in statuses}
    store.insert_jobs(records.values())
    unfinished = {r.id for r in store.load_unfinished_jobs()}
    assert unfinished == {records[s].id for s in statuses[:5]}
    loaded = {r.id: r for r in store.load_unfinished_jobs()}
    assert loaded[records["RUNNING"].id] == records["RUNNING"]


def test_queued_children_come_back_as_ranges(store: Store) -> None:
    parent = _job(status="PENDING", body={"arrayProperties": {"size": 20}})
    other = _job(status="PENDING", body={"arrayProperties": {"size": 5}})
    running_child = 7
    children = [
        _job(
            f"{parent.id}:{i}",
            parent_id=parent.id,
            array_index=i,
            status="RUNNING" if i == running_child else "FAILED" if i in (12, 13) else "RUNNABLE",
        )
        for i in range(20)
    ]
    other_children = [_job(f"{other.id}:{i}", parent_id=other.id, array_index=i, status="RUNNABLE") for i in range(5)]
    top = _job(status="RUNNABLE")
    node = _job(f"{top.id}#0", parent_id=top.id, status="RUNNABLE")  # a multi-node job's node: no array index
    store.insert_jobs([parent, other, *children, *other_children, top, node])

    expected = {(parent.id, 0, 7), (parent.id, 8, 12), (parent.id, 14, 20), (other.id, 0, 5)}
    ranges = store.queued_child_ranges([other.id, parent.id, top.id])
    assert set(ranges) == expected and len(ranges) == 4
    assert ranges == sorted(ranges)
    assert store.queued_child_ranges([parent.id]) == sorted(r for r in expected if r[0] == parent.id)
    assert store.count_children(parent.id) == {"RUNNABLE": 17, "RUNNING": 1, "FAILED": 2}

    without = {r.id for r in store.load_unfinished_jobs(except_queued_children=True)}
    assert without == {parent.id, other.id, f"{parent.id}:{running_child}", top.id, node.id}
    assert len(store.load_unfinished_jobs()) == len(without) + 7 + 4 + 6 + 5
