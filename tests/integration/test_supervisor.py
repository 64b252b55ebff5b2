"""The supervisor process on its own: launches are idempotent per attempt, exits wait for acknowledgement,
and attempts of a supervisor that died are reported lost, never started again."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from openbatch.executors.base import HOST_LOST, ExitInfo, LaunchSpec, attempt_key
from openbatch.store.sql import SqlStore
from openbatch.supervisor.client import OutcomeTarget, SupervisorExecutor
from openbatch.supervisor.outcomes import RecordedOutcomes

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def spec(tmp_path: Path, job_id: str, script: str) -> LaunchSpec:
    return LaunchSpec(
        job_id=job_id,
        attempt=1,
        command=("sh", "-c", script),
        environment={"AWS_BATCH_JOB_ID": job_id, "AWS_BATCH_JOB_ATTEMPT": "1"},
        working_dir=tmp_path / "work" / job_id,
        log_stream=f"def/default/{job_id}",
    )


def executor(tmp_path: Path) -> SupervisorExecutor:
    return SupervisorExecutor(tmp_path / "supervisor", tmp_path / "logs", kill_grace_seconds=1, linger_seconds=1)


def supervisor_pid(tmp_path: Path) -> int:
    return int((tmp_path / "supervisor" / "pid").read_text())


def alive(pid: int) -> bool:
    """Running: a zombie is dead (this test process may be a subreaper that inherited the orphan)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return data[data.rfind(b")") + 2 : data.rfind(b")") + 3] != b"Z"


def test_a_second_launch_of_an_attempt_is_refused_and_follows_the_first(tmp_path: Path) -> None:
    runs = tmp_path / "runs"

    async def main() -> tuple[ExitInfo, ExitInfo | None, dict[str, Any]]:
        first = executor(tmp_path)
        await first.start()
        launched = spec(tmp_path, "job-1", f"echo run >> {runs}; sleep 1")
        first.launch(launched, lambda info: None)
        await asyncio.sleep(0.3)
        await first.aclose()
        # A new server (after a crash, say) launches the same attempt again: refused, and its
        # callback gets the exit of the run that was already going.
        second = executor(tmp_path)
        await second.start()
        known = dict(second.known_attempts())
        done: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()
        second.launch(launched, done.set_result)
        info = await asyncio.wait_for(done, 10)
        # Until acknowledged, the exit is still held: a third connection sees it.
        await second.aclose()
        third = executor(tmp_path)
        await third.start()
        held = third.known_attempts().get(attempt_key("job-1", 1))
        third.forget([attempt_key("job-1", 1)])
        await third.aclose()
        return info, held.exit if held is not None else None, known

    info, held, known = run(main())
    assert runs.read_text().splitlines() == ["run"]  # started once
    assert attempt_key("job-1", 1) in known
    assert info.exit_code == 0
    assert held is not None and held.exit_code == 0


def test_attempts_of_a_supervisor_that_died_are_lost_not_rerun(tmp_path: Path) -> None:
    runs = tmp_path / "runs"

    async def main() -> tuple[int, ExitInfo | None]:
        first = executor(tmp_path)
        await first.start()
        first.launch(spec(tmp_path, "job-2", f"echo $$ >> {runs}; exec sleep 60"), lambda info: None)
        deadline = time.monotonic() + 10
        while not (runs.exists() and runs.read_text().strip()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await first.aclose()
        os.kill(supervisor_pid(tmp_path), signal.SIGKILL)
        await asyncio.sleep(0.2)
        second = executor(tmp_path)
        await second.start()
        known = second.known_attempts().get(attempt_key("job-2", 1))
        await second.aclose()
        return int(runs.read_text().split()[0]), known.exit if known is not None else None

    job_pid, exit_info = run(main())
    assert exit_info is not None and exit_info.reason == HOST_LOST
    deadline = time.monotonic() + 5
    while alive(job_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(job_pid)  # the new supervisor killed the orphan of the one that died
    assert runs.read_text().split() == [str(job_pid)]


def test_a_fenced_supervisor_kills_its_attempts_once_no_server_is_connected(tmp_path: Path) -> None:
    """Several servers share a store: another may take over this host's attempts, so they must end when
    no server has been connected for the fence; without a fence (one server) they run on."""
    finished = tmp_path / "finished"

    async def main() -> tuple[ExitInfo | None, ExitInfo | None]:
        fenced = SupervisorExecutor(
            tmp_path / "supervisor", tmp_path / "logs", kill_grace_seconds=1, linger_seconds=5, fence_seconds=0.5
        )
        await fenced.start()
        fenced.launch(spec(tmp_path, "fenced", f"sleep 3; echo fenced >> {finished}"), lambda info: None)
        unfenced = executor(tmp_path / "other")
        await unfenced.start()
        unfenced.launch(spec(tmp_path, "unfenced", f"sleep 3; echo unfenced >> {finished}"), lambda info: None)
        await asyncio.sleep(0.5)
        await fenced.aclose()
        await unfenced.aclose()
        await asyncio.sleep(4)
        outcomes = []
        for state_dir in (tmp_path / "supervisor", tmp_path / "other" / "supervisor"):
            again = SupervisorExecutor(state_dir, tmp_path / "logs", linger_seconds=1)
            await again.start()
            known = list(again.known_attempts().values())
            outcomes.append(known[0].exit if known else None)
            again.forget([k.key for k in known])
            await again.aclose()
        return outcomes[0], outcomes[1]

    fenced, unfenced = run(main())
    assert fenced is not None and fenced.reason == HOST_LOST and fenced.exit_code == 128 + signal.SIGKILL
    assert unfenced is not None and unfenced.exit_code == 0
    assert finished.read_text().splitlines() == ["unfenced"]


def test_outcomes_no_server_acknowledged_are_written_to_the_shared_store_once_it_is_gone(tmp_path: Path) -> None:
    """Told where the shared store is, a supervisor whose server has gone writes there how each attempt
    ended that no server acknowledged: one told to the server that never acknowledged it, and one that
    ended after it left; not one the server acknowledged. A server that connects later is told of them
    as always."""
    store = SqlStore(f"sqlite:///{tmp_path / 'shared.db'}")
    store.migrate()
    target = OutcomeTarget(store.url, "openbatch-a", keep_seconds=30)
    release = tmp_path / "release"

    async def main() -> dict[str, ExitInfo | None]:
        server = SupervisorExecutor(
            tmp_path / "supervisor", tmp_path / "logs", kill_grace_seconds=1, linger_seconds=1, outcomes=target
        )
        await server.start()
        loop = asyncio.get_running_loop()
        ended: dict[str, asyncio.Future[ExitInfo]] = {}
        for name, script in (
            ("acknowledged", "true"),
            ("told", "exit 3"),
            ("later", f"until [ -e {release} ]; do sleep 0.05; done"),
        ):
            ended[name] = loop.create_future()
            server.launch(spec(tmp_path, name, script), ended[name].set_result)
        await asyncio.wait_for(asyncio.gather(ended["acknowledged"], ended["told"]), 10)
        server.forget([attempt_key("acknowledged", 1)])
        await server.aclose()
        release.touch()
        deadline = time.monotonic() + 10
        while len(RecordedOutcomes(store).read()) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        again = SupervisorExecutor(tmp_path / "supervisor", tmp_path / "logs", linger_seconds=1)
        await again.start()
        known = dict(again.known_attempts())
        again.forget(list(known))
        await again.aclose()
        return {key: attempt.exit for key, attempt in known.items()}

    known = run(main())
    outcomes = {outcome.key: outcome for outcome in RecordedOutcomes(store).read()}
    store.close()
    assert sorted(outcomes) == ["later#1", "told#1"]
    assert (outcomes["told#1"].exit_code, outcomes["later#1"].exit_code) == (3, 0)
    for outcome in outcomes.values():
        assert outcome.host == "openbatch-a" and outcome.started
        assert outcome.started_at is not None and outcome.started_at <= outcome.stopped_at
    assert {key: info.exit_code if info else None for key, info in known.items()} == {"later#1": 0, "told#1": 3}
