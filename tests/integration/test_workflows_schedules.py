"""Schedule firings missed while the server was down: RUN_ONCE starts one run at start-up, SKIP none."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from openbatch.cli.main import app
from tests.support import ServerProcess, wait_for


def schedules(server: ServerProcess) -> dict[str, dict[str, object]]:
    with httpx.Client(base_url=server.url) as client:
        return {s["name"]: s for s in client.get("/api/workflows/schedules").json()["schedules"]}


@pytest.mark.slow
def test_missed_firings_run_once_or_are_skipped(tmp_path: Path) -> None:
    flow = tmp_path / "yearly.yaml"
    flow.write_text("name: yearly\nsteps:\n  a: {command: ['true']}\n")
    server = ServerProcess(tmp_path / "data").start()
    try:
        for name, policy in (("once", "RUN_ONCE"), ("skip", "SKIP")):
            result = CliRunner().invoke(
                app,
                [
                    "workflow",
                    "schedule",
                    "create",
                    name,
                    "--file",
                    str(flow),
                    "--cron",
                    "0 0 1 1 *",
                    "--missed-run-policy",
                    policy,
                    "--endpoint-url",
                    server.url,
                ],
            )
            assert result.exit_code == 0, result.stderr
        server.stop()
        # Three yearly firings pass while the server is down: 1 January two years ago, last year and this year.
        first = datetime(datetime.now(UTC).year - 2, 1, 1, tzinfo=UTC)
        with sqlite3.connect(tmp_path / "data" / "openbatch.db") as db:
            db.execute("UPDATE workflow_schedules SET next_fire_at = ?", (int(first.timestamp() * 1000),))
        server.start()
        once = wait_for(lambda: schedules(server)["once"].get("lastRunId") and schedules(server)["once"])
        skip = schedules(server)["skip"]
        assert once["missedRuns"] == skip["missedRuns"] == 3
        assert "lastRunId" not in skip
        for item in (once, skip):  # both continue with the next firing after now
            assert int(str(item["nextFireAt"])) > time.time() * 1000
        with httpx.Client(base_url=server.url) as client:
            runs = client.get("/api/workflows/runs", params={"name": "yearly"}).json()["runs"]
        assert [r["schedule"] for r in runs] == ["once"]  # one run, not three
        assert runs[0]["runId"] == once["lastRunId"]
    finally:
        server.stop()
