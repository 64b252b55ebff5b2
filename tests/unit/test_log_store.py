from __future__ import annotations

import os
from pathlib import Path

import pytest

from openbatch.logs.store import (
    MAX_LIMIT,
    InvalidTokenError,
    LogEvent,
    LogStore,
    LogStreamNotFoundError,
)

GROUP = "/aws/batch/job"
STREAM = "myjobdef/default/0f1e2d3c4b5a"


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    return LogStore(tmp_path / "logs")


def _fill(store: LogStore, count: int, *, stream: str = STREAM, base_ts: int = 1_000, width: int = 0) -> None:
    with store.open_writer(GROUP, stream) as writer:
        for i in range(count):
            writer.write(base_ts + i, f"event {i:06d}" + "x" * width)


def _messages(events: list[LogEvent]) -> list[str]:
    return [event.message for event in events]


def _page_all_forward(
    store: LogStore, limit: int, start_time: int | None = None, end_time: int | None = None
) -> tuple[list[str], int]:
    page = store.get_log_events(
        GROUP, STREAM, start_from_head=True, limit=limit, start_time=start_time, end_time=end_time
    )
    seen = _messages(page.events)
    calls = 1
    while True:
        nxt = store.get_log_events(
            GROUP,
            STREAM,
            next_token=page.next_forward_token,
            limit=limit,
            start_time=start_time,
            end_time=end_time,
        )
        calls += 1
        seen += _messages(nxt.events)
        if nxt.next_forward_token == page.next_forward_token:
            assert not nxt.events
            return seen, calls
        page = nxt


def test_round_trip_preserves_any_text(store: LogStore) -> None:
    messages = [
        "plain",
        "tab\tseparated\tfields",
        "multi\nline\r\nmessage",
        "back\\slash \\n not a newline \\\\n",
        "trailing backslash \\",
        "unicode: héllo wörld — 日本語 🚀 \u2028",
        "\x00\x01 control",
    ]
    with store.open_writer(GROUP, STREAM) as writer:
        for i, message in enumerate(messages):
            writer.write(100 + i, message)
    page = store.get_log_events(GROUP, STREAM, start_from_head=True)
    assert _messages(page.events) == messages
    assert [e.timestamp for e in page.events] == list(range(100, 100 + len(messages)))
    assert all(e.ingestion_time > 1_600_000_000_000 for e in page.events)


def test_raw_invalid_utf8_is_replaced_on_read(store: LogStore) -> None:
    with store.open_writer(GROUP, STREAM) as writer:
        writer.write_raw(5, [b"ok \xff\xfe end", "é".encode()])
    page = store.get_log_events(GROUP, STREAM, start_from_head=True)
    assert _messages(page.events) == ["ok \ufffd\ufffd end", "é"]


def test_missing_stream(store: LogStore) -> None:
    assert not store.stream_exists(GROUP, STREAM)
    with pytest.raises(LogStreamNotFoundError):
        store.get_log_events(GROUP, STREAM)
    assert store.describe_log_streams(GROUP) == []
    store.open_writer(GROUP, STREAM).close()
    assert store.stream_exists(GROUP, STREAM)
    assert not store.stream_exists(GROUP, STREAM + "x")
    empty = store.get_log_events(GROUP, STREAM)
    assert empty.events == []
    again = store.get_log_events(GROUP, STREAM, next_token=empty.next_forward_token)
    assert again.next_forward_token == empty.next_forward_token


def test_names_cannot_escape_root(store: LogStore, tmp_path: Path) -> None:
    for stream in ("../../escape", "..", ".", "a/../../b", "~tilde", "%2F"):
        _fill(store, 1, stream=stream)
    store.open_writer("../outside", "x").close()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and all((tmp_path / "logs") in p.parents for p in files)
    names = [info.name for info in store.describe_log_streams(GROUP)]
    assert names == sorted(["../../escape", "..", ".", "a/../../b", "~tilde", "%2F"])
    for stream in names:
        assert _messages(store.get_log_events(GROUP, stream).events) == ["event 000000"]


def test_very_long_names_are_hashed_but_listed(store: LogStore) -> None:
    stream = "jobdef/default/" + "é" * 300
    _fill(store, 2, stream=stream)
    (info,) = store.describe_log_streams(GROUP)
    assert info.name == stream
    assert store.stream_exists(GROUP, stream)
    assert len(store.get_log_events(GROUP, stream).events) == 2
    with pytest.raises(ValueError):
        store.open_writer(GROUP, "")


def test_forward_paging_until_token_repeats(store: LogStore) -> None:
    _fill(store, 25)
    seen, calls = _page_all_forward(store, limit=10)
    assert seen == [f"event {i:06d}" for i in range(25)]
    assert calls == 4


def test_tail_returns_last_events_and_pages_backward(store: LogStore) -> None:
    _fill(store, 25)
    page = store.get_log_events(GROUP, STREAM, limit=10)
    assert _messages(page.events) == [f"event {i:06d}" for i in range(15, 25)]
    collected = _messages(page.events)
    token = page.next_backward_token
    while True:
        back = store.get_log_events(GROUP, STREAM, next_token=token, limit=10)
        if back.next_backward_token == token:
            assert not back.events
            break
        collected = _messages(back.events) + collected
        token = back.next_backward_token
    assert collected == [f"event {i:06d}" for i in range(25)]
    # After a backward page the forward token resumes right after that page.
    first_back = store.get_log_events(GROUP, STREAM, next_token=page.next_backward_token, limit=10)
    assert _messages(first_back.events) == [f"event {i:06d}" for i in range(5, 15)]
    resumed = store.get_log_events(GROUP, STREAM, next_token=first_back.next_forward_token, limit=10)
    assert _messages(resumed.events) == [f"event {i:06d}" for i in range(15, 25)]


def test_forward_token_follows_new_events(store: LogStore) -> None:
    writer = store.open_writer(GROUP, STREAM)
    writer.write(1, "one")
    writer.flush()
    page = store.get_log_events(GROUP, STREAM, start_from_head=True)
    assert _messages(page.events) == ["one"]
    idle = store.get_log_events(GROUP, STREAM, next_token=page.next_forward_token)
    assert idle.events == [] and idle.next_forward_token == page.next_forward_token
    writer.write(2, "two")
    writer.write(3, "three")
    writer.flush()
    more = store.get_log_events(GROUP, STREAM, next_token=idle.next_forward_token)
    assert _messages(more.events) == ["two", "three"]
    writer.close()
    with pytest.raises(ValueError):
        writer.write(4, "closed")


def test_unflushed_and_torn_lines_are_invisible(store: LogStore) -> None:
    writer = store.open_writer(GROUP, STREAM)
    writer.write(1, "buffered")
    assert store.get_log_events(GROUP, STREAM).events == []
    writer.flush()
    (path,) = (store.root).rglob("*.log")
    with open(path, "ab") as f:
        f.write(b"2\t2\thalf a li")
    page = store.get_log_events(GROUP, STREAM, start_from_head=True)
    assert _messages(page.events) == ["buffered"]
    with open(path, "ab") as f:
        f.write(b"ne\n")
    after = store.get_log_events(GROUP, STREAM, next_token=page.next_forward_token)
    assert _messages(after.events) == ["half a line"]
    writer.close()


def test_time_filters(store: LogStore) -> None:
    _fill(store, 100, base_ts=1_000)
    head = store.get_log_events(GROUP, STREAM, start_time=1_010, end_time=1_020, start_from_head=True)
    assert _messages(head.events) == [f"event {i:06d}" for i in range(10, 20)]
    tail = store.get_log_events(GROUP, STREAM, start_time=1_010, end_time=1_020, limit=3)
    assert _messages(tail.events) == [f"event {i:06d}" for i in range(17, 20)]
    assert store.get_log_events(GROUP, STREAM, start_time=5_000).events == []
    assert store.get_log_events(GROUP, STREAM, end_time=1_000).events == []
    seen, _ = _page_all_forward(store, limit=4, start_time=1_050, end_time=1_061)
    assert seen == [f"event {i:06d}" for i in range(50, 61)]


def test_large_file_paging_and_time_seek(store: LogStore) -> None:
    # ~2.4 MB: many read blocks, so block boundaries and the binary search are exercised.
    _fill(store, 20_000, width=100)
    page = store.get_log_events(GROUP, STREAM, start_time=1_000 + 12_345, start_from_head=True, limit=3)
    assert _messages(page.events)[0].startswith("event 012345")
    tail = store.get_log_events(GROUP, STREAM, end_time=1_000 + 777, limit=2)
    assert [m[:12] for m in _messages(tail.events)] == ["event 000775", "event 000776"]
    seen, _ = _page_all_forward(store, limit=MAX_LIMIT)
    assert len(seen) == 20_000 and seen[-1].startswith("event 019999")
    token = store.get_log_events(GROUP, STREAM, limit=1).next_backward_token
    total = 1
    while True:
        back = store.get_log_events(GROUP, STREAM, next_token=token, limit=7_777)
        if back.next_backward_token == token:
            break
        total += len(back.events)
        token = back.next_backward_token
    assert total == 20_000


def test_page_is_capped_at_one_megabyte(store: LogStore) -> None:
    big = 200 * 1024
    _fill(store, 12, width=big)
    page = store.get_log_events(GROUP, STREAM, start_from_head=True)
    assert 1 <= len(page.events) <= 5
    assert sum(len(e.message) for e in page.events) <= 1024 * 1024
    seen, _ = _page_all_forward(store, limit=100)
    assert len(seen) == 12 and all(len(m) == 12 + big for m in seen)
    tail = store.get_log_events(GROUP, STREAM)
    assert 1 <= len(tail.events) <= 5 and tail.events[-1].message.startswith("event 000011")


def test_bad_tokens_and_limits(store: LogStore) -> None:
    _fill(store, 3)
    for token in ("garbage", "x/1", "f/-1", "f/", "f/99999999", "b/1"):
        with pytest.raises(InvalidTokenError):
            store.get_log_events(GROUP, STREAM, next_token=token)
    for limit in (0, MAX_LIMIT + 1):
        with pytest.raises(ValueError):
            store.get_log_events(GROUP, STREAM, limit=limit)


def test_describe_log_streams(store: LogStore) -> None:
    _fill(store, 3, stream="jd/default/b", base_ts=500)
    _fill(store, 1, stream="jd/default/a", base_ts=700)
    _fill(store, 1, stream="other/default/c")
    store.open_writer(GROUP, "jd/default/empty").close()
    infos = store.describe_log_streams(GROUP, "jd/")
    assert [i.name for i in infos] == ["jd/default/a", "jd/default/b", "jd/default/empty"]
    a, b, empty = infos
    assert (b.first_event_timestamp, b.last_event_timestamp) == (500, 502)
    assert (a.first_event_timestamp, a.last_event_timestamp) == (700, 700)
    assert b.last_ingestion_time is not None and b.last_ingestion_time >= b.creation_time
    assert b.stored_bytes == os.path.getsize(next(store.root.rglob("jd%2Fdefault%2Fb.log")))
    assert empty.first_event_timestamp is None and empty.last_event_timestamp is None
    assert empty.creation_time > 1_600_000_000_000
    assert len(store.describe_log_streams(GROUP)) == 4
    assert store.describe_log_streams("/other/group") == []
