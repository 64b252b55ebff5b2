"""How many attempts the server hands a Ray cluster beyond its CPUs: about 0.25 s of work per CPU at the
recent attempts' run time, between one and 16 per CPU, and back to one as soon as attempts report that
they run (long before they end)."""

from __future__ import annotations

from pathlib import Path

from openbatch.executors.base import ExitInfo
from openbatch.executors.ray.cluster import MAX_QUEUED_PER_CPU, QUEUED_SECONDS, ClusterSettings, RayCluster
from openbatch.logs.store import LogStore


def _cluster(tmp_path: Path) -> RayCluster:
    return RayCluster(ClusterSettings(address="127.0.0.2:6379", dispatcher_name="d"), LogStore(tmp_path))


def _ended(cluster: RayCluster, run_ms: int) -> None:
    cluster._ran(ExitInfo(exit_code=0, started_at=1_000_000, ended_at=1_000_000 + run_ms))


def test_one_per_cpu_until_attempts_have_run(tmp_path: Path) -> None:
    assert _cluster(tmp_path).queued_per_cpu() == 1.0


def test_short_attempts_queue_more_up_to_the_cap(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    for _ in range(30):
        _ended(cluster, 50)  # 0.25 s / 0.05 s: five per CPU
    assert 4.9 < cluster.queued_per_cpu() < 5.1
    for _ in range(30):
        _ended(cluster, 2)
    assert cluster.queued_per_cpu() == MAX_QUEUED_PER_CPU


def test_long_attempts_queue_one_per_cpu_and_say_so_at_their_first_report(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    for _ in range(30):
        _ended(cluster, 2)
    assert cluster.queued_per_cpu() == MAX_QUEUED_PER_CPU
    for _ in range(15):
        cluster._run_time.add(QUEUED_SECONDS)  # what a start event (a first report, 0.1 s in) counts for
    assert cluster.queued_per_cpu() < 1.1
    for _ in range(10):
        _ended(cluster, 3_600_000)
    assert cluster.queued_per_cpu() == 1.0


def test_attempts_that_never_started_teach_nothing(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    cluster._ran(ExitInfo(exit_code=None, started=False, started_at=None, ended_at=5))
    assert cluster.queued_per_cpu() == 1.0
