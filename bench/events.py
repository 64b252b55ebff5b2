"""What job state change events cost, on a real ``openbatch server`` (SQLite + local executor).

Runs the same array job (N children running ``true``) on three fresh servers and prints,
for each, the time from SubmitJob to the parent's SUCCEEDED:

* no rule: the baseline (no event is built);
* a rule on FAILED jobs only (nothing matches: states no rule can match are skipped early);
* a rule on every job state change with a webhook target on loopback: every change is
  rendered, committed to the outbox and POSTed in order; also prints how long delivery
  took after the array finished and the delivery rate.

Usage: ``python bench/events.py [--array 1000]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import REGION, ServerProcess, make_queue, shell_definition, wait_for

from openbatch.cli.background import free_port


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.port = free_port()
        counter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                counter.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def run(size: int, pattern: dict[str, Any] | None, receiver: Counter | None) -> tuple[float, float | None, int]:
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp), extra_args=("--max-vcpus", "64"), env={"OPENBATCH_GPUS": ""}).start()
        try:
            batch = server.batch()
            events = boto3.client(
                "events",
                region_name=REGION,
                endpoint_url=server.url,
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
            )
            queue = make_queue(batch, max_vcpus=64)
            definition = shell_definition(
                batch,
                "true",
                container={"resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "16"}]},
            )
            if pattern is not None and receiver is not None:
                events.put_rule(Name="bench", EventPattern=json.dumps(pattern))
                events.put_targets(Rule="bench", Targets=[{"Id": "hook", "Arn": f"http://127.0.0.1:{receiver.port}/"}])
            start = time.perf_counter()
            job = batch.submit_job(
                jobName="array", jobQueue=queue, jobDefinition=definition, arrayProperties={"size": size}
            )
            wait_for(
                lambda: batch.describe_jobs(jobs=[job["jobId"]])["jobs"][0]["status"] == "SUCCEEDED",
                timeout=3600,
                interval=0.2,
            )
            done = time.perf_counter() - start
            if receiver is None or pattern is None or "status" in pattern.get("detail", {}):
                return done, None, 0

            def settled() -> bool:
                before = receiver.count
                time.sleep(1.0)
                return receiver.count == before and before > 0

            wait_for(settled, timeout=3600, interval=0.1)
            delivered = time.perf_counter() - start - 1.0
            return done, delivered, receiver.count
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--array", type=int, default=1000)
    args = parser.parse_args()
    size = args.array
    baseline, _, _ = run(size, None, None)
    print(f"array of {size}, no rule (baseline):        {baseline:6.2f} s  ({size / baseline:7.0f} jobs/s)")
    receiver = Counter()
    failed_only = {"source": ["aws.batch"], "detail": {"status": ["FAILED"]}}
    filtered, _, _ = run(size, failed_only, receiver)
    print(f"array of {size}, rule on FAILED only:       {filtered:6.2f} s  ({size / filtered:7.0f} jobs/s)")
    everything = {"source": ["aws.batch"], "detail-type": ["Batch Job State Change"]}
    receiver.count = 0
    full, delivered, count = run(size, everything, receiver)
    print(f"array of {size}, rule on every change:      {full:6.2f} s  ({size / full:7.0f} jobs/s)")
    if delivered is not None:
        print(
            f"  {count} events delivered in order to one webhook within {delivered:.2f} s of SubmitJob "
            f"({count / delivered:.0f} events/s)"
        )


if __name__ == "__main__":
    main()
