"""The on-disk record format of a log stream, shared by writers and readers.

A stream is a sequence of *segments* that together form one logical byte
sequence; tokens are offsets into it. Each segment starts with a header line::

    #openbatch-log-v2 \\t <stream created ms> \\t <escaped stream name> \\t <logical base offset>

followed by *records*. A record holds the events of one ``write_raw`` call,
which share a timestamp and an ingestion time::

    @<timestamp ms>\\t<ingestion - timestamp>\\t<event count>\\t<payload bytes>\\n
    <message 1>\\n
    ...
    <message n>\\n

So a two-byte line such as ``y\\n`` costs two bytes plus a share of one header
per pipe read, instead of a timestamp pair per event. Messages are stored with
only ``\\`` and newline escaped (``\\\\``, ``\\n``) and a leading ``@`` escaped as
``\\@``, so ``\\n@`` marks the start of a record anywhere in a segment: a reader
can start at any offset and find the enclosing record without an index held
by the writer. Lines outside a record that start with a digit are events in
the older one-line format ``<timestamp>\\t<ingestion>\\t<message>`` (version 1
files), still read as such.

The active segment is a plain ``<stream>.log`` file that one writer appends
to. Once it passes :data:`SEGMENT_BYTES`, the writer seals it: it writes a
zstd-compressed copy to ``<stream>.segs/`` under a name that carries the
segment's index entry (logical base, plain length, first and last event
timestamps, last ingestion time, event count), then atomically replaces the
``.log`` file with a fresh one whose header carries the next base. The
directory listing of ``.segs`` is therefore the stream's sparse index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import zstandard

MAGIC_V1 = b"#openbatch-log-v1"
MAGIC_V2 = b"#openbatch-log-v2"
SEGMENT_BYTES = 1024 * 1024
"""Plain size at which the writer seals the active segment."""
RECORD_BYTES = 64 * 1024
"""Payload size at which a batch is split into several records."""
MAX_RECORD_BYTES = 1024 * 1024
"""Upper bound of one record (RECORD_BYTES plus one maximal event plus its header)."""
SEALED_SUFFIX = ".zst"
_COMPRESS_LEVEL = 3


class Run(NamedTuple):
    """The events of one record (or one version-1 line), as offsets into a segment buffer."""

    timestamp: int
    ingestion_time: int
    start: int
    """Offset of the record's first line: the resume point of its first event."""
    payload_start: int
    payload_end: int
    """Offset just past the last message's newline."""
    events: int


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    version: int
    created: int
    name: str
    base: int
    length: int
    """Bytes of the header line, newline included."""


@dataclass(frozen=True, slots=True)
class SealedInfo:
    """An index entry of a sealed segment, parsed from its file name."""

    base: int
    length: int
    first_timestamp: int | None
    last_timestamp: int | None
    last_ingestion_time: int | None
    count: int
    file_name: str

    @property
    def end(self) -> int:
        return self.base + self.length


def escape(message: bytes) -> bytes:
    out = message.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
    return b"\\" + out if out[:1] == b"@" else out


def unescape(stored: bytes) -> bytes:
    if b"\\" not in stored:
        return stored
    if stored[:2] == b"\\@":
        stored = stored[1:]
    # Every backslash in the stored form starts a two-byte escape, so splitting on
    # the escaped backslash left to right stays aligned with the escape pairs.
    return b"\\".join(part.replace(b"\\n", b"\n") for part in stored.split(b"\\\\"))


def header_line(created: int, name: str, base: int) -> bytes:
    return b"%s\t%d\t%s\t%d\n" % (MAGIC_V2, created, escape(name.encode("utf-8", "replace")), base)


def parse_header(buf: bytes) -> SegmentHeader | None:
    nl = buf.find(b"\n")
    if nl < 0 or not buf.startswith(b"#openbatch-log-v"):
        return None
    parts = buf[:nl].split(b"\t")
    try:
        if parts[0] == MAGIC_V2 and len(parts) == 4:
            return SegmentHeader(2, int(parts[1]), _name(parts[2]), int(parts[3]), nl + 1)
        if parts[0] == MAGIC_V1 and len(parts) >= 3:
            # Version 1 names were escaped the same way and may contain tabs.
            return SegmentHeader(1, int(parts[1]), _name(b"\t".join(parts[2:])), 0, nl + 1)
    except ValueError:
        return None
    return None


def _name(raw: bytes) -> str:
    return unescape(raw).decode("utf-8", "replace")


def readable_end(buf: bytes, start: int) -> int:
    """End of the complete records in ``buf``: a record still being appended is not yet visible."""
    end = buf.rfind(b"\n") + 1
    if end <= start:
        return start
    h = buf.rfind(b"\n@", start - 1, end) + 1
    if h <= 0:
        return end
    nl = buf.find(b"\n", h, end)
    fields = buf[h + 1 : nl].split(b"\t")
    try:
        record_end = nl + 1 + int(fields[3])
    except (ValueError, IndexError):
        return h
    return end if record_end <= end else h


def parse_runs(buf: bytes, pos: int, end: int) -> list[Run]:
    """Every record and version-1 event line in ``buf[pos:end]``; ``pos`` must be a record boundary."""
    runs: list[Run] = []
    append = runs.append
    find = buf.find
    while pos < end:
        nl = find(b"\n", pos, end)
        if nl < 0:
            break
        first = buf[pos]
        if first == 64:  # "@": a record header
            try:
                ts_s, di_s, n_s, len_s = buf[pos + 1 : nl].split(b"\t")
                ts = int(ts_s)
                payload_end = nl + 1 + int(len_s)
                run = Run(ts, ts + int(di_s), pos, nl + 1, payload_end, int(n_s))
            except ValueError:
                pos = nl + 1
                continue
            if payload_end > end:
                break
            append(run)
            pos = payload_end
        elif 48 <= first <= 57 or first == 45:  # a version-1 line "<ts>\t<ingestion>\t<message>"
            t1 = find(b"\t", pos, nl)
            t2 = find(b"\t", t1 + 1, nl) if t1 > 0 else -1
            if t2 > 0:
                try:
                    append(Run(int(buf[pos:t1]), int(buf[t1 + 1 : t2]), pos, t2 + 1, nl + 1, 1))
                except ValueError:
                    pass
            pos = nl + 1
        else:  # a header or comment line
            pos = nl + 1
    return runs


def record_start(buf: bytes, data_start: int, offset: int) -> int:
    """The record boundary at or before ``offset`` from which parsing reaches ``offset``."""
    h = buf.rfind(b"\n@", max(data_start - 1, 0), offset + 1)
    return h + 1 if h >= 0 else data_start


def decode_messages(buf: bytes, run: Run, first: int = 0, limit: int | None = None) -> list[str]:
    """Messages ``first`` to ``first + limit`` of ``run``, decoded (invalid UTF-8 replaced)."""
    line = run.payload_start if first == 0 else message_offset(buf, run, first)
    return read_messages(buf, run, line, run.events - first, limit)[0]


def read_messages(buf: bytes, run: Run, line: int, remaining: int, limit: int | None) -> tuple[list[str], int, int]:
    """Up to ``limit`` messages of ``run`` from the message line at offset ``line``.

    ``remaining`` is how many messages there are from ``line`` to the end of the
    record. Returns the messages, their stored size in bytes, and the offset of
    the line after the last one returned.
    """
    payload = buf[line : run.payload_end - 1]
    after = run.payload_end
    if limit is not None and limit < remaining:
        rest = payload.split(b"\n", limit)[-1]
        cut = len(payload) - len(rest) - 1
        payload = payload[:cut]
        after = line + cut + 1
    # One decode and one split for the whole record: "\n" never occurs inside a
    # multi-byte sequence, so this equals decoding each message on its own.
    messages = payload.decode("utf-8", "replace").split("\n")
    if b"\\" in payload:
        messages = [_unescape_text(m) if "\\" in m else m for m in messages]
    return messages, len(payload) - len(messages) + 1, after


def _unescape_text(stored: str) -> str:
    if stored[:2] == "\\@":
        stored = stored[1:]
    return "\\".join(part.replace("\\n", "\n") for part in stored.split("\\\\"))


def message_offset(buf: bytes, run: Run, index: int) -> int:
    """Resume offset of event ``index`` of ``run``: the record itself for the first, else its message line."""
    if index == 0:
        return run.start
    # One C-level split instead of a Python loop over the preceding messages.
    rest = buf[run.payload_start : run.payload_end].split(b"\n", index)[-1]
    return run.payload_end - len(rest)


def sealed_name(info: SealedInfo) -> str:
    def opt(value: int | None) -> str:
        return "-" if value is None else str(value)

    return (
        f"{info.base:020d}.{info.length}.{opt(info.first_timestamp)}.{opt(info.last_timestamp)}."
        f"{opt(info.last_ingestion_time)}.{info.count}{SEALED_SUFFIX}"
    )


def parse_sealed_name(file_name: str) -> SealedInfo | None:
    if not file_name.endswith(SEALED_SUFFIX):
        return None
    parts = file_name[: -len(SEALED_SUFFIX)].split(".")
    if len(parts) != 6:
        return None
    try:
        values = [None if p == "-" else int(p) for p in parts]
    except ValueError:
        return None
    base, length, first, last, ingested, count = values
    if base is None or length is None or count is None:
        return None
    return SealedInfo(base, length, first, last, ingested, count, file_name)


def compress(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=_COMPRESS_LEVEL).compress(data)


def decompress(data: bytes, length: int) -> bytes:
    return zstandard.ZstdDecompressor().decompress(data, max_output_size=length)
