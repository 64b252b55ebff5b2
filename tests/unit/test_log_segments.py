"""Segmented streams: sealing, compression, cross-process live reads, caps, filters and retention."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from openbatch.logs import segments as seg
from openbatch.logs.filter_pattern import FilterPattern, FilterPatternError
from openbatch.logs.janitor import Janitor
from openbatch.logs.store import (
    TRUNCATION_MESSAGE,
    InvalidTokenError,
    LogGroupNotFoundError,
    LogStore,
    LogStreamNotFoundError,
)

GROUP = "/aws/batch/job"
STREAM = "jd/default/abc"


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    return LogStore(tmp_path / "logs")


def _write_mixed(store: LogStore, total_events: int, seed: int = 7) -> list[tuple[int, str]]:
    """Batches of varied sizes and awkward messages; returns (timestamp, message) in order."""
    rng = random.Random(seed)
    awkward = ["@at start", "back\\slash", "new\nline", "", "#hash", "é日本", "\\@", "12\t34\tlooks v1"]
    expected: list[tuple[int, str]] = []
    ts = 1_000
    with store.open_writer(GROUP, STREAM) as writer:
        while len(expected) < total_events:
            n = rng.choice([1, 3, 50, 2_000, 20_000])
            batch = [
                rng.choice(awkward) if rng.random() < 0.05 else f"line {len(expected) + i} " + "x" * rng.randint(0, 40)
                for i in range(n)
            ]
            writer.write_raw(ts, [m.encode() for m in batch])
            expected += [(ts, m) for m in batch]
            ts += rng.randint(0, 2)
    return expected


def _forward(
    store: LogStore, limit: int, start_time: int | None = None, end_time: int | None = None
) -> list[tuple[int, str]]:
    kwargs: dict[str, Any] = {"start_time": start_time, "end_time": end_time}
    page = store.get_log_events(GROUP, STREAM, start_from_head=True, limit=limit, **kwargs)
    seen = [(e.timestamp, e.message) for e in page.events]
    for _ in range(100_000):
        nxt = store.get_log_events(GROUP, STREAM, next_token=page.next_forward_token, limit=limit, **kwargs)
        if nxt.next_forward_token == page.next_forward_token:
            assert not nxt.events
            return seen
        seen += [(e.timestamp, e.message) for e in nxt.events]
        page = nxt
    raise AssertionError("forward paging never ended")


def _backward(store: LogStore, limit: int) -> list[tuple[int, str]]:
    page = store.get_log_events(GROUP, STREAM, limit=limit)
    seen = [(e.timestamp, e.message) for e in page.events]
    token = page.next_backward_token
    for _ in range(100_000):
        back = store.get_log_events(GROUP, STREAM, next_token=token, limit=limit)
        if back.next_backward_token == token:
            assert not back.events
            return seen
        seen = [(e.timestamp, e.message) for e in back.events] + seen
        token = back.next_backward_token
    raise AssertionError("backward paging never ended")


@pytest.mark.slow
def test_sealed_segments_read_back_in_both_directions(store: LogStore) -> None:
    expected = _write_mixed(store, 120_000)
    segs_dir = next(store.root.rglob("*.segs"))
    sealed = sorted((e for p in segs_dir.iterdir() if (e := seg.parse_sealed_name(p.name))), key=lambda e: e.base)
    assert len(sealed) >= 2
    # The sealed index entries tile the logical stream without gaps.
    assert all(a.end == b.base for a, b in zip(sealed, sealed[1:], strict=False))
    assert _forward(store, 10_000) == expected
    assert _forward(store, 1_777) == expected
    assert _backward(store, 9_999) == expected
    (info,) = store.describe_log_streams(GROUP)
    assert info.first_event_timestamp == expected[0][0] and info.last_event_timestamp == expected[-1][0]
    assert info.disk_bytes < info.stored_bytes / 3


def test_time_range_across_segments(store: LogStore) -> None:
    expected = _write_mixed(store, 100_000, seed=3)
    lo, hi = expected[30_000][0], expected[80_000][0]
    window = [(t, m) for t, m in expected if lo <= t < hi]
    assert _forward(store, 5_000, start_time=lo, end_time=hi) == window
    tail = store.get_log_events(GROUP, STREAM, end_time=hi, limit=10)
    assert [(e.timestamp, e.message) for e in tail.events] == window[-10:]


def test_tokens_resume_inside_records_and_reject_non_boundaries(store: LogStore) -> None:
    with store.open_writer(GROUP, STREAM) as writer:
        writer.write_raw(5, [f"m{i}".encode() for i in range(10)])
    first = store.get_log_events(GROUP, STREAM, start_from_head=True, limit=4)
    assert [e.message for e in first.events] == ["m0", "m1", "m2", "m3"]
    rest = store.get_log_events(GROUP, STREAM, next_token=first.next_forward_token, limit=4)
    assert [e.message for e in rest.events] == ["m4", "m5", "m6", "m7"]
    back = store.get_log_events(GROUP, STREAM, next_token=rest.next_backward_token, limit=3)
    assert [e.message for e in back.events] == ["m1", "m2", "m3"]
    offset = int(first.next_forward_token[2:])
    with pytest.raises(InvalidTokenError):
        store.get_log_events(GROUP, STREAM, next_token=f"f/{offset + 1}")


def test_short_lines_are_stored_compactly(store: LogStore) -> None:
    # 8 MiB of `yes` output as the executor hands it over: 32 Ki lines per pipe read.
    chunk = [b"y"] * 32_768
    with store.open_writer(GROUP, STREAM) as writer:
        for i in range(128):
            writer.write_raw(1_000 + i, chunk)
            writer.flush()
    (info,) = store.describe_log_streams(GROUP)
    output = 128 * len(chunk) * 2
    assert info.stored_bytes < output * 1.01
    assert info.disk_bytes < output / 20
    page = store.get_log_events(GROUP, STREAM, limit=3)
    assert [e.message for e in page.events] == ["y", "y", "y"]


def test_write_lines_matches_write_raw(store: LogStore) -> None:
    chunks = [b"a\nb\n", b"\n\nc\n", b"@x\nback\\slash\n", b"no newline", b"y\n" * 40_000]
    with store.open_writer(GROUP, STREAM) as writer:
        for i, chunk in enumerate(chunks):
            writer.write_lines(i, chunk)
    with store.open_writer(GROUP, "raw") as writer:
        for i, chunk in enumerate(chunks):
            writer.write_raw(i, [line for line in chunk.split(b"\n") if line])
    lines = _forward(store, 10_000)
    head = [(0, "a"), (0, "b"), (1, "c"), (2, "@x"), (2, "back\\slash"), (3, "no newline")]
    assert lines == head + [(4, "y")] * 40_000
    raw = store.get_log_events(GROUP, "raw", start_from_head=True, limit=7).events
    assert [(e.timestamp, e.message) for e in raw] == lines[:7]


_CHILD = """
import sys, time
from pathlib import Path
from openbatch.logs.store import LogStore
writer = LogStore(Path(sys.argv[1])).open_writer("/aws/batch/job", "jd/default/abc")
for i in range(int(sys.argv[2])):
    writer.write_raw(1000 + i, [b"child %d %s" % (i, b"z" * 200)] * 1000)
    writer.flush()
    sys.stdout.write("%d\\n" % i)
    sys.stdout.flush()
    sys.stdin.readline()
writer.close()
"""


def test_a_writer_in_another_process_is_read_live(store: LogStore) -> None:
    rounds = 12  # ~2.4 MiB: the child seals segments while this process reads.
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(store.root), str(rounds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    token: str | None = None
    seen = 0
    try:
        for i in range(rounds):
            assert child.stdout.readline().strip() == str(i)
            kwargs = {"next_token": token} if token else {"start_from_head": True}
            got = 0
            for _ in range(10):
                page = store.get_log_events(GROUP, STREAM, **kwargs)
                got += len(page.events)
                assert all(e.message.startswith(f"child {e.timestamp - 1000} ") for e in page.events)
                if page.next_forward_token == kwargs.get("next_token"):
                    break
                kwargs = {"next_token": page.next_forward_token}
            token = str(kwargs["next_token"])
            assert got == 1000, f"round {i}: read {got} events"
            seen += got
            child.stdin.write("\n")
            child.stdin.flush()
    finally:
        child.stdin.close()
        child.wait(10)
        child.stdout.close()
    assert seen == rounds * 1000
    assert len(list(next(store.root.rglob("*.segs")).iterdir())) >= 2


def test_empty_stream_exists_and_reads_empty(store: LogStore) -> None:
    assert store.create_stream(GROUP, STREAM)
    assert not store.create_stream(GROUP, STREAM)
    page = store.get_log_events(GROUP, STREAM, start_from_head=True)
    assert page.events == []
    assert store.get_log_events(GROUP, STREAM, next_token=page.next_forward_token).events == []
    (info,) = store.describe_log_streams(GROUP)
    assert info.name == STREAM and info.first_event_timestamp is None
    with pytest.raises(LogGroupNotFoundError):
        store.get_log_events("/no/such/group", STREAM)
    with pytest.raises(LogStreamNotFoundError):
        store.get_log_events(GROUP, "other")


def test_log_cap_truncates_with_a_marker_and_applies_in_other_processes(tmp_path: Path) -> None:
    LogStore(tmp_path / "logs", max_stream_bytes=10_000)
    store = LogStore(tmp_path / "logs")  # as a supervisor process would open it
    assert store.max_stream_bytes == 10_000
    with store.open_writer(GROUP, STREAM) as writer:
        for i in range(100):
            writer.write_raw(i, [b"%04d" % i + b"." * 95])
    messages = [e.message for e in store.get_log_events(GROUP, STREAM, start_from_head=True).events]
    assert messages[-1] == TRUNCATION_MESSAGE.format(limit=10_000)
    assert 90 <= len(messages) - 1 < 100
    assert messages[:-1] == [f"{i:04d}" + "." * 95 for i in range(len(messages) - 1)]


def test_filter_patterns() -> None:
    def match(pattern: str, message: str) -> bool:
        return FilterPattern.parse(pattern).matches(message)

    assert match("", "anything")
    assert match("ERROR", "an ERROR here") and not match("ERROR", "an error here")
    assert match("ERROR Exception", "ERROR: Exception thrown")
    assert not match("ERROR Exception", "ERROR only")
    assert match('"Out of memory"', "fatal: Out of memory!") and not match('"Out of memory"', "Out of  memory")
    assert match("ERROR -Exiting", "ERROR x") and not match("ERROR -Exiting", "ERROR Exiting now")
    assert not match('ERROR -"shutting down"', "ERROR shutting down")
    assert match("?ERROR ?WARN", "WARN low disk") and not match("?ERROR ?WARN", "INFO ok")
    assert match(r'"say \"hi\""', 'they say "hi"')
    assert match("%err(or)?\\s+\\d+%", "err 42") and not match("%err(or)?\\s+\\d+%", "err x")
    for bad in ('"open', "{ $.level = 1 }", "[ip, user]", "%(%"):
        with pytest.raises(FilterPatternError):
            FilterPattern.parse(bad)


def test_filter_log_events_merges_streams_by_time_and_paginates(store: LogStore) -> None:
    for name, offset in (("a/1", 0), ("b/2", 1), ("c/3", 2)):
        with store.open_writer(GROUP, name) as writer:
            for t in range(0, 30, 3):
                writer.write_raw(1000 + t + offset, [f"{name} t{t + offset} ERROR".encode(), f"{name} ok".encode()])
    everything = store.filter_log_events(GROUP, pattern=FilterPattern.parse("ERROR"))
    times = [b.timestamp for b in everything.batches]
    assert times == sorted(times) and len(times) == 30 and everything.next_token is None
    collected: list[tuple[str, str]] = []
    token: str | None = None
    for _ in range(100):
        page = store.filter_log_events(GROUP, pattern=FilterPattern.parse("ERROR"), limit=4, next_token=token)
        collected += [(b.stream, m) for b in page.batches for m in b.messages]
        token = page.next_token
        if token is None:
            break
    assert collected == [(b.stream, m) for b in everything.batches for m in b.messages]
    only = store.filter_log_events(GROUP, stream_names=["b/2"], start_time=1010, end_time=1020)
    assert {b.stream for b in only.batches} == {"b/2"}
    assert [b.timestamp for b in only.batches] == [1010, 1013, 1016, 1019]
    prefixed = store.filter_log_events(GROUP, stream_prefix="c/", pattern=FilterPattern.parse("-ERROR"))
    assert {m for b in prefixed.batches for m in b.messages} == {"c/3 ok"}


def test_retention_expires_old_segments_and_hides_old_events(store: LogStore) -> None:
    now = int(time.time() * 1000)
    old, recent = now - 3 * 86_400_000, now - 1000
    with store.open_writer(GROUP, STREAM) as writer:
        for i in range(12):  # ~1.2 MiB of old events: at least one sealed segment
            writer.write_raw(old + i, [b"old " + b"o" * 100] * 1000)
        writer.write_raw(recent, [b"recent"])
    with pytest.raises(ValueError):
        store.put_retention_policy(GROUP, 2)
    store.put_retention_policy(GROUP, 1)
    assert not list(next(store.root.rglob("*.segs")).iterdir())
    assert [e.message for e in store.get_log_events(GROUP, STREAM, start_from_head=True).events] == ["recent"]
    (group,) = store.describe_log_groups()
    assert (group.name, group.retention_in_days) == (GROUP, 1)
    store.delete_retention_policy(GROUP)
    assert store.describe_log_groups("/aws/")[0].retention_in_days is None
    assert store.describe_log_groups("/other") == []
    with pytest.raises(LogGroupNotFoundError):
        store.put_retention_policy("/no/such", 1)


def test_janitor_removes_finished_work_dirs_after_retention(tmp_path: Path) -> None:
    now = [1000.0]
    live = {"running-job"}
    work = tmp_path / "work"
    for job in ("running-job", "done-job"):
        (work / "0a" / job).mkdir(parents=True)
        (work / "0a" / job / "output.txt").write_text("x")
    janitor = Janitor(
        LogStore(tmp_path / "logs"), work, work_retention_seconds=60, is_live=live.__contains__, clock=lambda: now[0]
    )
    assert janitor.sweep() == (0, 0)  # the clock of done-job starts now
    now[0] += 59
    assert janitor.sweep() == (0, 0)
    now[0] += 1
    assert janitor.sweep() == (1, 0)
    assert [p.name for p in (work / "0a").iterdir()] == ["running-job"]
    live.clear()  # running-job finishes: its clock starts at the next sweep
    now[0] += 1_000
    assert janitor.sweep() == (0, 0)
    now[0] += 60
    assert janitor.sweep() == (1, 0)
    assert not any((work / "0a").iterdir())
    assert Janitor(LogStore(tmp_path / "logs"), work, work_retention_seconds=None, is_live=bool).sweep() == (0, 0)
