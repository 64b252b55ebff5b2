"""Log groups and streams on the local file system, with CloudWatch Logs read semantics.

Layout under the store root: one directory per log group, holding for each
stream its active segment ``<stream>.log`` and, once it grew past a segment,
its sealed segments in ``<stream>.segs/`` (see :mod:`openbatch.logs.segments`
for the record format). Group and stream names are percent-encoded into flat,
shell-safe file names (``/`` and ``.`` included, so no name can escape its
directory), or replaced by a hash when the encoding would be too long for the
file system; the real name is in each segment's header. A group's settings
(creation time, retention) live in ``<group>/.group``.

Everything a reader needs is on disk: a writer in another process (the per-host
supervisor) appends whole records and seals segments with atomic renames, and
the server reads them live, seeing appended records after each ``flush``.
Pagination tokens are logical byte offsets of line boundaries (``f/<offset>``,
``b/<offset>``), so a page is found with one directory listing and one segment
read however large the stream is.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import logging
import os
import re
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

from openbatch.logs import segments as seg
from openbatch.logs.filter_pattern import FilterPattern

logger = logging.getLogger(__name__)

MAX_EVENT_BYTES = 256 * 1024 - 26
"""CloudWatch's per-event limit: 256 KiB including 26 bytes of per-event overhead."""
MAX_LIMIT = 10_000
"""Largest ``limit`` GetLogEvents and FilterLogEvents accept."""
RETENTION_DAYS = (
    *(1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545),
    *(731, 1096, 1827, 2192, 2557, 2922, 3288, 3653),
)
"""The values CloudWatch Logs accepts for ``retentionInDays``."""
TRUNCATION_MESSAGE = "[openbatch] log truncated: the job's output passed the {limit}-byte log cap; the rest was dropped"

_PAGE_BYTES = 1024 * 1024
# CloudWatch stops a page at 1 MB of messages; matching it bounds response size and memory.
_SCAN_BUDGET = 32 * 1024 * 1024
# A heavily filtered read stops after this many plain bytes and hands back a token
# that has moved on, as CloudWatch does with empty-but-advancing pages, so no single
# request scans a whole multi-gigabyte stream.
_MAX_ACTIVE_READ = 64 * 1024 * 1024
# Active segments are sealed at 1 MiB; only a pre-segment (version 1) file can be
# larger, and a reader never loads more than this of it.
_AUTO_FLUSH = 64 * 1024
_EAGER_READ = 256 * 1024
# Active segments up to this size are read with the header in one call; larger ones
# only when a page reaches them.
_LISTINGS = 256
_SUFFIX = ".log"
_SEGS_SUFFIX = ".segs"
_GROUP_FILE = ".group"
_SETTINGS_FILE = "settings.json"
_MAX_FS_NAME = 200
_UNSAFE = re.compile(rb"[^A-Za-z0-9_-]")
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DAY_MS = 86_400_000


class LogStreamNotFoundError(LookupError):
    """The log group or stream does not exist (CloudWatch's ResourceNotFoundException)."""


class LogGroupNotFoundError(LogStreamNotFoundError):
    """The log group does not exist (CloudWatch's ResourceNotFoundException)."""


class InvalidTokenError(ValueError):
    """A ``next_token`` that this stream never issued (CloudWatch's InvalidParameterException)."""


@dataclass(frozen=True, slots=True)
class LogEvent:
    timestamp: int
    message: str
    ingestion_time: int


@dataclass(frozen=True, slots=True)
class EventBatch:
    """Events sharing one timestamp and ingestion time: how pages are built without an object per event."""

    timestamp: int
    ingestion_time: int
    messages: list[str]
    stream: str = ""
    offset: int = 0
    """A stream position identifying the first event (FilterLogEvents' event ids)."""


class LogEventsPage:
    """A page of events, kept as batches so that a 10,000-event page costs a handful of objects."""

    __slots__ = ("batches", "next_backward_token", "next_forward_token")

    def __init__(self, batches: list[EventBatch], next_forward_token: str, next_backward_token: str) -> None:
        self.batches = batches
        self.next_forward_token = next_forward_token
        self.next_backward_token = next_backward_token

    @property
    def events(self) -> list[LogEvent]:
        return [LogEvent(b.timestamp, m, b.ingestion_time) for b in self.batches for m in b.messages]

    def __len__(self) -> int:
        return sum(len(b.messages) for b in self.batches)


@dataclass(frozen=True, slots=True)
class FilteredEventsPage:
    batches: list[EventBatch]
    """Matching events, oldest first across streams; each batch names its stream."""
    next_token: str | None
    searched_streams: list[str]


@dataclass(frozen=True, slots=True)
class LogStreamInfo:
    name: str
    creation_time: int
    first_event_timestamp: int | None
    last_event_timestamp: int | None
    last_ingestion_time: int | None
    stored_bytes: int
    """Plain (uncompressed) bytes of the stream's records."""
    disk_bytes: int = 0
    """Bytes the stream takes on disk, sealed segments compressed."""


@dataclass(frozen=True, slots=True)
class LogGroupInfo:
    name: str
    creation_time: int
    retention_in_days: int | None
    stored_bytes: int = 0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _fs_name(name: str) -> str:
    if not name:
        raise ValueError("log group and stream names must not be empty")
    raw = name.encode("utf-8", "surrogatepass")
    # The scan runs in C; only the few unsafe bytes (a stream name's two slashes) call back.
    encoded = _UNSAFE.sub(_percent, raw).decode("ascii")
    if len(encoded) > _MAX_FS_NAME:
        # The real name lives in the file header; the hash only has to be stable.
        return "~" + hashlib.sha256(raw).hexdigest()
    return encoded


def _percent(match: re.Match[bytes]) -> bytes:
    return b"%%%02X" % match[0][0]


def _decode_fs_name(fs_name: str) -> str | None:
    if fs_name.startswith("~"):
        return None
    out = bytearray()
    i = 0
    n = len(fs_name)
    try:
        while i < n:
            ch = fs_name[i]
            if ch == "%":
                out.append(int(fs_name[i + 1 : i + 3], 16))
                i += 3
            else:
                out += ch.encode("ascii")
                i += 1
        return out.decode("utf-8", "surrogatepass")
    except (ValueError, UnicodeError):
        return None


def _chop(message: bytes) -> list[bytes]:
    """Split an over-long event at UTF-8 character boundaries, as the awslogs driver does."""
    pieces = []
    while len(message) > MAX_EVENT_BYTES:
        cut = MAX_EVENT_BYTES
        while cut > 0 and (message[cut] & 0xC0) == 0x80:
            cut -= 1
        pieces.append(message[:cut])
        message = message[cut:]
    pieces.append(message)
    return pieces


def _encode_records(timestamp_ms: int, ingestion_ms: int, messages: list[bytes]) -> list[tuple[bytes, int]]:
    """Records (bytes, payload size) for one batch of events sharing a timestamp."""
    joined = b"\n".join(messages)
    if (
        len(joined) <= seg.RECORD_BYTES
        and b"\\" not in joined
        and joined[:1] != b"@"
        and b"\n@" not in joined
        and joined.count(b"\n") == len(messages) - 1
    ):
        # The common case (short lines split from a pipe read) needs no escaping.
        payloads = [(joined + b"\n", len(messages))]
    else:
        if len(joined) > MAX_EVENT_BYTES and max(map(len, messages)) > MAX_EVENT_BYTES:
            messages = [piece for m in messages for piece in _chop(m)]
        payloads = []
        chunk: list[bytes] = []
        size = 0
        for message in messages:
            stored = seg.escape(message)
            if chunk and size + len(stored) + 1 > seg.RECORD_BYTES:
                payloads.append((b"\n".join(chunk) + b"\n", len(chunk)))
                chunk, size = [], 0
            chunk.append(stored)
            size += len(stored) + 1
        if chunk:
            payloads.append((b"\n".join(chunk) + b"\n", len(chunk)))
    delta = ingestion_ms - timestamp_ms
    return [(b"@%d\t%d\t%d\t%d\n" % (timestamp_ms, delta, n, len(p)) + p, len(p)) for p, n in payloads]


class LogWriter:
    """Appends events to one stream; one writer per stream at a time.

    Events are buffered and appended with a single ``write`` on :meth:`flush`
    (and automatically once 64 KiB are pending), so callers that batch (the
    executor flushes after every chunk it reads from a pipe) pay one system
    call per batch. The file descriptor is opened on the first flush that has
    data, which keeps writers for silent processes free. When the active
    segment passes 1 MiB the writer seals it (compresses it into the stream's
    ``.segs`` directory) and starts the next one.
    """

    __slots__ = (
        "_buf",
        "_cap",
        "_closed",
        "_fd",
        "_hint",
        "_path",
        "_pending",
        "_segs_dir",
        "_size",
        "_truncated",
        "_written",
    )

    def __init__(self, path: Path, *, max_bytes: int | None = None, size_hint: int | None = None) -> None:
        self._path = path
        self._hint = size_hint
        self._segs_dir: Path | None = None
        self._fd: int | None = None
        self._size = 0
        self._buf: list[bytes] = []
        self._pending = 0
        self._closed = False
        self._cap = max_bytes
        self._written: int | None = None
        self._truncated = False

    @property
    def path(self) -> Path:
        return self._path

    def write(self, timestamp_ms: int, message: str) -> None:
        """Queue one event. ``message`` should not exceed :data:`MAX_EVENT_BYTES` once encoded."""
        self.write_raw(timestamp_ms, (message.encode("utf-8", "replace"),))

    def write_raw(self, timestamp_ms: int, messages: Iterable[bytes]) -> None:
        """Queue several UTF-8 encoded events sharing one timestamp (the executor's fast path)."""
        if self._closed:
            raise ValueError("write to a closed LogWriter")
        if self._truncated:
            return
        batch = messages if isinstance(messages, list) else list(messages)
        if not batch:
            return
        records = _encode_records(timestamp_ms, _now_ms(), batch)
        if self._cap is not None:
            records = self._apply_cap(timestamp_ms, batch, records)
        for record, _ in records:
            self._buf.append(record)
            self._pending += len(record)
        if self._pending >= _AUTO_FLUSH:
            self.flush()

    def write_lines(self, timestamp_ms: int, data: bytes) -> None:
        """Queue every line of ``data`` as an event sharing one timestamp; empty lines are dropped.

        For callers that hold raw pipe bytes: the common case (newline-terminated
        lines needing no escape) is stored as it is, with no object per line,
        which is several times faster than splitting for :meth:`write_raw`.
        """
        if not data:
            return
        if (
            self._cap is not None
            or len(data) > seg.RECORD_BYTES
            or data[-1:] != b"\n"
            or data[:1] in (b"@", b"\n")
            or b"\\" in data
            or b"\n\n" in data
            or b"\n@" in data
        ):
            self.write_raw(timestamp_ms, [line for line in data.split(b"\n") if line])
            return
        if self._closed:
            raise ValueError("write to a closed LogWriter")
        if self._truncated:
            return
        record = b"@%d\t%d\t%d\t%d\n" % (timestamp_ms, _now_ms() - timestamp_ms, data.count(b"\n"), len(data)) + data
        self._buf.append(record)
        self._pending += len(record)
        if self._pending >= _AUTO_FLUSH:
            self.flush()

    def _apply_cap(
        self, timestamp_ms: int, batch: list[bytes], records: list[tuple[bytes, int]]
    ) -> list[tuple[bytes, int]]:
        assert self._cap is not None
        if self._written is None:
            # A stream reopened (a new writer after a restart) counts what it already holds.
            self._written = _logical_size(self._path)
        incoming = sum(size for _, size in records)
        if self._written + incoming <= self._cap:
            self._written += incoming
            return records
        kept: list[bytes] = []
        room = self._cap - self._written
        for message in batch:
            if len(message) + 1 > room:
                break
            kept.append(message)
            room -= len(message) + 1
        self._truncated = True
        marker = TRUNCATION_MESSAGE.format(limit=self._cap).encode()
        now = _now_ms()
        out = _encode_records(timestamp_ms, now, kept) if kept else []
        return out + _encode_records(timestamp_ms, now, [marker])

    def flush(self) -> None:
        if not self._buf:
            return
        data = b"".join(self._buf)
        self._buf.clear()
        self._pending = 0
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_APPEND | os.O_CREAT | _O_CLOEXEC, 0o644)
            # A stream this writer's store just created holds only its header: no fstat needed.
            self._size = self._hint if self._hint is not None else os.fstat(self._fd).st_size
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)
        if self._size >= seg.SEGMENT_BYTES:
            self._seal()

    def _seal(self) -> None:
        """Compress the active segment into ``.segs`` and start the next one.

        Order matters for readers in other processes: the sealed copy exists
        before the active file is replaced, so every offset below the new
        active segment's base is always found in one or the other.
        """
        assert self._fd is not None
        data = os.pread(self._fd, self._size, 0)
        header = seg.parse_header(data)
        if header is None:
            return
        end = seg.readable_end(data, header.length)
        runs = seg.parse_runs(data, header.length, end)
        info = seg.SealedInfo(
            base=header.base,
            length=end,
            first_timestamp=runs[0].timestamp if runs else None,
            last_timestamp=max(r.timestamp for r in runs) if runs else None,
            last_ingestion_time=max(r.ingestion_time for r in runs) if runs else None,
            count=sum(r.events for r in runs),
            file_name="",
        )
        if self._segs_dir is None:
            self._segs_dir = _segs_dir(self._path)
        self._segs_dir.mkdir(exist_ok=True)
        target = self._segs_dir / seg.sealed_name(info)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(seg.compress(data[:end]))
        os.replace(tmp, target)
        fresh = seg.header_line(header.created, header.name, header.base + end) + data[end:]
        tmp_active = self._path.with_name(self._path.name + ".tmp")
        fd = os.open(tmp_active, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC, 0o644)
        try:
            os.write(fd, fresh)
            os.replace(tmp_active, self._path)
        except BaseException:
            os.close(fd)
            raise
        os.close(self._fd)
        self._fd = fd
        self._size = len(fresh)

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _logical_size(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        return 0
    header = seg.parse_header(head)
    return size + (header.base if header else 0)


class _SealedCache:
    """The last few decompressed sealed segments: immutable, so shared by all readers.

    Paging through a stream asks for the same segment dozens of times in a row;
    decompressing it once instead of per page is most of the paging rate.
    """

    def __init__(self, entries: int = 8) -> None:
        self._entries = entries
        self._items: OrderedDict[str, tuple[bytes, list[seg.Run] | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, length: int) -> bytes:
        key = str(path)
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                return item[0]
        data = seg.decompress(path.read_bytes(), length)
        with self._lock:
            self._items[key] = (data, None)
            while len(self._items) > self._entries:
                self._items.popitem(last=False)
        return data

    def runs(self, path: Path, buf: bytes) -> list[seg.Run]:
        key = str(path)
        with self._lock:
            item = self._items.get(key)
            if item is not None and item[1] is not None and item[0] is buf:
                return item[1]
        runs = seg.parse_runs(buf, 0, len(buf))
        with self._lock:
            if key in self._items and self._items[key][0] is buf:
                self._items[key] = (buf, runs)
        return runs


class _Segment:
    """One segment of a stream view. The active one is read lazily (a page may need only sealed ones)."""

    __slots__ = ("_buf", "_length", "base", "cache", "data_start", "path", "sealed")

    def __init__(
        self,
        base: int,
        sealed: seg.SealedInfo | None,
        path: Path,
        cache: _SealedCache,
        *,
        buf: bytes | None = None,
        data_start: int = 0,
    ) -> None:
        self.base = base
        self.sealed = sealed
        self.path = path
        self.cache = cache
        self.data_start = data_start
        self._buf = buf
        self._length: int | None = None
        if sealed is not None:
            self._length = sealed.length
        elif buf is not None:
            self._length = seg.readable_end(buf, data_start)

    @property
    def length(self) -> int:
        if self._length is None:
            self._load_active()
        assert self._length is not None
        return self._length

    @property
    def end(self) -> int:
        return self.base + self.length

    def file(self) -> Path:
        """The segment's file (``path`` is the ``.segs`` directory of a sealed one: one Path less per segment)."""
        return self.path / self.sealed.file_name if self.sealed is not None else self.path

    def buffer(self) -> bytes:
        if self._buf is None:
            if self.sealed is not None:
                self._buf = self.cache.get(self.file(), self.sealed.length)
            else:
                self._load_active()
        assert self._buf is not None
        return self._buf

    def _load_active(self) -> None:
        buf = _read_prefix(self.path, _MAX_ACTIVE_READ)
        header = seg.parse_header(buf) if buf is not None else None
        if buf is not None and header is not None and header.base == self.base:
            self._buf, self.data_start = buf, header.length
            self._length = seg.readable_end(buf, header.length)
            return
        # Sealed and replaced since the view was taken: the same bytes are in its sealed copy now.
        segs_dir = _segs_dir(self.path)
        for name in _listdir(segs_dir):
            info = seg.parse_sealed_name(name)
            if info is not None and info.base == self.base:
                self.sealed, self.path, self.data_start = info, segs_dir, 0
                self._length = info.length
                self._buf = self.cache.get(self.file(), info.length)
                return
        raise LogStreamNotFoundError(f"The log stream {self.path.name} changed while it was read")


def _segs_dir(active: Path) -> Path:
    return active.with_name(active.name[: -len(_SUFFIX)] + _SEGS_SUFFIX)


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _read_prefix(path: Path, limit: int) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            logger.warning("log segment %s is %d bytes; reading its first %d", path, size, limit)
        return os.pread(fd, min(size, limit), 0)
    finally:
        os.close(fd)


@dataclass(slots=True)
class _StreamView:
    """A consistent snapshot of one stream: its sealed segments then its active one."""

    name: str
    created: int
    segments: list[_Segment]
    disk_bytes: int
    retention_cutoff: int | None = None
    _cache: dict[int, list[seg.Run]] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.segments[-1].end

    def locate(self, offset: int) -> int:
        """Index of the segment holding ``offset`` (the last one for the end of the stream)."""
        lo, hi = 0, len(self.segments) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.segments[mid].base <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def runs(self, index: int, start: int | None = None) -> list[seg.Run]:
        """The runs of segment ``index`` (from the record holding logical offset ``start``, if given)."""
        segment = self.segments[index]
        buf = segment.buffer()
        if start is None:
            cached = self._cache.get(index)
            if cached is None:
                if segment.sealed is not None:
                    cached = self._cache[index] = segment.cache.runs(segment.file(), buf)
                else:
                    cached = self._cache[index] = seg.parse_runs(buf, segment.data_start, segment.length)
            return cached
        rel = start - segment.base
        return seg.parse_runs(buf, seg.record_start(buf, segment.data_start, rel), segment.length)

    def is_boundary(self, offset: int) -> bool:
        if offset < 0:
            return False
        segment = self.segments[self.locate(offset)]
        if offset > segment.end:
            return False
        rel = offset - segment.base
        return rel == 0 or rel == segment.length or segment.buffer()[rel - 1 : rel] == b"\n"

    def time_index(self, timestamp: int) -> int:
        """First segment that may hold events at or after ``timestamp`` (sealed index entries)."""
        for i, segment in enumerate(self.segments):
            last = segment.sealed.last_timestamp if segment.sealed else None
            if segment.sealed is None or (last is not None and last >= timestamp):
                return i
        return len(self.segments) - 1


def _read_group_meta(group_dir: Path) -> dict[str, object]:
    try:
        value = json.loads((group_dir / _GROUP_FILE).read_bytes())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


class LogStore:
    """Log groups and streams on the local file system.

    All methods are synchronous and keep no per-stream state, so readers may
    run in worker threads (or other processes) while writers append.

    ``max_stream_bytes`` caps each stream (one job attempt): output past it is
    dropped after a marker event. Given explicitly, it is saved in the store
    root so that writers in other processes (``LogStore(root)``) apply it too;
    0 means no cap (and clears a saved one); ``None`` uses the saved one.
    """

    def __init__(self, root: Path, *, max_stream_bytes: int | None = None) -> None:
        self._root = Path(root)
        self._made_groups: set[str] = set()
        self._group_dirs_cache: dict[str, Path] = {}
        self._sealed = _SealedCache()
        self._listings: OrderedDict[str, tuple[int, list[seg.SealedInfo]]] = OrderedDict()
        self._lock = threading.Lock()
        self._cap: int | None
        if max_stream_bytes == 0:
            # Explicitly no cap: forget one saved by an earlier run.
            with contextlib.suppress(FileNotFoundError):
                (self._root / _SETTINGS_FILE).unlink()
            self._cap = None
        elif max_stream_bytes is not None:
            if max_stream_bytes < 1024:
                raise ValueError("the log cap must be at least 1024 bytes")
            self._root.mkdir(parents=True, exist_ok=True)
            tmp = self._root / (_SETTINGS_FILE + ".tmp")
            tmp.write_text(json.dumps({"maxStreamBytes": max_stream_bytes}))
            os.replace(tmp, self._root / _SETTINGS_FILE)
            self._cap = max_stream_bytes
        else:
            self._cap = self._saved_cap()

    def _saved_cap(self) -> int | None:
        try:
            value = json.loads((self._root / _SETTINGS_FILE).read_bytes()).get("maxStreamBytes")
        except (FileNotFoundError, ValueError, AttributeError):
            return None
        return value if isinstance(value, int) else None

    @property
    def root(self) -> Path:
        return self._root

    @property
    def max_stream_bytes(self) -> int | None:
        return self._cap

    def _group_dir(self, group: str) -> Path:
        path = self._group_dirs_cache.get(group)
        if path is None:
            path = self._root / _fs_name(group)
            if len(self._group_dirs_cache) < 1024:
                self._group_dirs_cache[group] = path
        return path

    def _stream_path(self, group: str, stream: str) -> Path:
        return self._group_dir(group) / (_fs_name(stream) + _SUFFIX)

    # -- writing -------------------------------------------------------------------------

    def create_log_group(self, group: str) -> None:
        group_dir = self._group_dir(group)
        group_dir.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"logGroupName": group, "creationTime": _now_ms()}).encode()
        try:
            fd = os.open(group_dir / _GROUP_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o644)
        except FileExistsError:
            return
        try:
            os.write(fd, meta)
        finally:
            os.close(fd)

    def _ensure_group(self, group: str) -> None:
        if group not in self._made_groups:
            self.create_log_group(group)
            self._made_groups.add(group)

    def create_stream(self, group: str, stream: str) -> bool:
        """Create an empty stream (CreateLogStream) so that it exists before any output; False if it existed."""
        return self._create_stream(self._stream_path(group, stream), group, stream) > 0

    def _create_stream(self, path: Path, group: str, stream: str) -> int:
        """Bytes of the new stream's header, or 0 if it existed."""
        self._ensure_group(group)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            return 0
        except FileNotFoundError:
            # The group directory vanished under us (external cleanup); recreate it once.
            self._made_groups.discard(group)
            self._ensure_group(group)
            try:
                fd = os.open(path, flags, 0o644)
            except FileExistsError:
                return 0
        header = seg.header_line(_now_ms(), stream, 0)
        try:
            os.write(fd, header)
        finally:
            os.close(fd)
        return len(header)

    def open_writer(self, group: str, stream: str) -> LogWriter:
        """Create the stream if needed (CreateLogStream) and return a writer appending to it."""
        path = self._stream_path(group, stream)
        created = self._create_stream(path, group, stream)
        return LogWriter(path, max_bytes=self._cap, size_hint=created or None)

    def put_retention_policy(self, group: str, days: int) -> None:
        if days not in RETENTION_DAYS:
            raise ValueError(f"retentionInDays must be one of {', '.join(map(str, RETENTION_DAYS))}")
        self._update_group_meta(group, {"retentionInDays": days})
        self.expire(group=group)

    def delete_retention_policy(self, group: str) -> None:
        self._update_group_meta(group, {"retentionInDays": None})

    def _update_group_meta(self, group: str, changes: dict[str, object]) -> None:
        group_dir = self._group_dir(group)
        if not group_dir.is_dir():
            raise LogGroupNotFoundError(f"The specified log group does not exist: {group}")
        meta = _read_group_meta(group_dir)
        meta.setdefault("logGroupName", group)
        meta.setdefault("creationTime", int(group_dir.stat().st_mtime * 1000))
        meta.update(changes)
        tmp = group_dir / (_GROUP_FILE + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({k: v for k, v in meta.items() if v is not None}))
        os.replace(tmp, group_dir / _GROUP_FILE)

    def expire(self, now_ms: int | None = None, *, group: str | None = None) -> int:
        """Delete what retention policies have expired; returns the number of files removed.

        A sealed segment goes once its newest event is older than the group's
        retention; a whole stream goes once its newest event (or, if it has
        none, its last write) is. Readers also hide expired events at once.
        """
        now = _now_ms() if now_ms is None else now_ms
        removed = 0
        groups = [self._group_dir(group)] if group is not None else self._group_dirs()
        for group_dir in groups:
            days = _read_group_meta(group_dir).get("retentionInDays")
            if not isinstance(days, int):
                continue
            cutoff = now - days * _DAY_MS
            try:
                entries = os.listdir(group_dir)
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.endswith(_SEGS_SUFFIX):
                    removed += _expire_sealed(group_dir / entry, cutoff)
                elif entry.endswith(_SUFFIX):
                    removed += _expire_active(group_dir, entry, cutoff)
        return removed

    # -- reading -------------------------------------------------------------------------

    def stream_exists(self, group: str, stream: str) -> bool:
        return self._stream_path(group, stream).is_file()

    def _group_dirs(self) -> list[Path]:
        try:
            return [self._root / e for e in os.listdir(self._root) if (self._root / e).is_dir()]
        except FileNotFoundError:
            return []

    def _retention_cutoff(self, group_dir: Path) -> int | None:
        days = _read_group_meta(group_dir).get("retentionInDays")
        return _now_ms() - days * _DAY_MS if isinstance(days, int) else None

    def _view(self, path: Path, cutoff: int | None = None) -> _StreamView | None:
        try:
            fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            size = os.fstat(fd).st_size
            buf = os.pread(fd, min(size, _EAGER_READ), 0)
        finally:
            os.close(fd)
        header = seg.parse_header(buf)
        if header is None:
            return None
        if size <= _EAGER_READ:
            active = _Segment(header.base, None, path, self._sealed, buf=buf, data_start=header.length)
        else:
            active = _Segment(header.base, None, path, self._sealed)
        sealed: list[_Segment] = []
        if header.base > 0:
            # Listed after the active file was read: every segment below its base exists by then.
            segs_dir = _segs_dir(path)
            sealed = [
                _Segment(info.base, info, segs_dir, self._sealed)
                for info in self._sealed_index(segs_dir)
                if info.base < header.base
            ]
        return _StreamView(header.name, header.created, [*sealed, active], size, cutoff)

    def _sealed_index(self, segs_dir: Path) -> list[seg.SealedInfo]:
        """The sealed segments of a stream, sorted: its directory listing, cached until the directory changes."""
        try:
            version = os.stat(segs_dir).st_mtime_ns
        except (FileNotFoundError, NotADirectoryError):
            return []
        key = str(segs_dir)
        with self._lock:
            cached = self._listings.get(key)
            if cached is not None and cached[0] == version:
                self._listings.move_to_end(key)
                return cached[1]
        infos = sorted(
            (info for name in _listdir(segs_dir) if (info := seg.parse_sealed_name(name)) is not None),
            key=lambda info: info.base,
        )
        with self._lock:
            self._listings[key] = (version, infos)
            while len(self._listings) > _LISTINGS:
                self._listings.popitem(last=False)
        return infos

    def _open_view(self, group: str, stream: str) -> _StreamView:
        group_dir = self._group_dir(group)
        view = self._view(group_dir / (_fs_name(stream) + _SUFFIX), self._retention_cutoff(group_dir))
        if view is None:
            if not group_dir.is_dir():
                raise LogGroupNotFoundError(f"The specified log group does not exist: {group}")
            raise LogStreamNotFoundError(f"The specified log stream does not exist: {stream}")
        return view

    def get_log_events(
        self,
        group: str,
        stream: str,
        *,
        start_time: int | None = None,
        end_time: int | None = None,
        next_token: str | None = None,
        limit: int = MAX_LIMIT,
        start_from_head: bool = False,
    ) -> LogEventsPage:
        """One page of events, as CloudWatch Logs GetLogEvents returns it.

        ``start_time`` is inclusive and ``end_time`` exclusive (epoch ms). A
        token decides the direction when given; otherwise ``start_from_head``
        does: the first ``limit`` events, or the last ``limit`` events. Events
        are always returned oldest first. When nothing new is available the
        token comes back unchanged, which is how clients know to stop.
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        view = self._open_view(group, stream)
        if view.retention_cutoff is not None:
            start_time = max(start_time or 0, view.retention_cutoff)
        if next_token is not None:
            forward, pos = _parse_token(next_token)
            if not view.is_boundary(pos):
                raise InvalidTokenError(f"The specified nextToken is not valid: {next_token}")
            if forward:
                return _read_forward(view, pos, start_time, end_time, limit)
            return _read_backward(view, pos, start_time, end_time, limit)
        if start_from_head:
            first = view.segments[view.time_index(start_time)] if start_time is not None else view.segments[0]
            return _read_forward(view, first.base, start_time, end_time, limit)
        return _read_backward(view, view.end, start_time, end_time, limit)

    def filter_log_events(
        self,
        group: str,
        *,
        stream_names: Sequence[str] | None = None,
        stream_prefix: str | None = None,
        pattern: FilterPattern | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        next_token: str | None = None,
        limit: int = MAX_LIMIT,
    ) -> FilteredEventsPage:
        """FilterLogEvents: matching events of many streams, merged by time, with a resumable token."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        group_dir = self._group_dir(group)
        if not group_dir.is_dir():
            raise LogGroupNotFoundError(f"The specified log group does not exist: {group}")
        cutoff = self._retention_cutoff(group_dir)
        if cutoff is not None:
            start_time = max(start_time or 0, cutoff)
        resume: tuple[int, str, int] | None = _parse_filter_token(next_token) if next_token else None
        if stream_names is not None:
            names = sorted(set(stream_names))
        else:
            names = self._stream_names(group_dir, stream_prefix)
        floor = start_time
        if resume is not None:
            floor = resume[0] if floor is None else max(floor, resume[0])
        cursors = []
        for name in names:
            view = self._view(group_dir / (_fs_name(name) + _SUFFIX))
            if view is None:
                continue
            cursors.append(_merge_source(view, floor, end_time, resume))
        batches: list[EventBatch] = []
        count = 0
        page_bytes = 0
        scanned = 0
        last_key: tuple[int, str, int] | None = None
        more = False
        for found in heapq.merge(*cursors):
            ts, name = found.timestamp, found.stream
            chosen: list[str] = []
            consumed = 0
            first_chosen = 0
            for message in found.messages:
                if pattern is None or pattern.matches(message):
                    if count >= limit or ((chosen or batches) and page_bytes + len(message) > _PAGE_BYTES):
                        more = True
                        break
                    if not chosen:
                        first_chosen = consumed
                    chosen.append(message)
                    count += 1
                    page_bytes += len(message)
                consumed += 1
                scanned += len(message) + 1
                if scanned >= _SCAN_BUDGET:
                    more = True
                    break
            if consumed:
                last_key = (ts, name, found.offset_of(consumed - 1))
            if chosen:
                if batches and batches[-1].stream == name and batches[-1].timestamp == ts:
                    batches[-1].messages.extend(chosen)
                else:
                    batches.append(EventBatch(ts, found.ingestion_time, chosen, name, found.offset + first_chosen))
            if more:
                break
        token = _filter_token(last_key) if more and last_key is not None else None
        return FilteredEventsPage(batches, token, names)

    def _stream_names(self, group_dir: Path, prefix: str | None) -> list[str]:
        try:
            entries = os.listdir(group_dir)
        except (FileNotFoundError, NotADirectoryError):
            return []
        names = []
        for entry in entries:
            if not entry.endswith(_SUFFIX):
                continue
            name = _decode_fs_name(entry[: -len(_SUFFIX)])
            if name is None:
                view = self._view(group_dir / entry)
                if view is None:
                    continue
                name = view.name
            if prefix and not name.startswith(prefix):
                continue
            names.append(name)
        names.sort()
        return names

    def list_streams(self, group: str, prefix: str | None = None) -> list[str]:
        """Names of the streams of ``group`` starting with ``prefix``, sorted; raises if the group is missing."""
        group_dir = self._group_dir(group)
        if not group_dir.is_dir():
            raise LogGroupNotFoundError(f"The specified log group does not exist: {group}")
        return self._stream_names(group_dir, prefix)

    def stream_info(self, group: str, stream: str) -> LogStreamInfo | None:
        view = self._view(self._stream_path(group, stream))
        return None if view is None else _info(view)

    def describe_log_streams(self, group: str, prefix: str | None = None) -> list[LogStreamInfo]:
        """All streams of ``group`` whose name starts with ``prefix``, sorted by name."""
        group_dir = self._group_dir(group)
        infos = []
        for name in self._stream_names(group_dir, prefix):
            view = self._view(group_dir / (_fs_name(name) + _SUFFIX))
            if view is not None:
                infos.append(_info(view))
        return infos

    def describe_log_groups(self, prefix: str | None = None) -> list[LogGroupInfo]:
        groups = []
        for group_dir in self._group_dirs():
            meta = _read_group_meta(group_dir)
            name = meta.get("logGroupName")
            if not isinstance(name, str):
                decoded = _decode_fs_name(group_dir.name)
                if decoded is None:
                    continue
                name = decoded
            if prefix and not name.startswith(prefix):
                continue
            created = meta.get("creationTime")
            retention = meta.get("retentionInDays")
            groups.append(
                LogGroupInfo(
                    name=name,
                    creation_time=created if isinstance(created, int) else int(group_dir.stat().st_mtime * 1000),
                    retention_in_days=retention if isinstance(retention, int) else None,
                )
            )
        groups.sort(key=lambda g: g.name)
        return groups

    def group_exists(self, group: str) -> bool:
        return self._group_dir(group).is_dir()


def _info(view: _StreamView) -> LogStreamInfo:
    first_ts = last_ts = last_ing = None
    for i, segment in enumerate(view.segments):
        if segment.sealed is not None:
            if segment.sealed.first_timestamp is not None:
                first_ts = segment.sealed.first_timestamp
                break
        else:
            runs = view.runs(i)
            if runs:
                first_ts = runs[0].timestamp
    for i in range(len(view.segments) - 1, -1, -1):
        segment = view.segments[i]
        if segment.sealed is not None:
            if segment.sealed.last_timestamp is not None:
                last_ts, last_ing = segment.sealed.last_timestamp, segment.sealed.last_ingestion_time
                break
        else:
            buf = segment.buffer()
            # Only the last record is needed: parse from it rather than from the segment start.
            runs = seg.parse_runs(buf, seg.record_start(buf, segment.data_start, segment.length - 1), segment.length)
            if runs:
                last_ts, last_ing = runs[-1].timestamp, runs[-1].ingestion_time
                break
    return LogStreamInfo(
        name=view.name,
        creation_time=view.created,
        first_event_timestamp=first_ts,
        last_event_timestamp=last_ts,
        last_ingestion_time=last_ing,
        stored_bytes=view.end,
        disk_bytes=view.disk_bytes + sum(_file_size(s.file()) for s in view.segments if s.sealed is not None),
    )


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _parse_token(token: str) -> tuple[bool, int]:
    direction, _, offset = token.partition("/")
    if direction not in ("f", "b") or not offset.isdigit() or len(offset) > 20:
        raise InvalidTokenError(f"The specified nextToken is not valid: {token}")
    return direction == "f", int(offset)


def _in_range(ts: int, start_time: int | None, end_time: int | None) -> bool:
    return (start_time is None or ts >= start_time) and (end_time is None or ts < end_time)


def _run_end(segment: _Segment, run: seg.Run) -> int:
    return segment.base + run.payload_end


def _take(messages: list[str], size: int, room_bytes: int, has_events: bool) -> int:
    """How many of ``messages`` (``size`` bytes stored) fit a page with this much room left.

    An empty page takes at least one event, however large.
    """
    if size <= room_bytes:
        return len(messages)
    taken = 0
    for message in messages:
        if (has_events or taken) and len(message) > room_bytes:
            break
        room_bytes -= len(message)
        taken += 1
    return taken


def _read_forward(
    view: _StreamView, start: int, start_time: int | None, end_time: int | None, limit: int
) -> LogEventsPage:
    batches: list[EventBatch] = []
    count = 0
    page_bytes = 0
    first: int | None = None
    pos = start
    scanned = 0
    full = False
    for index in range(view.locate(start), len(view.segments)):
        segment = view.segments[index]
        buf = segment.buffer()
        runs = view.runs(index, pos) if pos > segment.base else view.runs(index)
        for run in runs:
            run_end = _run_end(segment, run)
            if run_end <= pos:
                continue
            skip = 0
            if segment.base + run.start < pos:
                # Resuming inside a record: skip the events before the token.
                skip = buf.count(b"\n", run.payload_start, pos - segment.base)
            if not _in_range(run.timestamp, start_time, end_time):
                scanned += run.payload_end - run.start
                pos = run_end
                if scanned >= _SCAN_BUDGET:
                    full = True
                    break
                continue
            line = pos - segment.base if skip else run.payload_start
            messages, size, after = seg.read_messages(buf, run, line, run.events - skip, limit - count)
            n = _take(messages, size, _PAGE_BYTES - page_bytes, count > 0)
            if n:
                if first is None:
                    first = pos if skip else segment.base + run.start
                if n < len(messages):
                    messages = messages[:n]
                    size = sum(map(len, messages))
                    after = seg.message_offset(buf, run, skip + n)
                batches.append(EventBatch(run.timestamp, run.ingestion_time, messages))
                count += n
                page_bytes += size
            if after < run.payload_end or n == 0:
                pos = segment.base + (after if n else seg.message_offset(buf, run, skip))
                full = True
                break
            pos = run_end
            scanned += run.payload_end - run.start
            if count >= limit or scanned >= _SCAN_BUDGET:
                full = True
                break
        if full:
            break
        pos = max(pos, segment.end)
    return LogEventsPage(batches, f"f/{pos}", f"b/{start if first is None else first}")


def _read_backward(
    view: _StreamView, end: int, start_time: int | None, end_time: int | None, limit: int
) -> LogEventsPage:
    batches: list[EventBatch] = []
    count = 0
    page_bytes = 0
    last_end: int | None = None
    pos = end
    scanned = 0
    done = False
    for index in range(view.locate(end), -1, -1):
        segment = view.segments[index]
        if segment.base >= end and index > 0:
            continue
        buf = segment.buffer()
        for run in reversed(view.runs(index)):
            run_start = segment.base + run.start
            if run_start >= pos:
                continue
            if not _in_range(run.timestamp, start_time, end_time):
                scanned += run.payload_end - run.start
                pos = run_start
                if scanned >= _SCAN_BUDGET:
                    done = True
                    break
                continue
            inside = _run_end(segment, run) > pos
            # The token may point inside this record: only the events before it.
            keep = buf.count(b"\n", run.payload_start, pos - segment.base) if inside else run.events
            first = max(0, keep - (limit - count))
            line = run.payload_start if first == 0 else seg.message_offset(buf, run, first)
            messages, size, _ = seg.read_messages(buf, run, line, run.events - first, keep - first)
            messages.reverse()
            n = _take(messages, size, _PAGE_BYTES - page_bytes, count > 0)
            if n:
                if last_end is None:
                    last_end = pos if inside else _run_end(segment, run)
                chosen = messages[:n]
                chosen.reverse()
                batches.append(EventBatch(run.timestamp, run.ingestion_time, chosen))
                count += n
                page_bytes += size if n == len(messages) else sum(map(len, chosen))
            if n < keep:
                pos = segment.base + seg.message_offset(buf, run, keep - n)
                done = True
                break
            pos = run_start
            scanned += run.payload_end - run.start
            if count >= limit or scanned >= _SCAN_BUDGET:
                done = True
                break
        if done:
            break
        pos = min(pos, segment.base)
    batches.reverse()
    return LogEventsPage(batches, f"f/{end if last_end is None else last_end}", f"b/{pos}")


class _Found(NamedTuple):
    timestamp: int
    stream: str
    offset: int
    """Resume offset of the first of ``messages``: with the two fields above, the merge key."""
    messages: list[str]
    ingestion_time: int
    first: int
    """Index of the first of ``messages`` in ``run``."""
    run: seg.Run
    segment: _Segment

    def offset_of(self, index: int) -> int:
        """Resume offset of ``messages[index]``."""
        return self.segment.base + seg.message_offset(self.segment.buffer(), self.run, self.first + index)


def _merge_source(
    view: _StreamView, floor: int | None, end_time: int | None, resume: tuple[int, str, int] | None
) -> Iterator[_Found]:
    """Runs of one stream, oldest first, as the merge of FilterLogEvents consumes them.

    Events at or before the resume key ``(timestamp, stream, offset)`` were
    returned by an earlier page and are skipped; the merge key orders events by
    time, then stream name, then position, which is stable across requests.
    """
    start = view.time_index(floor) if floor is not None else 0
    name = view.name
    for index in range(start, len(view.segments)):
        segment = view.segments[index]
        if segment.sealed is not None and floor is not None:
            last = segment.sealed.last_timestamp
            if last is None or last < floor:
                continue
        buf = segment.buffer()
        for run in view.runs(index):
            ts = run.timestamp
            if floor is not None and ts < floor:
                continue
            if end_time is not None and ts >= end_time:
                # Timestamps rise through a stream (one clock), so nothing later can match.
                return
            first = 0
            if resume is not None and ts == resume[0] and name <= resume[1]:
                if name < resume[1] or segment.base + run.payload_end <= resume[2] + 1:
                    continue
                rel = resume[2] - segment.base
                if rel >= run.start:
                    # Events up to and including the one at the resume offset were returned.
                    first = buf.count(b"\n", run.payload_start, rel) + 1
            messages = seg.decode_messages(buf, run, first)
            offset = segment.base + seg.message_offset(buf, run, first)
            yield _Found(ts, name, offset, messages, run.ingestion_time, first, run, segment)


def _filter_token(key: tuple[int, str, int]) -> str:
    return json.dumps([key[0], key[1], key[2]], separators=(",", ":")).encode().hex()


def _parse_filter_token(token: str) -> tuple[int, str, int]:
    try:
        ts, name, offset = json.loads(bytes.fromhex(token))
    except (ValueError, TypeError):
        raise InvalidTokenError(f"The specified nextToken is not valid: {token}") from None
    if not isinstance(ts, int) or not isinstance(name, str) or not isinstance(offset, int):
        raise InvalidTokenError(f"The specified nextToken is not valid: {token}")
    return ts, name, offset


def _expire_sealed(segs_dir: Path, cutoff: int) -> int:
    removed = 0
    try:
        entries = os.listdir(segs_dir)
    except FileNotFoundError:
        return 0
    for entry in entries:
        info = seg.parse_sealed_name(entry)
        if info is not None and info.last_timestamp is not None and info.last_timestamp < cutoff:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(segs_dir / entry)
                removed += 1
    return removed


def _expire_active(group_dir: Path, entry: str, cutoff: int) -> int:
    path = group_dir / entry
    try:
        st = path.stat()
    except FileNotFoundError:
        return 0
    if st.st_mtime * 1000 >= cutoff:
        return 0
    segs_dir = group_dir / (entry[: -len(_SUFFIX)] + _SEGS_SUFFIX)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    shutil.rmtree(segs_dir, ignore_errors=True)
    return 1
