"""Structured server logs: ``key=value`` text (default) or one JSON object per line (``--log-format json``).

Code logs fields with ``extra={...}``; both formats show them, so log shippers get
``operation``, ``status``, ``duration_ms``, ``job_id`` … as fields of their own.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}
_CHATTY = ("botocore", "boto3", "urllib3", "httpcore", "httpx", "asyncio", "multipart", "aiosqlite")
"""Libraries whose debug output drowns the server's own; they log at info and above."""
FORMATS = ("text", "json")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    attributes = vars(record)
    if attributes.keys() <= _STANDARD:
        return {}
    return {k: v for k, v in attributes.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        if not fields:
            return text
        return text + " " + " ".join(f"{k}={_kv(v)}" for k, v in fields.items())


def _kv(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if not text or " " in text or '"' in text or "=" in text:
        return json.dumps(text)
    return text


def configure(level: str, log_format: str) -> None:
    """Send every logger (uvicorn's too) through one root handler in the chosen format."""
    if log_format not in FORMATS:
        raise ValueError(f"--log-format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
