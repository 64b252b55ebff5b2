"""Shared fixtures: a real server process per test module, boto3 clients, PostgreSQL databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support import DEFAULT_PG_URL, ServerProcess

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the whole module; tests create uniquely named resources."""
    # No GPUs, whatever the test machine has: GPU behaviour is tested with a fixed set.
    proc = ServerProcess(
        tmp_path_factory.mktemp("server"), extra_args=("--kill-grace-seconds", "2"), env={"OPENBATCH_GPUS": ""}
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def batch(server: ServerProcess) -> BatchClient:
    return server.batch()


def _pg_admin_url() -> str:
    return os.environ.get("OPENBATCH_TEST_PG_URL", DEFAULT_PG_URL)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards.

    Skipped when PostgreSQL is unreachable, except under CI (``CI`` set), where
    a missing database must fail the run rather than hide the store tests.
    """
    import psycopg

    admin = _pg_admin_url()
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but unreachable at {admin}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {admin}")
    name = f"openbatch_test_{uuid.uuid4().hex[:12]}"
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def figures(record_property: Callable[[str, object], None]) -> Callable[[str], None]:
    """Record a measured figure: printed in the run's summary (under xdist too, where stdout is not)."""

    def add(line: str) -> None:
        record_property("figure", line)

    return add


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = [
        str(value)
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        for name, value in getattr(report, "user_properties", ())
        if name == "figure"
    ]
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
