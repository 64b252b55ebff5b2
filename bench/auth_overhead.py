"""What SigV4 verification and policy evaluation cost per request.

Usage: ``python bench/auth_overhead.py [--n 1000]``

Starts two servers on this machine, one without ``--auth-file`` (the baseline)
and one with a key whose policy has a few statements, and times the same boto3
calls against each (sequential DescribeJobQueues, the cheapest Batch call, so
the auth cost is as visible as it gets), plus the in-process verifier alone.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

import boto3
import yaml
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from openbatch.auth.policy import parse_policy
from openbatch.auth.sigv4 import HttpRequest, check_time, parse, verify
from openbatch.cli.background import free_port, launch_server

KEY, SECRET = "AKIABENCHKEY0001", "bench-secret"
POLICY = {
    "Statement": [
        {"Effect": "Allow", "Action": ["batch:Describe*", "batch:List*"], "Resource": "*"},
        {"Effect": "Allow", "Action": "batch:SubmitJob", "Resource": "arn:aws:batch:*:*:job-queue/default"},
        {"Effect": "Deny", "Action": "batch:Delete*", "Resource": "*"},
    ]
}


def time_calls(urls: dict[str, str], n: int) -> dict[str, list[float]]:
    """Calls alternate between the servers, so load from elsewhere on the machine hits both alike."""
    clients: dict[str, Any] = {
        name: boto3.client(
            "batch", region_name="us-east-1", endpoint_url=url, aws_access_key_id=KEY, aws_secret_access_key=SECRET
        )
        for name, url in urls.items()
    }
    samples: dict[str, list[float]] = {name: [] for name in urls}
    for client in clients.values():
        client.describe_job_queues()
    for _ in range(n):
        for name, client in clients.items():
            start = time.perf_counter()
            client.describe_job_queues(jobQueues=["default"])
            samples[name].append(time.perf_counter() - start)
    return samples


def verifier_alone(n: int) -> float:
    body = b'{"jobQueues":["default"]}'
    request = AWSRequest(method="POST", url="http://127.0.0.1:8080/v1/describejobqueues", data=body)
    request.headers["Content-Type"] = "application/json"
    SigV4Auth(Credentials(KEY, SECRET), "batch", "us-east-1").add_auth(request)
    headers = [(k.lower(), str(v)) for k, v in request.headers.items()] + [("host", "127.0.0.1:8080")]
    http = HttpRequest("POST", "/v1/describejobqueues", [], headers, body)
    policy = parse_policy(POLICY)
    start = time.perf_counter()
    for _ in range(n):
        claims = parse(http)
        check_time(claims, time.time())
        verify(claims, http, SECRET)
        policy.evaluate("batch:DescribeJobQueues", ("*",))
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        auth_file = Path(tmp) / "auth.yaml"
        auth_file.write_text(
            yaml.safe_dump({"keys": [{"accessKeyId": KEY, "secretAccessKey": SECRET, "policy": POLICY}]})
        )
        urls: dict[str, str] = {}
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for name, extra in (("no --auth-file (baseline)", []), ("--auth-file", ["--auth-file", str(auth_file)])):
                port = free_port()
                procs.append(launch_server(Path(tmp) / f"data{len(procs)}", port, extra_args=extra))
                urls[name] = f"http://127.0.0.1:{port}"
            results = time_calls(urls, args.n)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(20)
        for name, samples in results.items():
            print(f"{name:28s} DescribeJobQueues median {median(samples) * 1e3:6.2f} ms over {args.n} calls")
        print(f"verifier + policy in process: {verifier_alone(args.n) * 1e6:6.1f} µs per request")


if __name__ == "__main__":
    main()
