"""Append-only, file-per-stream log storage with CloudWatch Logs read semantics.

Layout: ``<root>/<group>/<stream>.log`` where both names are percent-encoded
into a flat, shell-safe file name (``/`` and ``.`` included, so no name can
escape its directory), or replaced by a hash when the encoding would be too
long for the file system.

Each file starts with a header line ``#openbatch-log-v1 <created_ms> <name>``
(tab separated) and then holds one event per line::

    <timestamp_ms>\\t<ingestion_ms>\\t<message>\\n

The message is stored as raw UTF-8 with only ``\\`` and newline escaped
(``\\\\`` and ``\\n``), so tabs and any other character survive untouched and
the common case costs no escaping at all. Invalid UTF-8 written by a process
is kept byte for byte and decoded with replacement characters on read.

Pagination tokens are byte offsets of line boundaries (``f/<offset>`` and
``b/<offset>``), so a page is found with one seek however large the file is;
reads walk the file in fixed-size blocks and never hold more than one page of
events in memory. Writers only ever append whole lines, and readers ignore a
trailing line without its newline, so a reader racing a writer never sees a
torn event.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

MAX_EVENT_BYTES = 256 * 1024 - 26
"""CloudWatch's per-event limit: 256 KiB including 26 bytes of per-event overhead."""
MAX_LIMIT = 10_000
"""Largest ``limit`` GetLogEvents accepts."""

_PAGE_BYTES = 1024 * 1024
# CloudWatch stops a page at 1 MB of messages; matching it bounds response size and memory.
_SCAN_BUDGET = 16 * 1024 * 1024
# A heavily filtered read stops after this many bytes and hands back a token that
# has moved on, as CloudWatch does with empty-but-advancing pages, so no single
# request scans a whole multi-gigabyte file.
_BLOCK = 64 * 1024
_AUTO_FLUSH = 64 * 1024
_MAGIC = b"#openbatch-log-v1"
_SUFFIX = ".log"
_MAX_FS_NAME = 200
_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class LogStreamNotFoundError(LookupError):
    """The log group or stream does not exist (CloudWatch's ResourceNotFoundException)."""


class InvalidTokenError(ValueError):
    """A ``next_token`` that this stream never issued (CloudWatch's InvalidParameterException)."""


@dataclass(frozen=True, slots=True)
class LogEvent:
    timestamp: int
    message: str
    ingestion_time: int


@dataclass(frozen=True, slots=True)
class LogEventsPage:
    events: list[LogEvent]
    next_forward_token: str
    next_backward_token: str


@dataclass(frozen=True, slots=True)
class LogStreamInfo:
    name: str
    creation_time: int
    first_event_timestamp: int | None
    last_event_timestamp: int | None
    last_ingestion_time: int | None
    stored_bytes: int


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _fs_name(name: str) -> str:
    if not name:
        raise ValueError("log group and stream names must not be empty")
    raw = name.encode("utf-8", "surrogatepass")
    encoded = "".join(chr(b) if b in _SAFE_BYTES else f"%{b:02X}" for b in raw)
    if len(encoded) > _MAX_FS_NAME:
        # The real name lives in the file header; the hash only has to be stable.
        return "~" + hashlib.sha256(raw).hexdigest()
    return encoded


def _decode_fs_name(fs_name: str) -> str | None:
    if fs_name.startswith("~"):
        return None
    try:
        return _unpercent(fs_name)
    except ValueError:
        return None


def _unpercent(fs_name: str) -> str:
    out = bytearray()
    i = 0
    n = len(fs_name)
    while i < n:
        ch = fs_name[i]
        if ch == "%":
            out.append(int(fs_name[i + 1 : i + 3], 16))
            i += 3
        else:
            out += ch.encode("ascii")
            i += 1
    return out.decode("utf-8", "surrogatepass")


def _escape(message: bytes) -> bytes:
    return message.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")


def _unescape(stored: bytes) -> bytes:
    if b"\\" not in stored:
        return stored
    # Every backslash in the stored form starts a two-byte escape, so splitting on
    # the escaped backslash left to right stays aligned with the escape pairs.
    return b"\\".join(part.replace(b"\\n", b"\n") for part in stored.split(b"\\\\"))


def _parse_line(line: bytes) -> tuple[int, int, bytes] | None:
    if line[:1] == b"#":
        return None
    parts = line.split(b"\t", 2)
    if len(parts) != 3:
        return None
    try:
        return int(parts[0]), int(parts[1]), parts[2]
    except ValueError:
        return None


def _iter_forward(fd: int, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, line)`` for each complete line in ``[start, end)``."""
    pos = start
    buf = b""
    line_start = start
    while pos < end:
        chunk = os.pread(fd, min(_BLOCK, end - pos), pos)
        if not chunk:
            break
        pos += len(chunk)
        buf = buf + chunk if buf else chunk
        lines = buf.split(b"\n")
        buf = lines.pop()
        for line in lines:
            yield line_start, line
            line_start += len(line) + 1


def _iter_backward(fd: int, end: int) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, line)`` for each line before ``end`` (a line boundary), last line first."""
    pos = end
    tail = b""
    while pos > 0:
        n = min(_BLOCK, pos)
        pos -= n
        block = os.pread(fd, n, pos) + tail
        lines = block[:-1].split(b"\n")
        cur = pos + len(block)
        for line in reversed(lines[1:]):
            cur -= len(line) + 1
            yield cur, line
        tail = lines[0] + b"\n"
    if tail:
        yield 0, tail[:-1]


def _complete_end(fd: int, size: int) -> int:
    """Offset just past the last newline: a trailing line still being written is not yet readable."""
    pos = size
    while pos > 0:
        n = min(_BLOCK, pos)
        pos -= n
        i = os.pread(fd, n, pos).rfind(b"\n")
        if i >= 0:
            return pos + i + 1
    return 0


def _next_line_start(fd: int, pos: int, limit: int) -> int:
    if pos == 0:
        return 0
    scan = pos - 1
    while scan < limit:
        block = os.pread(fd, min(_BLOCK, limit - scan), scan)
        if not block:
            break
        i = block.find(b"\n")
        if i >= 0:
            return scan + i + 1
        scan += len(block)
    return limit


def _line_timestamp(fd: int, offset: int) -> int | None:
    head = os.pread(fd, 32, offset)
    tab = head.find(b"\t")
    if tab <= 0 or head[:1] == b"#":
        return None
    try:
        return int(head[:tab])
    except ValueError:
        return None


def _seek_time(fd: int, end: int, t: int) -> int:
    """Offset of the first line with timestamp >= ``t``.

    Binary search, so it assumes timestamps rise through the file; they do
    unless the wall clock stepped back while the stream was written, in which
    case a filtered read may skip some out-of-order events near the boundary.
    """
    lo, hi = 0, end
    while hi - lo > _BLOCK:
        mid = (lo + hi) // 2
        s = _next_line_start(fd, mid, hi)
        if s >= hi:
            break
        ts = _line_timestamp(fd, s)
        if ts is None or ts < t:
            lo = s
        else:
            hi = s
    for offset, line in _iter_forward(fd, lo, hi):
        parsed = _parse_line(line)
        if parsed is not None and parsed[0] >= t:
            return offset
    return hi


def _is_line_boundary(fd: int, offset: int) -> bool:
    return offset == 0 or os.pread(fd, 1, offset - 1) == b"\n"


def _in_range(ts: int, start_time: int | None, end_time: int | None) -> bool:
    return (start_time is None or ts >= start_time) and (end_time is None or ts < end_time)


def _make_event(ts: int, ingested: int, stored: bytes) -> LogEvent:
    return LogEvent(ts, _unescape(stored).decode("utf-8", "replace"), ingested)


class LogWriter:
    """Appends events to one stream.

    Events are buffered in memory and appended with a single ``write`` on
    :meth:`flush` (and automatically once 64 KiB are pending), so callers that
    batch (the executor flushes after every chunk it reads from a pipe) pay one
    system call per batch. The file descriptor is opened on the first flush
    that has data, which keeps writers for silent processes free.
    """

    __slots__ = ("_buf", "_closed", "_fd", "_path", "_pending")

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None
        self._buf: list[bytes] = []
        self._pending = 0
        self._closed = False

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
        prefix = b"%d\t%d\t" % (timestamp_ms, _now_ms())
        buf = self._buf
        pending = self._pending
        for message in messages:
            record = prefix + message.replace(b"\\", b"\\\\").replace(b"\n", b"\\n") + b"\n"
            buf.append(record)
            pending += len(record)
        self._pending = pending
        if pending >= _AUTO_FLUSH:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        data = b"".join(self._buf)
        self._buf.clear()
        self._pending = 0
        if self._fd is None:
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_CLOEXEC, 0o644)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

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


class LogStore:
    """Log groups and streams on the local file system.

    All methods are synchronous and keep no per-stream state, so readers may
    run in worker threads while writers append from the event loop.
    """

    def __init__(self, root: Path) -> None:
        self._root = Path(root)
        self._made_groups: set[str] = set()

    @property
    def root(self) -> Path:
        return self._root

    def _group_dir(self, group: str) -> Path:
        return self._root / _fs_name(group)

    def _stream_path(self, group: str, stream: str) -> Path:
        return self._group_dir(group) / (_fs_name(stream) + _SUFFIX)

    def open_writer(self, group: str, stream: str) -> LogWriter:
        """Create the stream if needed (CreateLogStream) and return a writer appending to it."""
        path = self._stream_path(group, stream)
        if group not in self._made_groups:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made_groups.add(group)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | _O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            return LogWriter(path)
        except FileNotFoundError:
            # The group directory vanished under us (external cleanup); recreate it once.
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, flags, 0o644)
            except FileExistsError:
                return LogWriter(path)
        try:
            os.write(fd, b"%s\t%d\t%s\n" % (_MAGIC, _now_ms(), _escape(stream.encode("utf-8", "replace"))))
        finally:
            os.close(fd)
        return LogWriter(path)

    def stream_exists(self, group: str, stream: str) -> bool:
        return self._stream_path(group, stream).is_file()

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
        forward token comes back unchanged, which is how clients know to stop.
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        path = self._stream_path(group, stream)
        try:
            fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise LogStreamNotFoundError(f"The specified log stream does not exist: {group} {stream}") from None
        try:
            end = _complete_end(fd, os.fstat(fd).st_size)
            if next_token is not None:
                forward, pos = _parse_token(next_token)
                if pos > end or not _is_line_boundary(fd, pos):
                    raise InvalidTokenError(f"The specified nextToken is not valid: {next_token}")
            elif start_from_head:
                forward = True
                pos = _seek_time(fd, end, start_time) if start_time is not None else 0
            else:
                forward = False
                pos = _seek_time(fd, end, end_time) if end_time is not None else end
            if forward:
                return _read_forward(fd, pos, end, start_time, end_time, limit)
            return _read_backward(fd, pos, start_time, end_time, limit)
        finally:
            os.close(fd)

    def describe_log_streams(self, group: str, prefix: str | None = None) -> list[LogStreamInfo]:
        """All streams of ``group`` whose name starts with ``prefix``, sorted by name."""
        group_dir = self._group_dir(group)
        try:
            entries = os.listdir(group_dir)
        except (FileNotFoundError, NotADirectoryError):
            return []
        infos: list[LogStreamInfo] = []
        for entry in entries:
            if not entry.endswith(_SUFFIX):
                continue
            fs_stem = entry[: -len(_SUFFIX)]
            known = _decode_fs_name(fs_stem)
            if prefix and known is not None and not known.startswith(prefix):
                continue
            info = _stream_info(group_dir / entry, known)
            if info is None or (prefix and not info.name.startswith(prefix)):
                continue
            infos.append(info)
        infos.sort(key=lambda info: info.name)
        return infos


def _parse_token(token: str) -> tuple[bool, int]:
    direction, _, offset = token.partition("/")
    if direction not in ("f", "b") or not offset.isdigit():
        raise InvalidTokenError(f"The specified nextToken is not valid: {token}")
    return direction == "f", int(offset)


def _read_forward(
    fd: int, start: int, end: int, start_time: int | None, end_time: int | None, limit: int
) -> LogEventsPage:
    events: list[LogEvent] = []
    first: int | None = None
    pos = start
    page_bytes = 0
    for offset, line in _iter_forward(fd, start, end):
        if offset - start >= _SCAN_BUDGET:
            break
        parsed = _parse_line(line)
        if parsed is not None and _in_range(parsed[0], start_time, end_time):
            if len(events) >= limit or (events and page_bytes + len(parsed[2]) > _PAGE_BYTES):
                break
            events.append(_make_event(*parsed))
            page_bytes += len(parsed[2])
            if first is None:
                first = offset
        pos = offset + len(line) + 1
    return LogEventsPage(events, f"f/{pos}", f"b/{start if first is None else first}")


def _read_backward(fd: int, end: int, start_time: int | None, end_time: int | None, limit: int) -> LogEventsPage:
    events: list[LogEvent] = []
    last_end: int | None = None
    pos = end
    page_bytes = 0
    for offset, line in _iter_backward(fd, end):
        if end - offset > _SCAN_BUDGET:
            break
        parsed = _parse_line(line)
        if parsed is not None and _in_range(parsed[0], start_time, end_time):
            if len(events) >= limit or (events and page_bytes + len(parsed[2]) > _PAGE_BYTES):
                break
            events.append(_make_event(*parsed))
            page_bytes += len(parsed[2])
            if last_end is None:
                last_end = offset + len(line) + 1
        pos = offset
    events.reverse()
    return LogEventsPage(events, f"f/{end if last_end is None else last_end}", f"b/{pos}")


def _stream_info(path: Path, known_name: str | None) -> LogStreamInfo | None:
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        end = _complete_end(fd, st.st_size)
        name = known_name
        created: int | None = None
        first: tuple[int, int, bytes] | None = None
        for _, line in _iter_forward(fd, 0, end):
            if line.startswith(_MAGIC):
                header = line.split(b"\t", 2)
                if len(header) == 3 and header[1].isdigit():
                    created = int(header[1])
                    name = _unescape(header[2]).decode("utf-8", "replace")
                continue
            first = _parse_line(line)
            if first is not None:
                break
        if name is None:
            return None
        last: tuple[int, int, bytes] | None = None
        if first is not None:
            for _, line in _iter_backward(fd, end):
                last = _parse_line(line)
                if last is not None:
                    break
        if created is None:
            created = first[1] if first is not None else int(st.st_mtime * 1000)
        return LogStreamInfo(
            name=name,
            creation_time=created,
            first_event_timestamp=first[0] if first is not None else None,
            last_event_timestamp=last[0] if last is not None else None,
            last_ingestion_time=last[1] if last is not None else None,
            stored_bytes=st.st_size,
        )
    finally:
        os.close(fd)
