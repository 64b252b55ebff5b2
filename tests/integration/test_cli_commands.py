"""The ``openbatch`` command itself (the installed executable) against a real server: every verb,
its outputs and exit codes, and the error paths (server down, unknown names, bad files, port taken)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from openbatch.cli.background import free_port
from tests.support import ServerProcess, make_queue, shell_definition, unique, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

OPENBATCH = str(Path(sys.executable).with_name("openbatch"))


def cli(
    server: ServerProcess | None, *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run ``openbatch ARGS`` pointed at ``server`` (or at nothing), with no user config file."""
    # No user config and no AWS credentials of the machine's: each test sets what it needs.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OPENBATCH_"))}
    base.update(
        OPENBATCH_CONFIG="/nonexistent/openbatch.yaml",
        AWS_CONFIG_FILE="/nonexistent/aws-config",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/aws-credentials",
        COLUMNS="200",
    )
    if server is not None:
        base["OPENBATCH_ENDPOINT_URL"] = server.url
    return subprocess.run(
        [OPENBATCH, *args], capture_output=True, text=True, timeout=timeout, env={**base, **(env or {})}
    )


def cli_all(
    server: ServerProcess | None, *commands: Sequence[str], env: dict[str, str] | None = None
) -> list[subprocess.CompletedProcess[str]]:
    """Independent invocations side by side (each one mostly waits on Python starting up)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: cli(server, *args, env=env), commands))


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result.stdout


def failed(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """The command failed with ``code`` and one error line (plus at most a hint), no traceback."""
    assert result.returncode == code, (result.args, result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert len(lines) <= 2 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    return result.stderr


def resources_file(tmp_path: Path, names: dict[str, str], *, max_vcpus: int, priority: int, message: str) -> Path:
    documents: list[dict[str, Any]] = [
        {
            "kind": "ComputeEnvironment",
            "computeEnvironmentName": names["ce"],
            "type": "MANAGED",
            "computeResources": {
                "type": "EC2",
                "minvCpus": 0,
                "maxvCpus": max_vcpus,
                "instanceTypes": ["optimal"],
                "subnets": ["subnet-1"],
                "instanceRole": "ecsInstanceRole",
            },
        },
        {
            "kind": "JobQueue",
            "jobQueueName": names["queue"],
            "priority": priority,
            "schedulingPolicyArn": names["policy"],
            "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": names["ce"]}],
        },
        {
            "kind": "JobDefinition",
            "jobDefinitionName": names["definition"],
            "type": "container",
            "parameters": {"msg": message},
            "retryStrategy": {"attempts": 2, "evaluateOnExit": [{"onExitCode": "3", "action": "EXIT"}]},
            "timeout": {"attemptDurationSeconds": 600},
            "containerProperties": {
                "image": "local",
                "command": ["echo", "Ref::msg"],
                "environment": [{"name": "GREETING", "value": "hello"}],
                "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"}],
            },
        },
        {
            "kind": "SchedulingPolicy",
            "name": names["policy"],
            "fairsharePolicy": {
                "shareDecaySeconds": 60,
                "shareDistribution": [{"shareIdentifier": "team", "weightFactor": 1}],
            },
        },
    ]
    path = tmp_path / f"resources-{max_vcpus}-{priority}-{message}.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


@pytest.mark.slow
def test_apply_get_describe_delete(server: ServerProcess, batch: BatchClient, tmp_path: Path) -> None:
    names = {k: unique(k) for k in ("ce", "queue", "definition", "policy")}
    first = resources_file(tmp_path, names, max_vcpus=4, priority=5, message="one")
    created = ok(cli(server, "apply", "-f", str(first))).splitlines()
    # Applied in dependency order: the policy and the compute environment before the queue using them.
    assert created == [
        f"SchedulingPolicy/{names['policy']} created",
        f"ComputeEnvironment/{names['ce']} created",
        f"JobQueue/{names['queue']} created",
        f"JobDefinition/{names['definition']} created (revision 1)",
    ]
    again = json.loads(ok(cli(server, "apply", "-f", str(first), "-o", "json")))
    assert [c["action"] for c in again] == ["unchanged"] * 4, again
    definitions = batch.describe_job_definitions(jobDefinitionName=names["definition"])["jobDefinitions"]
    assert [d["revision"] for d in definitions] == [1]

    changed = resources_file(tmp_path, names, max_vcpus=8, priority=7, message="two")
    planned = ok(cli(server, "apply", "-f", str(changed), "--dry-run"))
    assert f"ComputeEnvironment/{names['ce']} would be updated (computeResources.maxvCpus)" in planned
    assert batch.describe_job_queues(jobQueues=[names["queue"]])["jobQueues"][0]["priority"] == 5
    applied = ok(cli(server, "apply", "-f", str(changed))).splitlines()
    assert applied == [
        f"SchedulingPolicy/{names['policy']} unchanged",
        f"ComputeEnvironment/{names['ce']} updated (computeResources.maxvCpus)",
        f"JobQueue/{names['queue']} updated (priority)",
        f"JobDefinition/{names['definition']} updated (revision 2)",
    ]
    ce = batch.describe_compute_environments(computeEnvironments=[names["ce"]])["computeEnvironments"][0]
    assert ce["computeResources"]["maxvCpus"] == 8
    queue = batch.describe_job_queues(jobQueues=[names["queue"]])["jobQueues"][0]
    assert queue["priority"] == 7 and queue["schedulingPolicyArn"].endswith(f"/{names['policy']}")

    listed_ce, queues, revisions, policy, described, missing, bad_kind, in_use = cli_all(
        server,
        ["get", "ce", "-o", "json"],
        ["get", "queues", "-o", "wide"],
        ["get", "jd", names["definition"], "-o", "yaml"],
        ["get", "sp", names["policy"]],
        ["describe", "queue", names["queue"], "-o", "json"],
        ["describe", "queue", "no-such-queue"],
        ["get", "widgets"],
        ["delete", "ce", names["ce"]],
    )
    assert names["ce"] in [c["computeEnvironmentName"] for c in json.loads(ok(listed_ce))]
    header, *rows = ok(queues).splitlines()
    assert header.split()[:4] == ["NAME", "PRIORITY", "STATE", "STATUS"] and "ARN" in header
    row = next(r.split() for r in rows if r.startswith(names["queue"] + " "))
    assert row[1:5] == ["7", "ENABLED", "VALID", names["ce"]]
    assert [d["revision"] for d in yaml.safe_load(ok(revisions))] == [1, 2]
    assert names["policy"] in ok(policy)
    assert json.loads(ok(described))["jobQueueName"] == names["queue"]
    failed(missing, 1, "JobQueue 'no-such-queue' not found", names["queue"])
    failed(bad_kind, 2, "unknown kind 'widgets'")

    # A queue and a compute environment must be disabled before deletion: the CLI does it.
    failed(in_use, 1, "used by job queue(s)", names["queue"])
    deleted = cli(server, "delete", "queue", names["queue"])
    assert "disabling" in deleted.stderr and ok(deleted).strip() == f"JobQueue/{names['queue']} deleted"
    assert batch.describe_job_queues(jobQueues=[names["queue"]])["jobQueues"] == []
    for result in cli_all(
        server, ["delete", "ce", names["ce"]], ["delete", "jd", names["definition"]], ["delete", "sp", names["policy"]]
    ):
        ok(result)
    assert batch.describe_compute_environments(computeEnvironments=[names["ce"]])["computeEnvironments"] == []
    active = batch.describe_job_definitions(jobDefinitionName=names["definition"], status="ACTIVE")
    assert active["jobDefinitions"] == []
    assert names["policy"] not in json.dumps(batch.list_scheduling_policies())


@pytest.mark.slow
def test_submit_wait_ls_and_describe(server: ServerProcess, batch: BatchClient) -> None:
    queue = make_queue(batch)
    definition = shell_definition(batch, 'echo "msg=$0"', parameters={"msg": "x"})
    name = unique("cmd")
    succeeded, failing, array = cli_all(
        server,
        ["submit", "-q", queue, "--name", name, "--env", "WHO=cli", "--wait", "--", "sh", "-c", 'test "$WHO" = cli'],
        ["submit", "-q", queue, "--wait", "--", "sh", "-c", "exit 3"],
        ["submit", "-q", queue, "-d", definition, "--array-size", "3", "-p", "msg=y", "--memory", "32", "--wait"],
    )
    job_id = ok(succeeded).strip()
    job = batch.describe_jobs(jobs=[job_id])["jobs"][0]
    assert (job["status"], job["jobName"]) == ("SUCCEEDED", name)
    assert job["jobDefinition"].split("/")[-1].startswith("openbatch-cmd-")
    assert "SUCCEEDED" in succeeded.stderr
    assert failing.returncode == 1 and "FAILED (exit code 3)" in failing.stderr
    failed_id = failing.stdout.strip()
    array_id = ok(array).strip()
    parent = batch.describe_jobs(jobs=[array_id])["jobs"][0]
    assert parent["status"] == "SUCCEEDED" and parent["arrayProperties"]["size"] == 3
    assert parent["parameters"]["msg"] == "y"
    assert {"type": "MEMORY", "value": "32"} in parent["container"]["resourceRequirements"]

    # The same bare command reuses its definition; --depends-on and --param reach the request.
    again = ok(
        cli(
            server,
            "submit",
            "-q",
            queue,
            "--depends-on",
            array_id,
            "-e",
            "WHO=cli",
            "--",
            "sh",
            "-c",
            'test "$WHO" = cli',
        )
    )
    second = batch.describe_jobs(jobs=[again.strip()])["jobs"][0]
    assert second["jobDefinition"] == job["jobDefinition"]
    assert second["dependsOn"] == [{"jobId": array_id}]
    wait_for_status(batch, second["jobId"], ["SUCCEEDED", "FAILED"])

    listed, children, by_name, wide, described = cli_all(
        server,
        ["ls", "-q", queue, "-o", "json"],
        ["ls", "--array-job-id", array_id, "--status", "SUCCEEDED", "-o", "yaml"],
        ["ls", "-q", queue, "--name", name[:8] + "*", "--status", "SUCCEEDED"],
        ["ls", "-q", queue, "--status", "FAILED", "-o", "wide"],
        ["describe", job_id],
    )
    summaries = json.loads(ok(listed))
    assert {s["jobId"] for s in summaries} == {job_id, failed_id, array_id, second["jobId"]}
    assert all(s["jobQueue"] == queue for s in summaries)
    assert sorted(c["jobId"] for c in yaml.safe_load(ok(children))) == [f"{array_id}:{i}" for i in range(3)]
    lines = ok(by_name).splitlines()
    assert lines[0].split() == ["JOB", "ID", "NAME", "QUEUE", "STATUS", "AGE"]
    assert [line.split()[:4] for line in lines[1:]] == [[job_id, name, queue, "SUCCEEDED"]]
    wide_rows = ok(wide).splitlines()
    assert "REASON" in wide_rows[0] and len(wide_rows) == 2 and wide_rows[1].startswith(failed_id)
    assert yaml.safe_load(ok(described))["jobId"] == job_id


@pytest.mark.slow
def test_status_cancel_terminate_retry(server: ServerProcess, batch: BatchClient) -> None:
    queue = make_queue(batch, max_vcpus=1)
    definition = shell_definition(batch, "sleep 60", parameters={"p": "v"})
    running = batch.submit_job(
        jobName=unique("long"),
        jobQueue=queue,
        jobDefinition=definition,
        parameters={"p": "w"},
        retryStrategy={"attempts": 2},
        timeout={"attemptDurationSeconds": 300},
        tags={"team": "cli"},
        containerOverrides={"environment": [{"name": "MODE", "value": "fast"}]},
    )["jobId"]
    waiting = batch.submit_job(
        jobName=unique("after"), jobQueue=queue, jobDefinition=definition, dependsOn=[{"jobId": running}]
    )["jobId"]
    wait_for_status(batch, running, ["RUNNING"])
    wait_for_status(batch, waiting, ["PENDING"])

    # Cancelling the PENDING job leaves it PENDING until its dependency ends, so the counts hold.
    as_json, as_table, cancel_running, cancelled = cli_all(
        server,
        ["status", "-o", "json"],
        ["status"],
        ["cancel", running, "--reason", "no"],
        ["cancel", waiting, "--reason", "not needed"],
    )
    report = json.loads(ok(as_json))
    ours = next(q for q in report["queues"] if q["name"] == queue)
    counts = ours["jobCounts"]
    assert ours["vcpusInUse"] == 1
    assert (counts["RUNNING"], counts["PENDING"], counts["SUCCEEDED"]) == (1, 1, 0)
    for status, n in counts.items():
        listed = batch.list_jobs(jobQueue=queue, jobStatus=status)["jobSummaryList"]
        assert len(listed) == n, (status, listed)
    ce_name = batch.describe_job_queues(jobQueues=[queue])["jobQueues"][0]["computeEnvironmentOrder"][0]
    environment = next(e for e in report["computeEnvironments"] if ce_name["computeEnvironment"].endswith(e["name"]))
    assert (environment["vcpusInUse"], environment["maxvCpus"]) == (1, 1)
    oldest = report["oldestWaitingJob"]
    # Another test's jobs on other queues may be older; when ours is the oldest, say why it waits.
    if oldest["jobId"] == waiting:
        assert running in oldest["reason"]
    text = ok(as_table)
    assert queue in text and "Oldest waiting job:" in text and "VCPUS IN USE" in text
    failed(cancel_running, 1, "cancel only stops jobs that have not started", f"openbatch terminate {running}")

    assert "cancelled (was PENDING)" in ok(cancelled)
    assert "terminating (was RUNNING)" in ok(cli(server, "terminate", running))
    terminated = wait_for_status(batch, running, ["FAILED"])
    assert "openbatch terminate" in terminated["statusReason"]
    # AWS semantics: a cancelled PENDING job fails once its dependency has finished (here: failed).
    wait_for_status(batch, waiting, ["FAILED"])

    again, not_finished = cli_all(server, ["retry", running], ["terminate", running])
    failed(not_finished, 1, "has already FAILED")
    new_id = ok(again).strip()
    retried = batch.describe_jobs(jobs=[new_id])["jobs"][0]
    assert new_id != running
    assert retried["jobName"] == terminated["jobName"] and retried["jobQueue"] == terminated["jobQueue"]
    assert retried["jobDefinition"] == terminated["jobDefinition"]
    assert retried["parameters"]["p"] == "w"
    assert retried["retryStrategy"]["attempts"] == 2
    assert retried["timeout"] == {"attemptDurationSeconds": 300}
    assert retried["tags"] == {"team": "cli"}
    assert {"name": "MODE", "value": "fast"} in retried["container"]["environment"]
    batch.terminate_job(jobId=new_id, reason="test over")


@pytest.mark.slow
def test_error_paths(server: ServerProcess, batch: BatchClient, tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    unreachable = cli_all(
        None,
        ["ls", "--endpoint-url", down],
        ["submit", "-q", "default", "--endpoint-url", down, "--", "true"],
        ["status", "--endpoint-url", down],
        ["get", "queues", "--endpoint-url", down],
    )
    for result in unreachable:
        failed(result, 1, f"cannot reach OpenBatch at {down}", "is `openbatch server` running?")

    missing_file = tmp_path / "missing.yaml"
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: JobQueue\njobQueueName: [unclosed\n")
    invalid = tmp_path / "invalid.yaml"
    queue_name = unique("never")
    invalid.write_text(
        f"kind: JobQueue\njobQueueName: {queue_name}\npriority: 1\n"
        "computeEnvironmentOrder: [{order: 1, computeEnvironment: default}]\n"
        "---\nkind: Widget\nname: w\n---\nkind: JobDefinition\njobDefinitionName: d\ntype: container\nbogus: 1\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"profiles": {"local": {"endpoint_url": server.url}}}))
    results = cli_all(
        server,
        ["submit", "-q", "no-such-queue", "--", "true"],
        ["ls", "-q", "no-such-queue"],
        ["describe", "no-such-job"],
        ["cancel", "no-such-job"],
        ["submit", "-q", "default", "-d", "no-such-definition"],
        ["submit", "-q", "default"],
        ["apply", "-f", str(missing_file)],
        ["apply", "-f", str(broken)],
        ["apply", "-f", str(invalid)],
        ["ls", "-o", "xml"],
    )
    no_queue, ls_no_queue, no_job, cancel_no_job, no_definition, no_command, *bad_files, bad_output = results
    failed(no_queue, 1, "unknown job queue 'no-such-queue'", "known job queues:", "default")
    failed(ls_no_queue, 1, "unknown job queue 'no-such-queue'", "default")
    failed(no_job, 1, "job no-such-job not found")
    failed(cancel_no_job, 1, "job no-such-job not found")
    failed(no_definition, 1, "unknown job definition 'no-such-definition'")
    failed(no_command, 2, "give either --definition D or a command after --")
    failed(bad_files[0], 2, "cannot read", "missing.yaml")
    failed(bad_files[1], 2, "is not valid YAML at line 3, column 1", "expected ','")
    failed(bad_files[2], 2, "document 2: unknown kind 'Widget'", 'Unknown parameter in input: "bogus"')
    # A bad file changes nothing, not even its valid documents.
    assert batch.describe_job_queues(jobQueues=[queue_name])["jobQueues"] == []
    failed(bad_output, 2, "--output must be one of")

    # No --endpoint-url and no OPENBATCH_ENDPOINT_URL: the profile names the server.
    profiled, unknown_profile, workflows, notifications, workflow_unknown = cli_all(
        None,
        ["get", "queues", "--profile", "local"],
        ["get", "queues", "--profile", "nope"],
        ["workflow", "ls", "--profile", "local", "-o", "json"],
        ["notify", "ls", "--profile", "local"],
        ["workflow", "schedule", "ls", "--profile", "nope"],
        env={"OPENBATCH_CONFIG": str(config)},
    )
    assert "default" in ok(profiled)
    failed(unknown_profile, 2, "unknown profile 'nope'", "local")
    assert "runs" in json.loads(ok(workflows))
    ok(notifications)
    failed(workflow_unknown, 2, "unknown profile 'nope'", "local")


@pytest.mark.slow
def test_requests_are_signed_by_the_aws_credential_chain(tmp_path: Path) -> None:
    auth_file = tmp_path / "auth.yaml"
    auth_file.write_text(
        yaml.safe_dump({"keys": [{"accessKeyId": "AKIDCLI", "secretAccessKey": "cli-secret", "user": "cli"}]})
    )
    credentials = tmp_path / "credentials"
    credentials.write_text("[ops]\naws_access_key_id = AKIDCLI\naws_secret_access_key = cli-secret\n")
    secured = ServerProcess(tmp_path / "data", auth_file=auth_file, env={"OPENBATCH_GPUS": ""}).start()
    try:
        from_env, from_file, unsigned, wrong = (
            cli(secured, "get", "queues", env=env)
            for env in (
                {"AWS_ACCESS_KEY_ID": "AKIDCLI", "AWS_SECRET_ACCESS_KEY": "cli-secret"},
                {"AWS_SHARED_CREDENTIALS_FILE": str(credentials), "AWS_PROFILE": "ops"},
                {},
                {"AWS_ACCESS_KEY_ID": "AKIDCLI", "AWS_SECRET_ACCESS_KEY": "not-it"},
            )
        )
        assert "default" in ok(from_env) and "default" in ok(from_file)
        failed(unsigned, 1, "UnrecognizedClientException")
        failed(wrong, 1, "InvalidSignatureException")
        # The workflow and notification commands sign with the same chain (a shared credentials file here).
        shared = {"AWS_SHARED_CREDENTIALS_FILE": str(credentials), "AWS_PROFILE": "ops"}
        workflows, notifications = cli_all(secured, ["workflow", "ls", "-o", "json"], ["notify", "ls"], env=shared)
        assert "runs" in json.loads(ok(workflows))
        ok(notifications)
    finally:
        secured.stop()


def test_server_refuses_a_taken_port_and_help(server: ServerProcess, tmp_path: Path) -> None:
    taken, helped, completion, submit_help = cli_all(
        None,
        ["server", "--port", str(server.port), "--data-dir", str(tmp_path / "data"), "--log-level", "info"],
        ["--help"],
        ["--show-completion", "bash"],
        ["submit", "--help"],
    )
    stderr = failed(taken, 1, f"cannot listen on 127.0.0.1:{server.port}", "already in use")
    assert "OpenBatch ready" not in taken.stdout + stderr
    assert "Examples:" in ok(helped) and "openbatch submit -q default --wait -- echo hi" in helped.stdout
    assert "_openbatch_completion" in ok(completion)
    completed = cli(
        None, env={"_OPENBATCH_COMPLETE": "complete_bash", "COMP_WORDS": "openbatch get q", "COMP_CWORD": "2"}
    )
    assert "--array-size" in ok(submit_help) and "--depends-on" in submit_help.stdout
    assert "Examples:" in submit_help.stdout
    assert ok(completed).split() == ["queue"]
