"""Workflows through a real server: the CLI, the native JSON API, and the jobs seen through boto3."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from typer.testing import CliRunner

from openbatch.cli.main import app
from tests.support import ServerProcess, shell_definition, unique, wait_for

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def cli(server: ServerProcess, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["workflow", *args, "--endpoint-url", server.url])
    return result.exit_code, result.stdout, result.stderr


def get(server: ServerProcess, path: str) -> Any:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return client.get(path).json()


def post(server: ServerProcess, path: str, body: Any) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return client.post(path, json=body)


def start(server: ServerProcess, text: str, **params: str) -> dict[str, Any]:
    response = post(server, "/api/workflows/runs", {"definition": text, "parameters": params})
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


def step_status(server: ServerProcess, run_id: str, step: str) -> str:
    status: str = get(server, f"/api/workflows/runs/{run_id}")["steps"][step]["status"]
    return status


def finished(server: ServerProcess, run_id: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run: dict[str, Any] = get(server, f"/api/workflows/runs/{run_id}")
        return run if run["status"] in TERMINAL else None

    result: dict[str, Any] = wait_for(done, timeout, interval=0.1)
    return result


def jobs_of(batch: BatchClient, run: dict[str, Any]) -> dict[str, Any]:
    ids = [step["jobId"] for step in run["steps"].values() if step.get("jobId")]
    described = {job["jobId"]: job for job in batch.describe_jobs(jobs=ids)["jobs"]}
    return {name: described[step["jobId"]] for name, step in run["steps"].items() if step.get("jobId")}


def workflow(name: str, steps: dict[str, Any], **extra: Any) -> str:
    return json.dumps({"name": name, "defaults": {"memory": 64}, "steps": steps, **extra})


def test_the_six_step_graph_runs_in_dependency_order(server: ServerProcess, batch: BatchClient) -> None:
    code, out, err = cli(
        server, "run", str(EXAMPLES / "seed-dag.yaml"), "--param", "day=2026-03-01", "--wait", "-o", "json"
    )
    assert code == 0, err
    run = json.loads(out)
    assert run["status"] == "SUCCEEDED"
    assert {name: step["status"] for name, step in run["steps"].items()} == dict.fromkeys("ABCDEF", "SUCCEEDED")
    jobs = jobs_of(batch, run)
    graph = {"B": "A", "C": "A", "D": "AB", "E": "C", "F": "DE"}
    for step, upstream in graph.items():
        for dep in upstream:
            assert jobs[step]["startedAt"] >= jobs[dep]["stoppedAt"], (step, dep)
    # Steps are ordinary jobs, tagged with their run and step, with the parameter substituted.
    assert jobs["A"]["tags"]["openbatch:workflow-run"] == run["runId"]
    assert jobs["A"]["tags"]["openbatch:workflow-step"] == "A"
    assert jobs["A"]["container"]["command"] == ["sh", "-c", "echo A 2026-03-01"]
    assert {d["jobId"] for d in jobs["D"]["dependsOn"]} == {jobs["A"]["jobId"], jobs["B"]["jobId"]}
    # The run is listed, and shown by the CLI.
    code, out, _ = cli(server, "ls", "--name", "seed-dag", "-o", "json")
    assert run["runId"] in [r["runId"] for r in json.loads(out)["runs"]]
    code, out, _ = cli(server, "show", run["runId"])
    assert code == 0 and "SUCCEEDED" in out


def test_post_trade_pipeline_fans_out_over_instruments(
    server: ServerProcess, batch: BatchClient, tmp_path: Path
) -> None:
    run = start(server, (EXAMPLES / "post-trade.yaml").read_text(), out=str(tmp_path), trades="600")
    run = finished(server, run["runId"])
    assert run["status"] == "SUCCEEDED", run
    steps = run["steps"]
    instruments = steps["cleanse"]["outputs"]["items"]
    assert steps["process"]["arraySize"] == len(instruments) == 6
    assert steps["model"]["outputs"]["instruments"] == 6
    with sqlite3.connect(tmp_path / "insights.db") as db:
        rows = db.execute("SELECT instrument, share FROM insights").fetchall()
    assert sorted(r[0] for r in rows) == instruments
    assert abs(sum(r[1] for r in rows) - 1) < 1e-3
    jobs = jobs_of(batch, run)
    children = batch.list_jobs(arrayJobId=steps["process"]["jobId"], jobStatus="SUCCEEDED")["jobSummaryList"]
    assert len(children) == 6
    assert min(c["startedAt"] for c in children) >= jobs["cleanse"]["stoppedAt"]
    assert jobs["model"]["startedAt"] >= max(c["stoppedAt"] for c in children)
    assert jobs["store"]["startedAt"] >= jobs["model"]["stoppedAt"]
    # The model's output reached the store step's command.
    assert jobs["store"]["container"]["command"][-1] == steps["model"]["outputs"]["top"]


def test_a_step_with_fifty_upstream_steps(server: ServerProcess, batch: BatchClient) -> None:
    steps: dict[str, Any] = {f"s{i}": {"command": ["true"]} for i in range(50)}
    steps["join"] = {"command": ["true"], "dependsOn": [f"s{i}" for i in range(50)]}
    run = finished(server, start(server, workflow(unique("fanin"), steps))["runId"])
    assert run["status"] == "SUCCEEDED"
    jobs = jobs_of(batch, run)
    assert len(jobs["join"]["dependsOn"]) == 50
    assert jobs["join"]["startedAt"] >= max(jobs[f"s{i}"]["stoppedAt"] for i in range(50))


@pytest.mark.slow
def test_a_map_of_500_items_chained_n_to_n(server: ServerProcess, batch: BatchClient) -> None:
    items = list(range(500))
    steps = {
        "first": {"command": ["sh", "-c", 'echo "$OPENBATCH_ITEM" > "$OPENBATCH_OUTPUT"'], "map": {"items": items}},
        "second": {"command": ["true"], "map": {"items": items}, "dependsOn": ["first"]},
    }
    run = finished(server, start(server, workflow(unique("map"), steps))["runId"], timeout=120)
    assert run["status"] == "SUCCEEDED", run.get("statusReason")
    assert run["steps"]["first"]["outputs"] == items
    second = jobs_of(batch, run)["second"]
    assert second["dependsOn"] == [{"jobId": run["steps"]["first"]["jobId"], "type": "N_TO_N"}]
    child = batch.describe_jobs(jobs=[f"{second['jobId']}:7"])["jobs"][0]
    assert child["dependsOn"] == [{"jobId": f"{run['steps']['first']['jobId']}:7"}]


def test_outputs_pass_to_later_steps(server: ServerProcess) -> None:
    steps = {
        "a": {"command": ["sh", "-c", 'echo \'{"n": 42, "cfg": {"x": "y"}}\' > "$OPENBATCH_OUTPUT"']},
        "b": {
            "command": [
                "sh",
                "-c",
                'printf \'{"got": "%s", "doc": %s}\' "$1" "$DOC" > "$OPENBATCH_OUTPUT"',
                "sh",
                "Ref::steps.a.outputs.n",
            ],
            "environment": {"DOC": "Ref::steps.a.outputs"},
            "dependsOn": ["a"],
        },
        "c": {"command": ["sh", "-c", "echo not json > $OPENBATCH_OUTPUT"], "dependsOn": ["b"]},
    }
    run = finished(server, start(server, workflow(unique("outputs"), steps))["runId"])
    assert run["steps"]["b"]["outputs"] == {"got": "42", "doc": {"n": 42, "cfg": {"x": "y"}}}
    assert run["steps"]["c"]["status"] == "FAILED"
    assert "OPENBATCH_OUTPUT is not valid JSON" in run["steps"]["c"]["reason"]
    assert run["status"] == "FAILED" and run["statusReason"].startswith("Step c FAILED")


def test_failure_then_redrive_runs_only_failed_and_never_run_steps(server: ServerProcess, tmp_path: Path) -> None:
    marker = tmp_path / "fixed"
    steps = {
        "a": {"command": ["true"]},
        "b": {"command": ["test", "-e", str(marker)], "dependsOn": ["a"]},
        "c": {"command": ["true"], "dependsOn": ["b"]},
        "d": {"command": ["true"], "dependsOn": ["a"]},
        "alert": {"command": ["true"], "when": "on_failure"},
    }
    run = finished(server, start(server, workflow(unique("redrive"), steps))["runId"])
    status = {name: step["status"] for name, step in run["steps"].items()}
    assert status == {"a": "SUCCEEDED", "b": "FAILED", "c": "NOT_RUN", "d": "SUCCEEDED", "alert": "SUCCEEDED"}
    assert run["status"] == "FAILED"
    assert run["statusReason"].startswith("Step b FAILED: Essential container in task exited (exit code 1)")
    marker.touch()
    code, out, err = cli(server, "redrive", run["runId"], "--wait", "-o", "json")
    assert code == 0, err
    again = json.loads(out)
    assert again["runId"] == run["runId"] and again["status"] == "SUCCEEDED" and again["redriveCount"] == 1
    for kept in ("a", "d"):
        assert again["steps"][kept]["jobId"] == run["steps"][kept]["jobId"]
    assert again["steps"]["b"]["previousJobIds"] == [run["steps"]["b"]["jobId"]]
    assert again["steps"]["c"]["status"] == "SUCCEEDED" and again["steps"]["c"]["jobId"] != run["steps"]["c"]["jobId"]
    assert again["steps"]["alert"]["status"] == "SKIPPED"
    code, _, err = cli(server, "redrive", run["runId"])
    assert code == 1 and "nothing to redrive" in err


def test_cancel_reaches_every_job(server: ServerProcess, batch: BatchClient) -> None:
    steps = {
        "slow": {"command": ["sleep", "60"]},
        "after": {"command": ["true"], "dependsOn": ["slow"]},
        "items": {"command": ["sleep", "60"], "map": {"items": [1, 2]}},
        "uses": {"command": ["echo", "Ref::steps.slow.outputs.x"], "dependsOn": ["slow"]},
    }
    run = start(server, workflow(unique("cancel"), steps))
    wait_for(lambda: step_status(server, run["runId"], "slow") == "RUNNING")
    waiting = get(server, f"/api/workflows/runs/{run['runId']}")["steps"]["uses"]
    assert waiting == {"status": "WAITING", "jobId": None, "reason": "Waiting for 1 upstream step: slow (RUNNING)"}
    code, out, err = cli(server, "cancel", run["runId"], "-o", "json")
    assert code == 0, err
    run = finished(server, run["runId"])
    assert run["status"] == "CANCELLED"
    assert {step["status"] for step in run["steps"].values()} == {"CANCELLED"}
    jobs = jobs_of(batch, run)
    assert {job["status"] for job in jobs.values()} == {"FAILED"}
    code, _, err = cli(server, "cancel", run["runId"])
    assert code == 1 and "already finished" in err


def test_validation_errors_are_listed_by_the_cli_and_the_api(server: ServerProcess, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        textwrap.dedent(
            """\
            name: bad
            steps:
              a: {jobDefinition: no-such-definition}
              b: {command: [x], dependsOn: [c], queue: no-such-queue}
              c: {command: [x], dependsOn: [b]}
            """
        )
    )
    code, out, err = cli(server, "run", str(bad))
    assert code == 1
    assert "steps.a.jobDefinition (line 3): job definition 'no-such-definition' does not exist" in err
    assert "steps.b.queue (line 4): job queue 'no-such-queue' does not exist" in err
    assert "dependency cycle: b → c → b" in err
    assert "Traceback" not in err
    response = post(server, "/api/workflows/runs", {"definition": bad.read_text(), "parameters": {"x": "1"}})
    assert response.status_code == 400
    assert len(response.json()["problems"]) == 4
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/api/workflows/runs/nope").status_code == 404
    document = get(server, "/api/openapi.json")
    assert "/api/workflows/runs/{runId}/redrive" in document["paths"]


def test_cli_reports_an_unreachable_server_in_one_line(tmp_path: Path) -> None:
    flow = tmp_path / "f.json"
    flow.write_text(workflow("f", {"a": {"command": ["true"]}}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "openbatch.cli.main",
            "workflow",
            "run",
            str(flow),
            "--endpoint-url",
            "http://127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot reach OpenBatch at http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_schedule_fires_and_can_be_paused_and_deleted(server: ServerProcess, tmp_path: Path) -> None:
    flow = tmp_path / "scheduled.yaml"
    name = unique("sched")
    flow.write_text(f"name: {name}\nparameters: {{who: x}}\nsteps:\n  a: {{command: [echo, 'Ref::who']}}\n")
    code, out, err = cli(
        server,
        "schedule",
        "create",
        name,
        "--file",
        str(flow),
        "--cron",
        "* * * * * */1",
        "--timezone",
        "Europe/Paris",
        "--param",
        "who=cron",
        "-o",
        "json",
    )
    assert code == 0, err
    assert json.loads(out)["timezone"] == "Europe/Paris"

    def fired() -> str | None:
        _, listing, _ = cli(server, "schedule", "ls", "-o", "json")
        schedules = json.loads(listing)
        mine = schedules if isinstance(schedules, dict) else next(s for s in schedules if s["name"] == name)
        value: str | None = mine.get("lastRunId")
        return value

    run_id = wait_for(fired, 20)
    run = finished(server, run_id)
    assert run["status"] == "SUCCEEDED" and run["schedule"] == name and run["parameters"] == {"who": "cron"}
    # A schedule can submit a job instead, with parameters.
    job = tmp_path / "job.json"
    definition = shell_definition(server.batch(), "echo Ref::who")
    job.write_text(json.dumps({"jobName": "scheduled", "jobQueue": "default", "jobDefinition": definition}))
    code, _, err = cli(
        server, "schedule", "create", f"{name}-job", "--job", str(job), "--cron", "* * * * * */1", "--param", "who=cron"
    )
    assert code == 0, err
    job_id = wait_for(lambda: schedules_of(server)[f"{name}-job"].get("lastJobId"), 20)
    submitted = server.batch().describe_jobs(jobs=[job_id])["jobs"][0]
    assert submitted["tags"]["openbatch:schedule"] == f"{name}-job"
    assert submitted["parameters"]["who"] == "cron"
    assert cli(server, "schedule", "delete", f"{name}-job")[0] == 0
    code, out, _ = cli(server, "schedule", "pause", name, "-o", "json")
    assert json.loads(out)["state"] == "PAUSED"
    code, _, _ = cli(server, "schedule", "delete", name)
    assert code == 0
    code, _, err = cli(server, "schedule", "delete", name)
    assert code == 1 and "does not exist" in err


@pytest.mark.slow
def test_runs_and_schedules_survive_a_server_restart(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data", extra_args=("--kill-grace-seconds", "1")).start()
    try:
        yearly = tmp_path / "yearly.yaml"
        yearly.write_text("name: yearly\nsteps:\n  a: {command: ['true']}\n")
        for name, policy in (("once", "RUN_ONCE"), ("skip", "SKIP")):
            args = ("schedule", "create", name, "--file", str(yearly), "--cron", "0 0 1 1 *")
            code, _, err = cli(proc, *args, "--missed-run-policy", policy)
            assert code == 0, err
        steps = {
            "first": {"command": ["sleep", "2"], "retry": {"attempts": 2}},
            "second": {"command": ["true"], "dependsOn": ["first"]},
            "third": {"command": ["echo", "Ref::steps.first.outputs"], "dependsOn": ["second"]},
        }
        run = start(proc, workflow("restart", steps))
        wait_for(lambda: step_status(proc, run["runId"], "first") == "RUNNING")
        proc.stop()
        # While the server is down, three yearly firings pass: 1 January two years ago, last year, this year.
        missed = datetime(datetime.now(UTC).year - 2, 1, 1, tzinfo=UTC)
        with sqlite3.connect(tmp_path / "data" / "openbatch.db") as db:
            db.execute("UPDATE workflow_schedules SET next_fire_at = ?", (int(missed.timestamp() * 1000),))
        proc.start()
        after = finished(proc, run["runId"])
        assert after["status"] == "SUCCEEDED", after
        assert after["steps"]["third"]["status"] == "SUCCEEDED"
        first = proc.batch().describe_jobs(jobs=[after["steps"]["first"]["jobId"]])["jobs"][0]
        assert len(first["attempts"]) == 2  # the attempt running at the stop ended as a lost host, then retried
        # Missed firings: RUN_ONCE starts one run (not three), SKIP none; both count them and move on.
        once = wait_for(lambda: schedules_of(proc)["once"].get("lastRunId") and schedules_of(proc)["once"])
        skip = schedules_of(proc)["skip"]
        assert once["missedRuns"] == skip["missedRuns"] == 3
        assert "lastRunId" not in skip
        for item in (once, skip):
            assert item["nextFireAt"] > time.time() * 1000
        runs = get(proc, "/api/workflows/runs?name=yearly")["runs"]
        assert [(r["runId"], r["schedule"]) for r in runs] == [(once["lastRunId"], "once")]
    finally:
        proc.stop()


def schedules_of(server: ServerProcess) -> dict[str, Any]:
    return {s["name"]: s for s in get(server, "/api/workflows/schedules")["schedules"]}


def test_submitter_drives_any_batch_endpoint_through_boto3(
    server: ServerProcess, batch: BatchClient, tmp_path: Path
) -> None:
    out = tmp_path / "items"
    out.mkdir()
    steps: dict[str, Any] = {f"u{i}": {"command": ["true"]} for i in range(25)}
    steps["join"] = {"command": ["true"], "dependsOn": [f"u{i}" for i in range(25)]}
    steps["fan"] = {
        "command": ["sh", "-c", f'echo "$OPENBATCH_ITEM" > "{out}/$OPENBATCH_ITEM"'],
        "map": {"items": ["x", "y", "z"]},
        "dependsOn": ["join"],
    }
    steps["then"] = {
        "command": ["sh", "-c", f'test -e "{out}/$OPENBATCH_ITEM"'],
        "map": {"items": ["x", "y", "z"]},
        "dependsOn": ["fan"],
    }
    flow = tmp_path / "submit.json"
    flow.write_text(workflow(unique("submit"), steps))
    runner = CliRunner()
    result = runner.invoke(app, ["workflow", "submit", str(flow), "--endpoint-url", server.url, "--wait", "-o", "json"])
    assert result.exit_code == 0, result.stderr
    submitted = json.loads(result.stdout)
    assert submitted["status"] == "SUCCEEDED"
    assert sorted(p.name for p in out.iterdir()) == ["x", "y", "z"]
    join = batch.describe_jobs(jobs=[submitted["steps"]["join"]["jobId"]])["jobs"][0]
    assert len(join["dependsOn"]) == 2 and len(submitted["markerJobIds"]) == 2  # 25 upstream → two markers
    then = batch.describe_jobs(jobs=[submitted["steps"]["then"]["jobId"]])["jobs"][0]
    assert then["dependsOn"] == [{"jobId": submitted["steps"]["fan"]["jobId"], "type": "N_TO_N"}]
    # A workflow needing the engine is refused with the reason.
    flow.write_text(
        workflow("needs-engine", {"a": {"command": ["true"]}, "b": {"command": ["true"], "when": "always"}})
    )
    result = runner.invoke(app, ["workflow", "submit", str(flow), "--endpoint-url", server.url])
    assert result.exit_code == 1 and "need the OpenBatch workflow engine" in result.stderr


def test_a_step_can_use_a_registered_job_definition(server: ServerProcess, batch: BatchClient) -> None:
    definition = shell_definition(batch, "echo Ref::msg", parameters={"msg": "default"})
    steps = {
        "a": {"jobDefinition": definition, "parameters": {"msg": "from-the-step"}},
        "b": {"jobDefinition": definition.split(":")[0], "dependsOn": ["a"], "environment": {"X": "Ref::day"}},
        "c": {"command": ["true"], "image": "public.ecr.aws/docker/library/busybox:1.36"},
    }
    run = finished(server, start(server, workflow(unique("jobdef"), steps, parameters={"day": "d1"}))["runId"])
    assert run["status"] == "SUCCEEDED"
    jobs = jobs_of(batch, run)
    assert jobs["a"]["container"]["command"] == ["sh", "-c", "echo from-the-step"]
    assert jobs["b"]["container"]["command"] == ["sh", "-c", "echo default"]
    assert {"name": "X", "value": "d1"} in jobs["b"]["container"]["environment"]
    assert jobs["c"]["container"]["image"] == "public.ecr.aws/docker/library/busybox:1.36"
