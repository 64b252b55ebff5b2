"""Overload: requests beyond the in-flight limit get TooManyRequestsException at once (botocore retries
it), and a flood of large bodies leaves the server's memory bounded. RSS figures are printed."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support import REGION, ServerProcess, wait_for

pytestmark = pytest.mark.slow

LIMIT = 2


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("overload"), extra_args=("--max-concurrent-requests", str(LIMIT))
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


@contextmanager
def held_requests(server: ServerProcess, count: int) -> Iterator[None]:
    """``count`` requests in flight: headers sent, body promised but withheld until the block ends."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(
                b"POST /v1/describejobqueues HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{"
            )
            sockets.append(sock)
        yield
    finally:
        for sock in sockets:
            sock.close()


def _describe(server: ServerProcess) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/describejobqueues", content=b"{}", timeout=10)


def test_beyond_the_limit_requests_get_too_many_requests(limited: ServerProcess) -> None:
    with held_requests(limited, LIMIT):
        # The held requests count once the server has read their headers.
        response = wait_for(lambda: (r := _describe(limited)).status_code == 429 and r)
        assert response.headers["x-amzn-ErrorType"] == "TooManyRequestsException"
        assert response.json()["__type"] == "TooManyRequestsException"
        # Health checks are never turned away.
        assert httpx.get(f"{limited.url}/health").status_code == 200
    # Slots come back when the held requests end.
    wait_for(lambda: _describe(limited).status_code == 200)


def test_botocore_sees_the_throttle_and_retries_it(limited: ServerProcess) -> None:
    with held_requests(limited, LIMIT):
        wait_for(lambda: _describe(limited).status_code == 429)
        no_retries = boto3.client(
            "batch",
            region_name=REGION,
            endpoint_url=limited.url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"mode": "standard", "max_attempts": 1}),
        )
        with pytest.raises(ClientError) as info:
            no_retries.describe_job_queues()
        assert info.value.response["Error"]["Code"] == "TooManyRequestsException"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    retrying = boto3.client(
        "batch",
        region_name=REGION,
        endpoint_url=limited.url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"mode": "standard", "max_attempts": 10}),
    )
    release = threading.Event()

    def hold_then_release() -> None:
        with held_requests(limited, LIMIT):
            release.wait(10)

    holder = threading.Thread(target=hold_then_release)
    holder.start()
    try:
        wait_for(lambda: _describe(limited).status_code == 429)
        # Released from another thread while botocore backs off and retries.
        threading.Timer(0.3, release.set).start()
        result = retrying.describe_job_queues()
        assert result["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert result["ResponseMetadata"]["RetryAttempts"] >= 1
    finally:
        release.set()
        holder.join(10)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def _flood(url: str, sizes: list[int], concurrency: int) -> Counter[int]:
    codes: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(size: int) -> None:
            body = b'{"jobQueues": ["' + b"q" * size + b'"]}'
            async with gate:
                response = await client.post("/v1/describejobqueues", content=body)
            codes[response.status_code] += 1

        await asyncio.gather(*(one(size) for size in sizes))
    return codes


def test_a_flood_of_large_bodies_leaves_memory_bounded(server: ServerProcess, figures: Callable[[str], None]) -> None:
    assert server.process is not None
    pid = server.process.pid
    before = _rss_mib(pid)
    # 1-10 MB bodies (the measured case: RSS went from 85 MB to 1.07 GB before the limit), 32 at a time.
    large = asyncio.run(_flood(server.url, [(1 + i % 10) * 1_048_576 for i in range(60)], 32))
    after_large = _rss_mib(pid)
    # Bodies just under the 1 MiB limit are read and answered, 64 at a time.
    fits = asyncio.run(_flood(server.url, [1_000_000] * 120, 64))
    peak = _rss_mib(pid)
    after_fits = peak
    for _ in range(15):  # given back once idle: the server trims its heap at most once a second
        time.sleep(0.2)
        after_fits = min(after_fits, _rss_mib(pid))
    figures(
        f"overload: RSS {before:.0f} MiB before; {after_large:.0f} MiB after 60 bodies of 1-10 MB {dict(large)}; "
        f"{peak:.0f} MiB right after 120 bodies of 1 MB {dict(fits)}, {after_fits:.0f} MiB once idle"
    )
    assert set(large) == {413}
    assert set(fits) == {200}
    assert httpx.get(f"{server.url}/health").status_code == 200
    # Bounded: the limits hold a few dozen MiB of bodies at once, not the gigabyte of the flood.
    assert after_fits - before < 300, (before, after_large, after_fits)
