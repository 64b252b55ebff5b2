"""Log storage at scale: a job printing short lines, stored size and paging rate.

Usage::

    python bench/logs.py [--mib 1024] [--page-seconds 20] [--data-dir DIR]
    python bench/logs.py --store-only [--mib 256]

Default mode runs a real ``openbatch server`` and submits one job printing
``--mib`` MiB of two-byte lines (``yes | head -c``), while sampling the
server's resident memory. It then prints:

- the server's RSS before the job and its peak while the job ran;
- the stream's stored size on disk against the output's size (the ratio the
  issue bounds at 1.5×; the original one-line-per-event format took ~15×);
- the paging rate: events per second read with GetLogEvents pages of 10,000,
  from the log store directly and over HTTP (raw JSON client, so the figure
  is the server's, not boto3's parser), for ``--page-seconds`` each.

``--store-only`` skips the server: it writes the same lines through
``LogStore.open_writer``/``write_raw`` in pipe-sized batches, as the
executor does, and measures size and store paging rate only. It uses only the
writer and reader API, so it also runs against older versions of the store
for a same-machine baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
import httpx

from openbatch.cli.background import free_port, launch_server
from openbatch.logs.store import LogStore

GROUP = "/aws/batch/job"
_PIPE_LINES = 32_768
"""Lines per write_raw call: what one 64 KiB pipe read of ``yes`` gives the executor."""


def _du(path: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of everything under ``path``."""
    apparent = allocated = 0
    for root, _, files in os.walk(path):
        for name in files:
            st = os.stat(os.path.join(root, name))
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class _RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            try:
                self.peak = max(self.peak, _rss_kib(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _count(page: object) -> int:
    # Older stores (the one-line-per-event format) return a list of events rather than batches.
    return len(page) if hasattr(page, "__len__") else len(getattr(page, "events"))  # noqa: B009


def _page_store(store: LogStore, stream: str, seconds: float) -> tuple[int, float]:
    start = time.perf_counter()
    page = store.get_log_events(GROUP, stream, start_from_head=True)
    events = _count(page)
    token = page.next_forward_token
    while time.perf_counter() - start < seconds:
        page = store.get_log_events(GROUP, stream, next_token=token)
        events += _count(page)
        if page.next_forward_token == token:
            break
        token = page.next_forward_token
    return events, time.perf_counter() - start


def _page_http(url: str, stream: str, seconds: float) -> tuple[int, float]:
    headers = {"X-Amz-Target": "Logs_20140328.GetLogEvents", "Content-Type": "application/x-amz-json-1.1"}
    body: dict[str, object] = {"logGroupName": GROUP, "logStreamName": stream, "startFromHead": True}
    events = 0
    start = time.perf_counter()
    with httpx.Client(base_url=url, timeout=60) as http:
        while time.perf_counter() - start < seconds:
            page = json.loads(http.post("/", content=json.dumps(body), headers=headers).content)
            events += len(page["events"])
            if page["nextForwardToken"] == body.get("nextToken"):
                break
            body = {"logGroupName": GROUP, "logStreamName": stream, "nextToken": page["nextForwardToken"]}
    return events, time.perf_counter() - start


def _report_api(store: LogStore, stream: str, seconds: float) -> None:
    """Server-side cost of GetLogEvents: store read plus the JSON response, without a transport or a client."""
    try:
        from openbatch.api.logs_api import LogsApi
    except ImportError:
        return
    api = LogsApi(store)
    body: dict[str, object] = {"logGroupName": GROUP, "logStreamName": stream, "startFromHead": True}
    events = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        response = api.get_log_events(body)
        # The token sits at the end of the body: find it without parsing 10,000 events.
        text = bytes(response.body)
        at = text.rfind(b'"nextForwardToken"')
        token = json.loads(b"{" + text[at:]) if text[at - 1 : at] == b"," else json.loads(text)
        events += text.count(b'{"timestamp"')
        if token["nextForwardToken"] == body.get("nextToken"):
            break
        body = {"logGroupName": GROUP, "logStreamName": stream, "nextToken": token["nextForwardToken"]}
    took = time.perf_counter() - start
    print(f"paging (API):   {events / took:12,.0f} events/s (store read + JSON response, no transport)")


def _report_size(output_bytes: int, root: Path) -> None:
    apparent, allocated = _du(root)
    print(f"output:        {output_bytes / 2**20:10.1f} MiB ({output_bytes // 2:,} lines of 2 bytes)")
    print(f"stored:        {apparent / 2**20:10.1f} MiB apparent, {allocated / 2**20:.1f} MiB allocated")
    print(f"stored/output: {apparent / output_bytes:10.4f}x apparent, {allocated / output_bytes:.4f}x allocated")


def store_only(mib: int, seconds: float, workdir: Path) -> None:
    store = LogStore(workdir / "logs")
    stream = "bench/default/yes"
    chunk = [b"y"] * _PIPE_LINES
    output = mib * 2**20
    start = time.perf_counter()
    with store.open_writer(GROUP, stream) as writer:
        for i in range(output // (_PIPE_LINES * 2)):
            writer.write_raw(1_700_000_000_000 + i, chunk)
            writer.flush()
    elapsed = time.perf_counter() - start
    print(f"write:         {output / 2**20 / elapsed:10.1f} MiB/s through LogWriter.write_raw (32 Ki lines a call)")
    _report_size(output, workdir / "logs")
    if hasattr(store.open_writer(GROUP, "probe"), "write_lines"):
        data = b"y\n" * _PIPE_LINES
        start = time.perf_counter()
        with store.open_writer(GROUP, "bench/default/lines") as writer:
            for i in range(output // len(data)):
                writer.write_lines(1_700_000_000_000 + i, data)
                writer.flush()
        elapsed = time.perf_counter() - start
        print(f"write:         {output / 2**20 / elapsed:10.1f} MiB/s through LogWriter.write_lines (64 KiB a call)")
    events, took = _page_store(store, stream, seconds)
    print(f"paging (store): {events / took:12,.0f} events/s ({events:,} events in {took:.1f} s, pages of 10,000)")
    _report_api(store, stream, seconds)


def server_run(mib: int, seconds: float, workdir: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = launch_server(workdir, port)
    try:
        batch = boto3.client(
            "batch", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        definition = batch.register_job_definition(
            jobDefinitionName="yes",
            type="container",
            containerProperties={
                "image": "busybox",
                "command": ["sh", "-c", f"yes | head -c {mib * 2**20}"],
                "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"}],
            },
        )
        time.sleep(1.0)
        before = _rss_kib(proc.pid)
        sampler = _RssSampler(proc.pid)
        sampler.start()
        start = time.perf_counter()
        job_id = batch.submit_job(jobName="yes", jobQueue="default", jobDefinition=definition["jobDefinitionArn"])[
            "jobId"
        ]
        for _ in range(36_000):
            job = batch.describe_jobs(jobs=[job_id])["jobs"][0]
            if job["status"] in ("SUCCEEDED", "FAILED"):
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
        sampler.stop()
        if job["status"] != "SUCCEEDED":
            sys.exit(f"the job {job['status']}: {job.get('statusReason')}")
        stream = job["container"]["logStreamName"]
        print(f"job:           {mib} MiB of 'y' lines in {elapsed:.1f} s ({mib / elapsed:.1f} MiB/s end to end)")
        print(
            f"server RSS:    {before / 1024:10.1f} MiB before, {sampler.peak / 1024:.1f} MiB peak while the job ran "
            f"(+{(sampler.peak - before) / 1024:.1f} MiB)"
        )
        _report_size(mib * 2**20, workdir / "logs")
        store = LogStore(workdir / "logs")
        events, took = _page_store(store, stream, seconds)
        print(f"paging (store): {events / took:12,.0f} events/s ({events:,} events in {took:.1f} s, pages of 10,000)")
        _report_api(store, stream, seconds)
        events, took = _page_http(url, stream, seconds)
        print(
            f"paging (HTTP):  {events / took:12,.0f} events/s ({events:,} events in {took:.1f} s, pages of 10,000, "
            "parsed with the json module)"
        )
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024, help="MiB of output (default 1024 = 1 GiB)")
    parser.add_argument("--page-seconds", type=float, default=20.0, help="how long to page for each rate")
    parser.add_argument("--store-only", action="store_true", help="no server: writer and reader API only")
    parser.add_argument("--data-dir", type=Path, help="where to put the data (default: a temporary directory)")
    args = parser.parse_args()
    workdir = args.data_dir or Path(tempfile.mkdtemp(prefix="openbatch-bench-logs-"))
    try:
        if args.store_only:
            store_only(args.mib, args.page_seconds, workdir)
        else:
            server_run(args.mib, args.page_seconds, workdir)
    finally:
        if args.data_dir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
