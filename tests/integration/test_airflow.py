"""Airflow's BatchOperator (apache-airflow-providers-amazon) against a real server, unchanged.

Airflow lives in a virtual environment of its own (``.venv-airflow`` at the repository's root, made
on first use): its pins must not decide the project's. The operator submits a job, follows it
to SUCCEEDED and, with ``awslogs_enabled``, shows the job's output read through the CloudWatch
Logs API, every endpoint given by the variables AWS's SDKs read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import CREDENTIALS, REGION, ServerProcess, shell_definition

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_VENV = ROOT / ".venv-airflow"
AIRFLOW_REQUIREMENT = "apache-airflow-providers-amazon>=9.0"

PROBE = """
import sys
from airflow.providers.amazon.aws.operators.batch import BatchOperator

operator = BatchOperator(
    task_id="openbatch",
    job_name="airflow-job",
    job_queue="default",
    job_definition=sys.argv[1],
    awslogs_enabled=True,
    poll_interval=1,
    region_name="us-east-1",
)
print("AIRFLOW JOB", operator.execute({}))
"""


def airflow_python() -> Path:
    python = AIRFLOW_VENV / "bin" / "python"
    if python.exists():
        ready = subprocess.run([str(python), "-c", "import airflow.providers.amazon"], capture_output=True, check=False)
        if ready.returncode == 0:
            return python
    subprocess.run([sys.executable, "-m", "venv", str(AIRFLOW_VENV)], check=True)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", AIRFLOW_REQUIREMENT],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return python


def test_batch_operator_runs_a_job_and_shows_its_log(tmp_path: Path) -> None:
    python = airflow_python()
    server = ServerProcess(tmp_path / "data").start()
    try:
        # Computed by the job: the text appears only in its output, not in the job's description.
        definition = shell_definition(server.batch(), 'echo "answer-$((6 * 7))"; echo "second-$((2 + 3))"')
        environment = {
            **os.environ,
            **CREDENTIALS,
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            # Airflow's default AWS connection, with the endpoints left to the SDK's own variables.
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                {"conn_type": "aws", "login": "test", "password": "test", "extra": {"region_name": REGION}}
            ),
            "AWS_ENDPOINT_URL_BATCH": server.url,
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": server.url,
        }
        result = subprocess.run(
            [str(python), "-c", PROBE, definition],
            capture_output=True,
            text=True,
            env=environment,
            timeout=300,
            check=False,
        )
    finally:
        server.stop()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "AIRFLOW JOB " in result.stdout
    # The job's own lines, fetched by the operator's log fetcher from the CloudWatch Logs API.
    assert "answer-42" in output
    assert "second-5" in output
