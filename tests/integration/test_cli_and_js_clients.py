"""Unmodified AWS clients other than boto3: the AWS CLI v1 and the JavaScript SDK v3."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.compute import EC2_REQUIRED
from tests.support import CREDENTIALS, ServerProcess, aws_cli, unique

JS_SDK_DIR = Path(os.environ.get("OPENBATCH_JS_SDK_DIR", Path.home() / ".cache" / "openbatch-tests" / "js"))
ACCOUNT = "123456789012"


def cli_json(server: ServerProcess, *args: str) -> Any:
    result = aws_cli(server.url, "batch", *args)
    return json.loads(result.stdout) if result.stdout.strip() else {}


# --- AWS CLI v1 --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_resources(server: ServerProcess) -> dict[str, str]:
    """A compute environment, two queues and a job definition created through the CLI."""
    ce = unique("cli-ce")
    created = cli_json(
        server,
        "create-compute-environment",
        "--compute-environment-name",
        ce,
        "--type",
        "MANAGED",
        "--compute-resources",
        json.dumps({"type": "EC2", "minvCpus": 0, "maxvCpus": 2, **EC2_REQUIRED}),
    )
    assert created == {
        "computeEnvironmentName": ce,
        "computeEnvironmentArn": f"arn:aws:batch:us-east-1:{ACCOUNT}:compute-environment/{ce}",
    }
    queues = [unique("cli-q") for _ in range(2)]
    for queue in queues:
        out = cli_json(
            server,
            "create-job-queue",
            "--job-queue-name",
            queue,
            "--priority",
            "5",
            "--compute-environment-order",
            f"order=1,computeEnvironment={ce}",
        )
        assert out["jobQueueArn"] == f"arn:aws:batch:us-east-1:{ACCOUNT}:job-queue/{queue}"
    definition = unique("cli-jd")
    out = cli_json(
        server,
        "register-job-definition",
        "--job-definition-name",
        definition,
        "--type",
        "container",
        "--container-properties",
        json.dumps({"image": "busybox", "command": ["echo", "hi"]}),
    )
    assert out == {
        "jobDefinitionName": definition,
        "jobDefinitionArn": f"arn:aws:batch:us-east-1:{ACCOUNT}:job-definition/{definition}:1",
        "revision": 1,
    }
    return {"ce": ce, "q0": queues[0], "q1": queues[1], "definition": definition}


def test_cli_describes_what_it_created(server: ServerProcess, cli_resources: dict[str, str]) -> None:
    ces = cli_json(server, "describe-compute-environments", "--compute-environments", cli_resources["ce"])
    [ce] = ces["computeEnvironments"]
    assert ce["status"] == "VALID"
    assert ce["statusReason"] == "ComputeEnvironment Healthy"
    assert ce["computeResources"] == {"type": "EC2", "minvCpus": 0, "maxvCpus": 2, **EC2_REQUIRED}

    definitions = cli_json(
        server, "describe-job-definitions", "--job-definition-name", cli_resources["definition"], "--status", "ACTIVE"
    )
    [definition] = definitions["jobDefinitions"]
    assert definition["revision"] == 1
    assert definition["containerProperties"]["command"] == ["echo", "hi"]


def test_cli_auto_paginates_with_page_size(server: ServerProcess, cli_resources: dict[str, str]) -> None:
    # --page-size 1 makes the CLI walk every page itself and merge the results.
    everything = cli_json(server, "describe-job-queues", "--page-size", "1")
    names = [q["jobQueueName"] for q in everything["jobQueues"]]
    assert len(names) == len(set(names))
    assert {cli_resources["q0"], cli_resources["q1"], "default"} <= set(names)
    assert "nextToken" not in everything and "NextToken" not in everything
    ce_arn = f"arn:aws:batch:us-east-1:{ACCOUNT}:compute-environment/{cli_resources['ce']}"
    for queue in everything["jobQueues"]:
        if queue["jobQueueName"] in cli_resources.values():
            assert queue["computeEnvironmentOrder"] == [{"order": 1, "computeEnvironment": ce_arn}]
            assert queue["statusReason"] == "JobQueue Healthy"


def test_cli_max_items_and_starting_token(server: ServerProcess, cli_resources: dict[str, str]) -> None:
    expected = [q["jobQueueName"] for q in cli_json(server, "describe-job-queues")["jobQueues"]]
    assert len(expected) >= 3
    seen: list[str] = []
    tokens: list[str] = []
    args = ["describe-job-queues", "--max-items", "2", "--page-size", "1"]
    while True:
        page = cli_json(server, *args)
        assert len(page["jobQueues"]) <= 2
        seen.extend(q["jobQueueName"] for q in page["jobQueues"])
        token = page.get("NextToken")
        if not token:
            break
        tokens.append(token)
        args = ["describe-job-queues", "--max-items", "2", "--page-size", "1", "--starting-token", token]
    assert seen == expected
    assert len(tokens) == len(set(tokens)) >= 1


def test_cli_error_exits_255_with_client_exception(server: ServerProcess) -> None:
    result = aws_cli(
        server.url,
        "batch",
        "create-job-queue",
        "--job-queue-name",
        unique("cli-bad"),
        "--priority",
        "1",
        "--compute-environment-order",
        "order=1,computeEnvironment=no-such-ce",
        check=False,
    )
    assert result.returncode == 255, result
    assert "ClientException" in result.stderr
    assert "CreateJobQueue" in result.stderr
    assert "no-such-ce" in result.stderr


# --- JavaScript SDK v3 ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def js_sdk() -> Path:
    """``@aws-sdk/client-batch`` installed once into a cache directory outside the repository."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the JavaScript SDK tests")
    package = JS_SDK_DIR / "node_modules" / "@aws-sdk" / "client-batch"
    if not package.is_dir():
        JS_SDK_DIR.mkdir(parents=True, exist_ok=True)
        try:
            result = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "@aws-sdk/client-batch@3"],
                cwd=JS_SDK_DIR,
                capture_output=True,
                text=True,
                timeout=300,
            )
            problem = "" if result.returncode == 0 else f"{result.stdout}\n{result.stderr}"
        except subprocess.TimeoutExpired:
            problem = "timed out after 300 s"
        if problem or not package.is_dir():
            message = f"npm install @aws-sdk/client-batch failed: {problem}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    return JS_SDK_DIR


JS_SCRIPT = r"""
import { createRequire } from "node:module";

const require = createRequire(process.env.SDK_DIR + "/");
const sdk = require("@aws-sdk/client-batch");
const client = new sdk.BatchClient({
  region: "us-east-1",
  endpoint: process.env.ENDPOINT,
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
});
const suffix = process.env.SUFFIX;
const ce = `js-ce-${suffix}`, queue = `js-q-${suffix}`, definition = `js-jd-${suffix}`;
const out = {};

out.createCe = await client.send(new sdk.CreateComputeEnvironmentCommand({
  computeEnvironmentName: ce, type: "MANAGED", computeResources: {
    type: "EC2", maxvCpus: 2, instanceTypes: ["optimal"], subnets: ["subnet-1"], instanceRole: "ecsInstanceRole",
  },
}));
out.describeCe = await client.send(new sdk.DescribeComputeEnvironmentsCommand({ computeEnvironments: [ce] }));
out.createQueue = await client.send(new sdk.CreateJobQueueCommand({
  jobQueueName: queue, priority: 3, computeEnvironmentOrder: [{ order: 1, computeEnvironment: ce }],
}));
out.describeQueue = await client.send(new sdk.DescribeJobQueuesCommand({ jobQueues: [queue] }));
out.register = await client.send(new sdk.RegisterJobDefinitionCommand({
  jobDefinitionName: definition, type: "container", containerProperties: { image: "busybox", command: ["true"] },
}));
out.describeDefinition = await client.send(new sdk.DescribeJobDefinitionsCommand({ jobDefinitionName: definition }));

await client.send(new sdk.TagResourceCommand({ resourceArn: out.register.jobDefinitionArn, tags: { via: "js" } }));
out.tags = await client.send(new sdk.ListTagsForResourceCommand({ resourceArn: out.register.jobDefinitionArn }));

out.pagedQueues = [];
for await (const page of sdk.paginateDescribeJobQueues({ client, pageSize: 1 }, {})) {
  out.pagedQueues.push(...page.jobQueues.map((q) => q.jobQueueName));
}

try {
  await client.send(new sdk.CreateJobQueueCommand({
    jobQueueName: `js-bad-${suffix}`,
    priority: 1,
    computeEnvironmentOrder: [{ order: 1, computeEnvironment: "no-such-ce" }],
  }));
  out.error = "no error";
} catch (e) {
  out.error = {
    name: e.name,
    isClientException: e instanceof sdk.ClientException,
    status: e.$metadata?.httpStatusCode,
    fault: e.$fault,
    message: e.message,
  };
}
console.log(JSON.stringify(out, (key, value) => (key === "$metadata" ? undefined : value)));
"""


def test_js_sdk_v3_round_trip(server: ServerProcess, js_sdk: Path, tmp_path: Path) -> None:
    script = tmp_path / "batch.mjs"
    script.write_text(JS_SCRIPT)
    suffix = unique("x")
    env = {**os.environ, **CREDENTIALS, "SDK_DIR": str(js_sdk), "ENDPOINT": server.url, "SUFFIX": suffix}
    result = subprocess.run(["node", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    prefix = f"arn:aws:batch:us-east-1:{ACCOUNT}:"
    ce, queue, definition = f"js-ce-{suffix}", f"js-q-{suffix}", f"js-jd-{suffix}"

    assert out["createCe"] == {
        "computeEnvironmentName": ce,
        "computeEnvironmentArn": f"{prefix}compute-environment/{ce}",
    }
    [ce_detail] = out["describeCe"]["computeEnvironments"]
    assert ce_detail["status"] == "VALID"
    assert ce_detail["computeResources"]["type"] == "EC2"

    assert out["createQueue"] == {"jobQueueName": queue, "jobQueueArn": f"{prefix}job-queue/{queue}"}
    [queue_detail] = out["describeQueue"]["jobQueues"]
    assert queue_detail["priority"] == 3
    assert queue_detail["computeEnvironmentOrder"] == [
        {"order": 1, "computeEnvironment": f"{prefix}compute-environment/{ce}"}
    ]

    assert out["register"] == {
        "jobDefinitionName": definition,
        "jobDefinitionArn": f"{prefix}job-definition/{definition}:1",
        "revision": 1,
    }
    [definition_detail] = out["describeDefinition"]["jobDefinitions"]
    assert definition_detail["status"] == "ACTIVE"
    assert definition_detail["containerProperties"]["command"] == ["true"]

    assert out["tags"] == {"tags": {"via": "js"}}

    paged = out["pagedQueues"]
    assert len(paged) == len(set(paged))
    assert {"default", queue} <= set(paged)

    error = out["error"]
    assert error["name"] == "ClientException"
    assert error["isClientException"] is True
    assert error["status"] == 400
    assert error["fault"] == "client"
    assert "no-such-ce" in error["message"]
