"""SigV4 authentication, IAM policies and job roles through a real server and real clients
(boto3, the AWS CLI, the JavaScript SDK v3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import boto3
import httpx
import pytest
import yaml
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.integration.test_cli_and_js_clients import js_sdk  # noqa: F401  (session fixture)
from tests.support import REGION, ServerProcess, make_queue, shell_definition, unique, wait_for, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

ACCOUNT = "123456789012"
ADMIN = ("AKIAADMINKEY0001", "admin-secret-0001")
READER = ("AKIAREADERKEY001", "reader-secret-001")
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/JobRole"
ROLE_KEYS = ("AROAJOBROLEKEY01", "role-secret-00001")
READER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["batch:Describe*", "batch:List*", "logs:Get*"], "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": "batch:SubmitJob",
            "Resource": [
                f"arn:aws:batch:*:{ACCOUNT}:job-definition/allowed-*:*",
                f"arn:aws:batch:*:{ACCOUNT}:job-queue/default",
            ],
        },
        {"Effect": "Deny", "Action": "batch:TerminateJob", "Resource": "*"},
    ],
}
ROLE_POLICY = {"Statement": [{"Effect": "Allow", "Action": "batch:DescribeJobQueues", "Resource": "*"}]}
INVALID_TOKEN = "The security token included in the request is invalid."
SIGNATURE_MISMATCH = "The request signature we calculated does not match the signature you provided."


@pytest.fixture(scope="module")
def auth_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "auth.yaml"
    document = {
        "keys": [
            {"accessKeyId": ADMIN[0], "secretAccessKey": ADMIN[1], "user": "admin"},
            {"accessKeyId": READER[0], "secretAccessKey": READER[1], "user": "reader", "policy": READER_POLICY},
        ],
        "roles": [
            {"roleArn": ROLE_ARN, "accessKeyId": ROLE_KEYS[0], "secretAccessKey": ROLE_KEYS[1], "policy": ROLE_POLICY}
        ],
    }
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, auth_file: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("secured"), auth_file=auth_file, env={"OPENBATCH_GPUS": ""}).start()
    try:
        yield proc
    finally:
        proc.stop()


def client(server: ServerProcess, keys: tuple[str, str], token: str | None = None) -> BatchClient:
    return boto3.client(
        "batch",
        region_name=REGION,
        endpoint_url=server.url,
        aws_access_key_id=keys[0],
        aws_secret_access_key=keys[1],
        aws_session_token=token,
    )


def error_of(info: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    response: Any = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"], response["Error"]["Message"]


def signed_request(server: ServerProcess, body: bytes, timestamp: str, keys: tuple[str, str] = ADMIN) -> AWSRequest:
    """Signed by botocore's signer with a chosen signing time (its own steps, a fixed clock)."""
    request = AWSRequest(method="POST", url=f"{server.url}/v1/describejobqueues", data=body)
    # The same headers as botocore's REST-JSON serializer sets.
    request.headers["Content-Type"] = "application/json"
    signer: Any = SigV4Auth(Credentials(*keys), "batch", REGION)
    request.context["timestamp"] = timestamp
    signer._modify_request_before_signing(request)
    signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    signer._inject_signature_to_request(request, signature)
    return request


def now_stamp() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


# --- boto3 -----------------------------------------------------------------------------------


def test_right_keys_work_and_health_stays_open(secured: ServerProcess) -> None:
    queues = client(secured, ADMIN).describe_job_queues()["jobQueues"]
    assert "default" in [q["jobQueueName"] for q in queues]
    assert httpx.get(f"{secured.url}/health").status_code == 200
    assert httpx.head(f"{secured.url}/health").status_code == 200


def test_wrong_secret_unknown_key_and_no_signature(secured: ServerProcess) -> None:
    with pytest.raises(ClientError) as info:
        client(secured, (ADMIN[0], "not-the-secret")).describe_job_queues()
    status, code, message = error_of(info)
    assert (status, code) == (403, "InvalidSignatureException")
    assert message.startswith(SIGNATURE_MISMATCH)

    with pytest.raises(ClientError) as info:
        client(secured, ("AKIANOSUCHKEY001", "x")).describe_job_queues()
    assert error_of(info) == (403, "UnrecognizedClientException", INVALID_TOKEN)

    unsigned = httpx.post(f"{secured.url}/v1/describejobqueues", json={})
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert unsigned.json()["message"] == "Missing Authentication Token"
    # Any route, including ones no handler knows, is behind the signature check.
    assert httpx.get(f"{secured.url}/api/anything").status_code == 403


def test_old_date_and_tampered_body_or_header(secured: ServerProcess) -> None:
    url = f"{secured.url}/v1/describejobqueues"
    old = signed_request(secured, b"{}", "20010101T000000Z")
    response = httpx.post(url, content=old.body, headers=dict(old.headers.items()))
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert response.json()["message"].startswith("Signature expired: 20010101T000000Z is now earlier than ")

    fresh = signed_request(secured, b'{"maxResults": 1}', now_stamp())
    headers = dict(fresh.headers.items())
    assert httpx.post(url, content=fresh.body, headers=headers).status_code == 200
    tampered = httpx.post(url, content=b'{"maxResults": 2}', headers=headers)
    assert tampered.status_code == 403
    assert tampered.json() == {"__type": "InvalidSignatureException", "message": tampered.json()["message"]}
    assert tampered.json()["message"].startswith(SIGNATURE_MISMATCH)
    retyped = httpx.post(url, content=fresh.body, headers={**headers, "Content-Type": "text/plain"})
    assert retyped.status_code == 403


def test_presigned_url(secured: ServerProcess) -> None:
    url = client(secured, ADMIN).generate_presigned_url("describe_job_queues", HttpMethod="POST", ExpiresIn=300)
    assert "X-Amz-Signature=" in url and "X-Amz-SignedHeaders=content-type%3Bhost" in url
    # The URL signs the content type botocore would have sent; whoever uses it sends the same.
    json_type = {"Content-Type": "application/json"}
    response = httpx.post(url, headers=json_type)
    assert response.status_code == 200, response.text
    assert "default" in [q["jobQueueName"] for q in response.json()["jobQueues"]]
    forged = url.replace("X-Amz-Expires=300", "X-Amz-Expires=600")
    assert httpx.post(forged, headers=json_type).json()["__type"] == "InvalidSignatureException"
    assert httpx.post(url, headers=json_type, content=b'{"maxResults": 1}').status_code == 403


def test_denied_actions_name_the_action_and_resource(secured: ServerProcess) -> None:
    admin, reader = client(secured, ADMIN), client(secured, READER)
    allowed = unique("allowed")
    admin.register_job_definition(
        jobDefinitionName=allowed, type="container", containerProperties={"image": "x", "command": ["true"]}
    )
    other_queue = make_queue(admin)
    assert reader.describe_job_queues(jobQueues=["default"])["jobQueues"]

    job_id = reader.submit_job(jobName="ok", jobQueue="default", jobDefinition=allowed)["jobId"]
    with pytest.raises(ClientError) as info:
        reader.submit_job(jobName="no", jobQueue=other_queue, jobDefinition=allowed)
    expected = (
        f"User: arn:aws:iam::{ACCOUNT}:user/reader is not authorized to perform: batch:SubmitJob on resource: "
        f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/{other_queue} because no identity-based policy allows the "
        "batch:SubmitJob action"
    )
    assert error_of(info) == (403, "AccessDeniedException", expected)
    with pytest.raises(ClientError) as info:
        reader.terminate_job(jobId=job_id, reason="no")
    assert error_of(info)[2] == (
        f"User: arn:aws:iam::{ACCOUNT}:user/reader is not authorized to perform: batch:TerminateJob on resource: "
        f"arn:aws:batch:{REGION}:{ACCOUNT}:job/{job_id} with an explicit deny in an identity-based policy"
    )
    with pytest.raises(ClientError) as info:
        reader.create_compute_environment(
            computeEnvironmentName=unique("ce"), type="MANAGED", computeResources={"type": "EC2", "maxvCpus": 1}
        )
    assert error_of(info)[1] == "AccessDeniedException"
    admin.terminate_job(jobId=job_id, reason="done")


def test_logs_api_is_signed_and_authorised(secured: ServerProcess) -> None:
    def logs(keys: tuple[str, str]) -> Any:
        return boto3.client(
            "logs",
            region_name=REGION,
            endpoint_url=secured.url,
            aws_access_key_id=keys[0],
            aws_secret_access_key=keys[1],
        )

    with pytest.raises(ClientError) as info:
        logs((READER[0], "wrong")).get_log_events(logGroupName="/aws/batch/job", logStreamName="x/default/y")
    assert error_of(info)[:2] == (403, "InvalidSignatureException")
    with pytest.raises(ClientError) as info:
        logs(READER).describe_log_streams(logGroupName="/aws/batch/job")
    status, code, message = error_of(info)
    assert (status, code) == (400, "AccessDeniedException")
    assert f"logs:DescribeLogStreams on resource: arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/batch/job" in message
    with pytest.raises(ClientError) as info:
        logs(READER).get_log_events(logGroupName="/aws/batch/job", logStreamName="x/default/none")
    assert error_of(info)[1] == "ResourceNotFoundException"


def test_every_protocol_answers_in_its_own_error_shape(secured: ServerProcess) -> None:
    def aws_client(service: Literal["sns", "events"], keys: tuple[str, str]) -> Any:
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=secured.url,
            aws_access_key_id=keys[0],
            aws_secret_access_key=keys[1],
        )

    # SNS speaks the query protocol: XML errors with the query codes.
    with pytest.raises(ClientError) as info:
        aws_client("sns", (ADMIN[0], "wrong")).list_topics()
    assert error_of(info)[:2] == (403, "SignatureDoesNotMatch")
    with pytest.raises(ClientError) as info:
        aws_client("sns", ("AKIANOSUCHKEY003", "x")).list_topics()
    assert error_of(info) == (403, "InvalidClientTokenId", INVALID_TOKEN)
    # EventBridge speaks JSON 1.1.
    with pytest.raises(ClientError) as info:
        aws_client("events", (ADMIN[0], "wrong")).list_rules()
    assert error_of(info)[:2] == (403, "InvalidSignatureException")


def test_native_routes_are_signed_and_named_in_policies(secured: ServerProcess) -> None:
    def get(path: str, keys: tuple[str, str]) -> httpx.Response:
        request = AWSRequest(method="GET", url=f"{secured.url}{path}")
        SigV4Auth(Credentials(*keys), "openbatch", REGION).add_auth(request)
        return httpx.get(f"{secured.url}{path}", headers=dict(request.headers.items()))

    assert httpx.get(f"{secured.url}/api/workflows/definitions").status_code == 403
    assert get("/api/workflows/definitions", ADMIN).status_code == 200
    denied = get("/api/workflows/definitions", READER)
    assert denied.status_code == 403
    assert "is not authorized to perform: openbatch:ListWorkflows on resource: *" in denied.json()["message"]
    # What AWS serves unsigned stays reachable unsigned: SNS's certificate and subscription links;
    # metrics are open to scrapers on this host only.
    assert httpx.get(f"{secured.url}/SimpleNotificationService-openbatch.pem").status_code != 403
    assert httpx.get(f"{secured.url}/?Action=Unsubscribe&SubscriptionArn=x").status_code != 403
    assert httpx.get(f"{secured.url}/?Action=Unsubscribe&Action=Publish").status_code == 403
    assert httpx.get(f"{secured.url}/?Action=Publish&TopicArn=x").status_code == 403
    assert httpx.get(f"{secured.url}/metrics").status_code != 403
    assert httpx.get(f"{secured.url}/ecs/v4/some-job/1").status_code != 403
    assert httpx.post(f"{secured.url}/ecs/v4/some-job/1").status_code == 403


# --- AWS CLI and JavaScript SDK --------------------------------------------------------------


def aws(server: ServerProcess, keys: tuple[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": keys[0], "AWS_SECRET_ACCESS_KEY": keys[1], "AWS_DEFAULT_REGION": REGION}
    env.pop("AWS_SESSION_TOKEN", None)
    command = [str(Path(sys.executable).with_name("aws")), "--endpoint-url", server.url, "--output", "json", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.slow
def test_aws_cli_keys_and_policies(secured: ServerProcess) -> None:
    ok = aws(secured, READER, "batch", "describe-job-queues", "--job-queues", "default")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["jobQueues"][0]["jobQueueName"] == "default"
    wrong = aws(secured, (READER[0], "wrong"), "batch", "describe-job-queues")
    assert wrong.returncode == 255
    assert "InvalidSignatureException" in wrong.stderr
    denied = aws(secured, READER, "batch", "delete-job-queue", "--job-queue", "default")
    assert denied.returncode == 255
    assert "AccessDeniedException" in denied.stderr
    assert f"batch:DeleteJobQueue on resource: arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/default" in denied.stderr


JS_SCRIPT = r"""
import { createRequire } from "node:module";
const require = createRequire(process.env.SDK_DIR + "/");
const sdk = require("@aws-sdk/client-batch");
const make = (id, secret) => new sdk.BatchClient({
  region: "us-east-1", endpoint: process.env.ENDPOINT, credentials: { accessKeyId: id, secretAccessKey: secret },
});
const attempt = async (c, command) => {
  try { const r = await c.send(command); return { ok: true, names: (r.jobQueues || []).map((q) => q.jobQueueName) }; }
  catch (e) { return { ok: false, name: e.name, status: e.$metadata?.httpStatusCode, message: e.message }; }
};
const out = {
  right: await attempt(make(process.env.KEY, process.env.SECRET), new sdk.DescribeJobQueuesCommand({})),
  wrong: await attempt(make(process.env.KEY, "wrong"), new sdk.DescribeJobQueuesCommand({})),
  unknown: await attempt(make("AKIANOSUCHKEY002", "x"), new sdk.DescribeJobQueuesCommand({})),
  denied: await attempt(make(process.env.KEY, process.env.SECRET),
    new sdk.DeleteJobQueueCommand({ jobQueue: "default" })),
};
console.log(JSON.stringify(out));
"""


@pytest.mark.slow
def test_js_sdk_keys_and_policies(secured: ServerProcess, js_sdk: Path, tmp_path: Path) -> None:  # noqa: F811
    script = tmp_path / "auth.mjs"
    script.write_text(JS_SCRIPT)
    env = {**os.environ, "SDK_DIR": str(js_sdk), "ENDPOINT": secured.url, "KEY": READER[0], "SECRET": READER[1]}
    result = subprocess.run(["node", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["right"]["ok"] and "default" in out["right"]["names"]
    assert (out["wrong"]["name"], out["wrong"]["status"]) == ("InvalidSignatureException", 403)
    assert (out["unknown"]["name"], out["unknown"]["status"]) == ("UnrecognizedClientException", 403)
    assert (out["denied"]["name"], out["denied"]["status"]) == ("AccessDeniedException", 403)
    assert "batch:DeleteJobQueue" in out["denied"]["message"]


# --- job roles -------------------------------------------------------------------------------

JOB_SCRIPT = textwrap.dedent(
    """
    import json, boto3, botocore.session
    resolved = botocore.session.get_session().get_credentials()
    out = {"method": resolved.method if resolved else None}
    if resolved:
        frozen = resolved.get_frozen_credentials()
        out.update(key=frozen.access_key, secret=frozen.secret_key, token=frozen.token)
        batch = boto3.client("batch")
        out["queues"] = [q["jobQueueName"] for q in batch.describe_job_queues()["jobQueues"]]
        try:
            batch.list_jobs(jobQueue="default")
        except Exception as exc:
            out["denied"] = str(exc)
    print(json.dumps(out))
    """
)


def run_job(server: ServerProcess, admin: BatchClient, role: str | None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "command": [sys.executable, "-c", JOB_SCRIPT],
        "environment": [
            {"name": "AWS_ENDPOINT_URL_BATCH", "value": server.url},
            {"name": "AWS_DEFAULT_REGION", "value": REGION},
            # Nothing but the container endpoint may supply credentials.
            {"name": "AWS_SHARED_CREDENTIALS_FILE", "value": "/nonexistent"},
            {"name": "AWS_CONFIG_FILE", "value": "/nonexistent"},
            {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"},
        ],
    }
    if role:
        container["jobRoleArn"] = role
    definition = shell_definition(admin, container=container)
    job_id = admin.submit_job(jobName="role", jobQueue="default", jobDefinition=definition)["jobId"]
    job = wait_for_status(admin, job_id, ["SUCCEEDED", "FAILED"], timeout=60)
    assert job["status"] == "SUCCEEDED", job
    logs = boto3.client(
        "logs", region_name=REGION, endpoint_url=server.url, aws_access_key_id=ADMIN[0], aws_secret_access_key=ADMIN[1]
    )
    stream = job["container"]["logStreamName"]
    events = logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=stream, startFromHead=True)["events"]
    result: dict[str, Any] = json.loads(events[-1]["message"])
    return result


@pytest.mark.slow
def test_job_role_credentials_reach_the_job_and_end_with_it(secured: ServerProcess) -> None:
    admin = client(secured, ADMIN)
    out = run_job(secured, admin, ROLE_ARN)
    assert out["method"] == "container-role"
    assert (out["key"], out["secret"]) == ROLE_KEYS
    assert "default" in out["queues"]
    assert "AccessDeniedException" in out["denied"]
    assert f"arn:aws:sts::{ACCOUNT}:assumed-role/JobRole/" in out["denied"]
    # The session token died with the attempt: copied credentials no longer work.
    with pytest.raises(ClientError) as info:
        client(secured, ROLE_KEYS, out["token"]).describe_job_queues()
    assert error_of(info)[1] == "UnrecognizedClientException"
    # The role's keys alone are not a principal.
    with pytest.raises(ClientError):
        client(secured, ROLE_KEYS).describe_job_queues()

    assert run_job(secured, admin, None) == {"method": None}


# --- configuration ---------------------------------------------------------------------------


def openbatch(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "openbatch.cli.main", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=check)


@pytest.mark.slow
def test_keys_command_and_live_reload(secured: ServerProcess, auth_file: Path) -> None:
    created = openbatch("keys", "create", "--auth-file", str(auth_file), "--user", "ci")
    values = dict(line.split("=", 1) for line in created.stdout.split())
    key_id, secret = values["AWS_ACCESS_KEY_ID"], values["AWS_SECRET_ACCESS_KEY"]
    assert oct(auth_file.stat().st_mode & 0o777) == "0o600"
    listing = openbatch("keys", "ls", "--auth-file", str(auth_file)).stdout
    assert f"{key_id}\tuser/ci\tfull access" in listing
    assert ROLE_ARN in listing
    assert secret not in listing and ADMIN[1] not in listing

    def accepted() -> bool:
        try:
            client(secured, (key_id, secret)).describe_job_queues(maxResults=1)
        except ClientError:
            return False
        return True

    wait_for(accepted, timeout=10, interval=0.2)
    openbatch("keys", "rm", key_id, "--auth-file", str(auth_file))
    wait_for(lambda: not accepted(), timeout=10, interval=0.2)
    assert openbatch("keys", "rm", key_id, "--auth-file", str(auth_file), check=False).returncode == 1
    assert secret not in secured.log_path.read_text()


@pytest.mark.slow
def test_public_address_without_keys_is_refused(tmp_path: Path) -> None:
    result = openbatch("server", "--host", "0.0.0.0", "--data-dir", str(tmp_path), check=False)
    assert result.returncode != 0
    assert "Refusing to listen on 0.0.0.0 without access keys" in result.stderr
