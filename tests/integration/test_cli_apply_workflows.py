"""``openbatch apply/get/describe/delete`` for workflows and schedules, the installed command against a real
server: created / updated (fields) / unchanged, the native API's state afterwards, and the error paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from openbatch.cli.background import free_port
from tests.integration.test_cli_commands import cli, cli_all, failed, ok
from tests.support import ServerProcess, unique, wait_for


def _write(path: Path, documents: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def _flow(name: str, greeting: str, definition: str) -> dict[str, Any]:
    return {
        "kind": "Workflow",
        "name": name,
        "parameters": {"who": "world"},
        "defaults": {"memory": 64},
        "steps": {
            "hello": {"command": ["echo", greeting, "Ref::who"]},
            "done": {"jobDefinition": definition, "dependsOn": ["hello"]},
        },
    }


def _schedule(name: str, flow: str, cron: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "Schedule", "name": name, "cron": cron, "workflow": flow, "parameters": {"who": "cron"}, **extra}


def _definition(name: str) -> dict[str, Any]:
    return {
        "kind": "JobDefinition",
        "jobDefinitionName": name,
        "type": "container",
        "containerProperties": {
            "image": "local",
            "command": ["true"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "32"}],
        },
    }


def _api(server: ServerProcess, path: str) -> Any:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return client.get(path).json()


@pytest.mark.slow
def test_apply_workflows_and_schedules(server: ServerProcess, tmp_path: Path) -> None:
    flow, schedule, definition = unique("flow"), unique("nightly"), unique("done")
    # Listed schedule first: apply still registers the job definition, then the workflow, then the schedule.
    first = _write(
        tmp_path / "first.yaml",
        [_schedule(schedule, flow, "0 2 * * *"), _flow(flow, "hello", definition), _definition(definition)],
    )
    assert ok(cli(server, "apply", "-f", str(first))).splitlines() == [
        f"JobDefinition/{definition} created (revision 1)",
        f"Workflow/{flow} created (revision 1)",
        f"Schedule/{schedule} created",
    ]
    again = json.loads(ok(cli(server, "apply", "-f", str(first), "-o", "json")))
    assert [(c["label"], c["action"]) for c in again] == [
        (f"JobDefinition/{definition}", "unchanged"),
        (f"Workflow/{flow}", "unchanged"),
        (f"Schedule/{schedule}", "unchanged"),
    ]
    assert _api(server, f"/api/workflows/definitions/{flow}")["revision"] == 1

    changed = _write(
        tmp_path / "changed.yaml",
        [
            _definition(definition),
            _flow(flow, "bonjour", definition),
            _schedule(schedule, flow, "30 3 * * *", timezone="Europe/Paris", state="PAUSED"),
        ],
    )
    planned = ok(cli(server, "apply", "-f", str(changed), "--dry-run"))
    assert f"Workflow/{flow} would be updated (steps.hello)" in planned
    assert f"Schedule/{schedule} would be updated (cron, timezone, state)" in planned
    assert _api(server, f"/api/workflows/schedules/{schedule}")["cron"] == "0 2 * * *"
    assert ok(cli(server, "apply", "-f", str(changed))).splitlines() == [
        f"JobDefinition/{definition} unchanged (revision 1)",
        f"Workflow/{flow} updated (steps.hello, revision 2)",
        f"Schedule/{schedule} updated (cron, timezone, state)",
    ]
    described = _api(server, f"/api/workflows/schedules/{schedule}")
    assert (described["cron"], described["timezone"], described["state"]) == ("30 3 * * *", "Europe/Paris", "PAUSED")
    assert "nextFireAt" not in described  # paused: it does not fire
    stored = _api(server, f"/api/workflows/definitions/{flow}")
    assert stored["revision"] == 2 and stored["document"]["steps"]["hello"]["command"][1] == "bonjour"

    workflows, one_flow, schedules, described_flow, described_schedule = cli_all(
        server,
        ["get", "workflows"],
        ["get", "workflow", flow, "-o", "json"],
        ["get", "schedules", "-o", "wide"],
        ["describe", "workflow", flow],
        ["describe", "schedule", schedule, "-o", "json"],
    )
    header, *rows = ok(workflows).splitlines()
    assert header.split() == ["NAME", "REVISION", "STEPS", "REGISTERED"]
    assert next(r.split() for r in rows if r.startswith(flow + " "))[1:3] == ["2", "2"]
    assert json.loads(ok(one_flow))["document"]["name"] == flow
    header, *rows = ok(schedules).splitlines()
    assert header.split()[:3] == ["NAME", "STATE", "CRON"] and "LAST ERROR" in header
    assert next(r.split() for r in rows if r.startswith(schedule + " "))[1] == "PAUSED"
    assert yaml.safe_load(ok(described_flow))["revision"] == 2
    assert json.loads(ok(described_schedule))["workflow"] == flow

    # Back to ENABLED with a firing every second: the schedule applied is the one the server fires.
    firing = _write(tmp_path / "firing.yaml", [_schedule(schedule, flow, "* * * * * */1", state="ENABLED")])
    assert ok(cli(server, "apply", "-f", str(firing))).strip() == (
        f"Schedule/{schedule} updated (cron, timezone, state)"
    )
    run_id = wait_for(lambda: _api(server, f"/api/workflows/schedules/{schedule}").get("lastRunId"), 30)
    run = _api(server, f"/api/workflows/runs/{run_id}")
    assert run["schedule"] == schedule and run["parameters"] == {"who": "cron"} and run["revision"] == 2

    # A workflow a schedule names cannot be deleted; the schedule first, then the workflow.
    failed(cli(server, "delete", "workflow", flow), 1, f"used by schedule(s) {schedule}")
    assert ok(cli(server, "delete", "schedule", schedule)).strip() == f"Schedule/{schedule} deleted"
    assert ok(cli(server, "delete", "wf", flow)).strip() == f"Workflow/{flow} deleted"
    missing_schedule, missing_flow, runs = cli_all(
        server,
        ["describe", "schedule", schedule],
        ["get", "workflow", flow],
        ["workflow", "show", run_id, "-o", "json"],
    )
    failed(missing_schedule, 1, f"Schedule {schedule!r} not found", "known:")
    failed(missing_flow, 1, f"Workflow {flow!r} not found")
    assert json.loads(ok(runs))["runId"] == run_id  # its runs stay


@pytest.mark.slow
def test_apply_workflow_error_paths(server: ServerProcess, tmp_path: Path) -> None:
    flow, schedule = unique("flow"), unique("sched")
    bad_flow = _write(
        tmp_path / "bad-flow.yaml",
        [
            {"kind": "Workflow", "name": flow, "steps": {"a": {"command": ["true"], "dependsOn": ["nowhere"]}}},
            {"kind": "Schedule", "name": schedule, "cron": "0 2 * * *"},
            {"kind": "Schedule", "name": unique("s"), "cron": "0 2 * * *", "workflow": "w", "colour": "red"},
        ],
    )
    no_workflow = _write(tmp_path / "no-workflow.yaml", [_schedule(schedule, unique("ghost"), "0 2 * * *")])
    bad_cron = _write(tmp_path / "bad-cron.yaml", [_schedule(schedule, flow, "every day")])
    down = f"http://127.0.0.1:{free_port()}"
    bad_file, unknown_workflow, unknown_schedule, delete_unknown, apply_ghost, unreachable = cli_all(
        server,
        ["apply", "-f", str(bad_flow)],
        ["describe", "workflow", "no-such-flow"],
        ["get", "schedule", "no-such-schedule"],
        ["delete", "schedule", "no-such-schedule"],
        ["apply", "-f", str(no_workflow)],
        ["get", "workflows", "--endpoint-url", down],
    )
    failed(unreachable, 1, f"cannot reach OpenBatch at {down}", "is `openbatch server` running?")
    stderr = failed(bad_file, 2, f"{bad_flow} is not a valid resource file", "dependsOn")
    assert "needs exactly one of workflow" in stderr and "unknown field 'colour'" in stderr
    failed(unknown_workflow, 1, "Workflow 'no-such-flow' not found")
    failed(unknown_schedule, 1, "Schedule 'no-such-schedule' not found")
    failed(delete_unknown, 1, "Schedule 'no-such-schedule' not found")
    failed(apply_ghost, 1, "ResourceNotFoundException", "does not exist: register it first")
    # Nothing of the bad file was applied.
    assert _api(server, f"/api/workflows/definitions/{flow}")["__type"] == "ResourceNotFoundException"
    assert schedule not in [s["name"] for s in _api(server, "/api/workflows/schedules")["schedules"]]

    # The server checks the cron expression (the file is well-formed): the workflow is registered, the schedule not.
    valid_flow = _write(
        tmp_path / "valid.yaml", [{"kind": "Workflow", "name": flow, "steps": {"a": {"command": ["true"]}}}]
    )
    ok(cli(server, "apply", "-f", str(valid_flow)))
    failed(cli(server, "apply", "-f", str(bad_cron)), 1, "ClientException", "not a valid cron expression")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        update_missing = client.put("/api/workflows/schedules/no-such", json={"cron": "* * * * *", "workflow": flow})
        renamed = client.post(
            "/api/workflows/schedules", json={"name": schedule, "cron": "0 1 * * *", "workflow": flow}
        )
        assert renamed.status_code == 200, renamed.text
        rename = client.put(f"/api/workflows/schedules/{schedule}", json={"name": "other", "cron": "* * * * *"})
    assert update_missing.status_code == 404 and update_missing.json()["__type"] == "ResourceNotFoundException"
    assert rename.status_code == 400 and "does not match" in rename.json()["message"]
