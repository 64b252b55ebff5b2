"""Workflows and schedules as resource-file kinds for ``openbatch apply/get/describe/delete``.

They live behind the server's native workflow API (``/api/workflows``), not the Batch API::

    kind: Workflow            # the workflow file's own fields: name, parameters, defaults, steps
    name: nightly
    steps:
      extract: {command: [echo, extract]}
    ---
    kind: Schedule            # the CreateSchedule request's fields, plus an optional state
    name: nightly-at-two
    cron: "0 2 * * *"
    workflow: nightly
    state: ENABLED            # or PAUSED

A workflow is registered as a new revision only when its document changed (the server
keeps the latest revision when it is the same); a schedule is updated in place, so its
state and history (last firing, missed runs) stay.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from openbatch.cli import common
from openbatch.cli.common import CliError, Target

WORKFLOW = "Workflow"
SCHEDULE = "Schedule"
SCHEDULE_FIELDS = ("name", "cron", "timezone", "workflow", "job", "parameters", "missedRunPolicy", "state")
SCHEDULE_STATES = ("ENABLED", "PAUSED")
_SCHEDULE_DEFAULTS: dict[str, Any] = {"timezone": "UTC", "missedRunPolicy": "RUN_ONCE", "parameters": {}}


class NativeApi:
    """The server's native workflow API, signed like the Batch client (AWS credential chain)."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The answer's JSON; ``None`` for a 404 on a read; :class:`CliError` for any other failure."""
        url = self.target.endpoint_url + path
        content = json.dumps(body).encode() if body is not None else b""
        headers = self._signed(method, url, content)
        try:
            with httpx.Client(timeout=60.0) as client:
                response = client.request(method, url, content=content, headers=headers)
        except httpx.TransportError as exc:
            raise CliError(
                f"cannot reach OpenBatch at {self.target.endpoint_url}: {exc} (is `openbatch server` running?)"
            ) from None
        try:
            payload = response.json()
        except ValueError:
            raise CliError(
                f"{method} {path} answered HTTP {response.status_code} with a body that is not JSON"
            ) from None
        if response.status_code == 404 and method == "GET":
            return None
        if response.status_code >= 400:
            if not isinstance(payload, dict):
                raise CliError(f"{method} {path} answered HTTP {response.status_code}")
            message = f"{payload.get('__type', 'Error')}: {payload.get('message', response.status_code)}"
            problems = payload.get("problems") or []
            raise CliError(message + (": " + "; ".join(map(str, problems)) if problems else ""))
        return payload

    def _signed(self, method: str, url: str, content: bytes) -> dict[str, str]:
        return common.signed_headers(self.target, method, url, content)


def _path(*parts: str) -> str:
    return "/api/workflows/" + "/".join(quote(p, safe="") for p in parts)


# --- checking a file's documents ------------------------------------------------------------


def problems_of(kind: str, body: dict[str, Any]) -> list[str]:
    """What is wrong with a document, found without the server (it checks the rest when applied)."""
    if kind == WORKFLOW:
        from openbatch.workflows.spec import WorkflowValidationError, validate

        try:
            validate(body)
        except WorkflowValidationError as exc:
            return list(exc.problems)
        return []
    problems = [
        f"unknown field {key!r} (fields: {', '.join(SCHEDULE_FIELDS)})" for key in body if key not in SCHEDULE_FIELDS
    ]
    if not isinstance(body.get("cron"), str):
        problems.append("needs cron (5 fields, or 6 with seconds last)")
    if ("workflow" in body) == ("job" in body):
        problems.append("needs exactly one of workflow (a workflow's name) or job (a SubmitJob request)")
    if "state" in body and body["state"] not in SCHEDULE_STATES:
        problems.append(f"state must be {' or '.join(SCHEDULE_STATES)}; got {body['state']!r}")
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict) or not all(isinstance(v, str) for v in parameters.values()):
        problems.append("parameters must map names to strings")
    return problems


# --- reading --------------------------------------------------------------------------------


def list_of(api: NativeApi, kind: str) -> list[dict[str, Any]]:
    if kind == WORKFLOW:
        return list(api.call("GET", _path("definitions"))["workflows"])
    return list(api.call("GET", _path("schedules"))["schedules"])


def find(api: NativeApi, kind: str, name: str) -> dict[str, Any] | None:
    """A workflow's latest revision (with its document), or a schedule."""
    found: dict[str, Any] | None = api.call("GET", _path("definitions" if kind == WORKFLOW else "schedules", name))
    return found


def require(api: NativeApi, kind: str, name: str) -> dict[str, Any]:
    found = find(api, kind, name)
    if found is None:
        names = sorted(item["name"] for item in list_of(api, kind))
        shown = ", ".join(names[:30]) + (" …" if len(names) > 30 else "") if names else "none"
        raise CliError(f"{kind} {name!r} not found", f"known: {shown}")
    return found


# --- apply ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    action: str
    fields: list[str]


def _changed_fields(desired: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Top-level fields that differ; for steps, which steps."""
    changed: list[str] = []
    for key in sorted(set(desired) | set(current)):
        mine, theirs = desired.get(key), current.get(key)
        if mine == theirs:
            continue
        if key == "steps" and isinstance(mine, dict) and isinstance(theirs, dict):
            changed.extend(
                f"steps.{step}" for step in sorted(set(mine) | set(theirs)) if mine.get(step) != theirs.get(step)
            )
        else:
            changed.append(key)
    return changed


def apply_workflow(api: NativeApi, body: dict[str, Any], *, dry_run: bool) -> Outcome:
    # Compared as JSON, as the server stores it (YAML's own types, such as dates, become strings).
    desired = json.loads(json.dumps(body, default=str))
    current = find(api, WORKFLOW, str(body["name"]))
    if current is not None and current["document"] == desired:
        return Outcome("unchanged", [f"revision {current['revision']}"])
    fields = [] if current is None else _changed_fields(desired, current["document"])
    if dry_run:
        return Outcome("created" if current is None else "updated", fields or ["new revision"])
    registered = api.call("POST", _path("definitions"), {"document": desired})
    if current is not None and registered["revision"] == current["revision"]:
        return Outcome("unchanged", [f"revision {current['revision']}"])
    return Outcome("created" if current is None else "updated", [*fields, f"revision {registered['revision']}"])


def _schedule_definition(body: dict[str, Any]) -> dict[str, Any]:
    """The fields of a schedule that UpdateSchedule replaces, defaults filled in (for comparing)."""
    definition = {k: v for k, v in body.items() if k not in ("name", "state")}
    for key, default in _SCHEDULE_DEFAULTS.items():
        definition.setdefault(key, default)
    return definition


def apply_schedule(api: NativeApi, body: dict[str, Any], *, dry_run: bool) -> Outcome:
    name = str(body["name"])
    desired = _schedule_definition(body)
    state = body.get("state")
    current = find(api, SCHEDULE, name)
    if current is None:
        if not dry_run:
            api.call("POST", _path("schedules"), {"name": name, **desired})
            if state == "PAUSED":
                api.call("POST", _path("schedules", name, "pause"))
        return Outcome("created", [])
    now = {k: current.get(k) for k in desired}
    for key in ("workflow", "job"):
        if key in current and key not in desired:
            now[key] = current[key]
    fields = sorted(k for k in set(desired) | set(now) if desired.get(k) != now.get(k))
    restate = state is not None and state != current.get("state")
    if not fields and not restate:
        return Outcome("unchanged", [])
    if not dry_run:
        if fields:
            api.call("PUT", _path("schedules", name), {"name": name, **desired})
        if restate:
            api.call("POST", _path("schedules", name, "pause" if state == "PAUSED" else "resume"))
    return Outcome("updated", [*fields, *(["state"] if restate else [])])


# --- get / delete ---------------------------------------------------------------------------


def rows(kind: str, items: list[dict[str, Any]], wide: bool) -> tuple[list[str], list[list[Any]]]:
    if kind == WORKFLOW:
        columns = ["NAME", "REVISION", "STEPS", "REGISTERED"]
        now = int(time.time() * 1000)
        return columns, [
            [
                w["name"],
                w.get("revision"),
                w.get("stepCount", len((w.get("document") or {}).get("steps") or {})),
                common.age(w.get("createdAt"), now),
            ]
            for w in items
        ]
    columns = ["NAME", "STATE", "CRON", "TIMEZONE", "RUNS", "NEXT FIRE"] + (
        ["LAST", "MISSED", "LAST ERROR"] if wide else []
    )
    return columns, [
        [
            s["name"],
            s.get("state"),
            s.get("cron"),
            s.get("timezone"),
            f"workflow {s['workflow']}" if s.get("workflow") else "job",
            s.get("nextFireTime", ""),
            *(
                [s.get("lastRunId") or s.get("lastJobId") or "", s.get("missedRuns", 0), s.get("lastError") or ""]
                if wide
                else []
            ),
        ]
        for s in items
    ]


def delete(api: NativeApi, kind: str, name: str) -> str:
    require(api, kind, name)
    api.call("DELETE", _path("definitions" if kind == WORKFLOW else "schedules", name))
    return f"{kind}/{name} deleted"
