"""Jobs are walled off from the server (its environment, store and files are out of their reach), and
contained: descendants that leave the job's process group are still the attempt's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import ServerProcess, make_queue, shell_definition, unique, wait_for_status

DONE = ("SUCCEEDED", "FAILED")
SECRET = "s3cr3t-value-the-job-must-not-see"


@pytest.mark.skipif(os.geteuid() != 0, reason="jobs run as another user only under a root server")
def test_job_cannot_read_server_environment_or_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # The server's default under root: jobs run as nobody.
    server = ServerProcess(data, job_user=None, env={"OPENBATCH_TEST_SECRET": SECRET}).start()
    try:
        assert server.process is not None
        batch = server.batch()
        queue = make_queue(batch, max_vcpus=2)
        probes = {
            "uid": "id -u",
            "parent-env": "cat /proc/$PPID/environ",
            "server-env": f"cat /proc/{server.process.pid}/environ",
            "store": f"cat {data}/openbatch.db | head -c 100",
            "list-data": f"ls {data}",
            "work-dir": "pwd",
            "home": 'echo "$HOME"',
        }
        script = "; ".join(f'echo "== {name}"; {command} 2>&1 | tr "\\0" " "' for name, command in probes.items())
        definition = shell_definition(batch, script)
        job_id = batch.submit_job(jobName=unique("iso"), jobQueue=queue, jobDefinition=definition)["jobId"]
        job = wait_for_status(batch, job_id, DONE)
        stream = job["container"]["logStreamName"]
        logs = server.logs()
        events = logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=stream, startFromHead=True)
        output = "\n".join(e["message"] for e in events["events"])
        sections = {name: body for name, _, body in (part.partition("\n") for part in output.split("== ")[1:])}
        assert SECRET not in output
        assert sections["uid"].strip() != "0"
        assert "Permission denied" in sections["server-env"]
        assert "Permission denied" in sections["store"]
        assert "Permission denied" in sections["list-data"]
        assert not sections["work-dir"].strip().startswith(str(data))
        assert sections["home"].strip() == sections["work-dir"].strip()
    finally:
        server.stop()


def _gone(pid: int) -> bool:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True
    return data[data.rfind(b")") + 2 : data.rfind(b")") + 3] == b"Z"


def test_setsid_grandchild_is_killed_at_timeout_and_counted_for_memory(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", extra_args=("--kill-grace-seconds", "1")).start()
    try:
        batch = server.batch()
        queue = make_queue(batch, max_vcpus=4)
        pid_file = tmp_path / "grandchild"
        # A grandchild in a session of its own, outliving its parent's group: the attempt's all the same.
        escaper = shell_definition(
            batch,
            f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 300' & sleep 300",
            timeout={"attemptDurationSeconds": 2},
        )
        job_id = batch.submit_job(jobName=unique("t"), jobQueue=queue, jobDefinition=escaper)["jobId"]
        job = wait_for_status(batch, job_id, DONE)
        assert job["status"] == "FAILED"
        assert job["statusReason"] == "Job attempt duration exceeded timeout"
        assert _gone(int(pid_file.read_text()))

        hog = "python3 -c 'import time; x = bytearray(400 << 20); time.sleep(30)'"
        greedy = shell_definition(
            batch,
            f'setsid sh -c "{hog}" & sleep 30',
            container={"resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "128"}]},
        )
        job_id = batch.submit_job(jobName=unique("m"), jobQueue=queue, jobDefinition=greedy)["jobId"]
        job = wait_for_status(batch, job_id, DONE)
        assert job["status"] == "FAILED"
        assert job["attempts"][0]["container"]["reason"] == "OutOfMemoryError: Container killed due to memory usage"
    finally:
        server.stop()
