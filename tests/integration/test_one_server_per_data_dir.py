"""A second server on a data dir (or SQLite database) that a live server uses is refused, in one line,
before it binds its port or touches a job: the first server's running job goes on and succeeds."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from openbatch.cli.background import free_port
from tests.support import ServerProcess, make_queue, shell_definition, wait_for_status


def _second_server(data_dir: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "openbatch.cli.main", "server", "--port", str(port), "--data-dir", str(data_dir)]
    return subprocess.Popen([*command, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _outcome(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        stdout, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"the second server was not refused:\n{stderr}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_second_server_on_the_same_data_dir_or_database_is_refused(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path / "data", env={"OPENBATCH_GPUS": ""}).start()
    try:
        batch = first.batch()
        queue = make_queue(batch)
        done = tmp_path / "done"
        definition = shell_definition(batch, f"sleep 3; echo finished > {done}")
        job_id = batch.submit_job(jobName="long", jobQueue=queue, jobDefinition=definition)["jobId"]
        wait_for_status(batch, job_id, ["RUNNING"])
        assert first.process is not None

        port = free_port()
        database = f"sqlite:///{first.data_dir / 'openbatch.db'}"
        starting = [
            _second_server(first.data_dir, port),
            _second_server(tmp_path / "other", port, "--database-url", database),
        ]
        same_dir, same_database = (_outcome(process) for process in starting)

        for refused, what in ((same_dir, f"data dir {first.data_dir}"), (same_database, "SQLite database")):
            assert refused.returncode == 1, refused.stderr
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1, refused.stderr
            assert f"another openbatch server (pid {first.process.pid}) is using the {what}" in lines[0]
            assert "Traceback" not in refused.stderr and "OpenBatch ready" not in refused.stdout + refused.stderr
        assert _port_is_free(port), "the refused server bound its port"
        # The refused server read no job and reached no supervisor: the first one's job runs on to its end.
        finished = wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"], timeout=30)
        assert finished["status"] == "SUCCEEDED", finished.get("statusReason")
        assert finished["attempts"][0]["container"]["exitCode"] == 0
        assert done.read_text() == "finished\n"
    finally:
        first.stop()

    # The lock goes with the process: a server on that data dir starts again once the first has stopped.
    again = ServerProcess(tmp_path / "data", env={"OPENBATCH_GPUS": ""}).start()
    try:
        assert again.batch().describe_jobs(jobs=[job_id])["jobs"][0]["status"] == "SUCCEEDED"
    finally:
        again.stop()
