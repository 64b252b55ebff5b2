"""Structured server log lines: key=value text and JSON carry the same fields."""

from __future__ import annotations

import json
import logging

from openbatch.observability.logging import JsonFormatter, KeyValueFormatter


def _record() -> logging.LogRecord:
    record = logging.LogRecord("openbatch.jobs", logging.INFO, __file__, 1, "job state change", None, None)
    record.__dict__.update({"job_id": "j-1", "new_status": "FAILED", "status_reason": "Essential container exited"})
    return record


def test_text_lines_append_fields_quoting_spaces() -> None:
    line = KeyValueFormatter().format(_record())
    assert line.endswith(
        'INFO openbatch.jobs: job state change job_id=j-1 new_status=FAILED status_reason="Essential container exited"'
    )


def test_json_lines_are_one_object_with_the_fields() -> None:
    entry = json.loads(JsonFormatter().format(_record()))
    assert entry["level"] == "info" and entry["logger"] == "openbatch.jobs"
    assert entry["message"] == "job state change"
    assert (entry["job_id"], entry["new_status"]) == ("j-1", "FAILED")
    assert entry["time"].endswith("+00:00")


def test_lines_without_fields_are_unchanged() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "plain %s", ("text",), None)
    assert KeyValueFormatter().format(record).endswith("WARNING x: plain text")
