from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
import tracemalloc
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from openbatch.executors.base import Executor, ExitInfo, Handle, LaunchSpec
from openbatch.executors.gpu import detect_gpus
from openbatch.executors.local import OOM_REASON, LocalExecutor, Sandbox
from openbatch.logs.store import MAX_EVENT_BYTES, LogEvent, LogStore

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs pidfd and /proc")

GROUP = "/aws/batch/job"
PY = sys.executable
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Harness:
    def __init__(self, tmp_path: Path, **executor_kwargs: Any) -> None:
        self.tmp_path = tmp_path
        self.store = LogStore(tmp_path / "logs")
        self.executor = LocalExecutor(self.store, GROUP, **executor_kwargs)
        self._counter = 0

    def spec(self, *command: str, **kwargs: Any) -> LaunchSpec:
        self._counter += 1
        kwargs.setdefault("working_dir", self.tmp_path / "work")
        kwargs.setdefault("environment", {})
        return LaunchSpec(
            job_id=f"job-{self._counter}",
            attempt=1,
            command=command,
            log_stream=f"jobdef/default/{self._counter:08x}",
            **kwargs,
        )

    def launch(self, spec: LaunchSpec) -> tuple[Handle, asyncio.Future[ExitInfo]]:
        done: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()

        def on_exit(info: ExitInfo) -> None:
            assert not done.done(), "on_exit called twice"
            done.set_result(info)

        return self.executor.launch(spec, on_exit), done

    async def run(self, spec: LaunchSpec, timeout: float = 10.0) -> ExitInfo:
        _, done = self.launch(spec)
        return await asyncio.wait_for(done, timeout)

    def events(self, spec: LaunchSpec) -> list[LogEvent]:
        events: list[LogEvent] = []
        page = self.store.get_log_events(GROUP, spec.log_stream, start_from_head=True)
        while page.events:
            events += page.events
            page = self.store.get_log_events(GROUP, spec.log_stream, next_token=page.next_forward_token)
        return events

    def messages(self, spec: LaunchSpec) -> list[str]:
        return [e.message for e in self.events(spec)]


def group_members(pgid: int) -> list[str]:
    """Command names of the live (non-zombie) processes in a process group."""
    names = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            data = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        close = data.rfind(b")")
        fields = data[close + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != b"Z":
            names.append(data[data.find(b"(") + 1 : close].decode())
    return names


async def wait_for_members(pgid: int, predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate(group_members(pgid)):
        assert time.monotonic() < deadline, f"group {pgid} never reached the expected state"
        await asyncio.sleep(0.01)


def assert_group_gone(pgid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def test_exit_codes(tmp_path: Path) -> None:
    async def main() -> list[ExitInfo]:
        h = Harness(tmp_path)
        as_protocol: Executor = h.executor  # the type checker verifies LocalExecutor fits the seam
        assert as_protocol is h.executor
        try:
            return [
                await h.run(h.spec("true")),
                await h.run(h.spec("sh", "-c", "exit 3")),
                await h.run(h.spec(PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")),
                await h.run(h.spec("sh", "-c", "kill -TERM $$")),
            ]
        finally:
            await h.executor.aclose()

    ok, three, killed, termed = run(main())
    assert ok == ExitInfo(exit_code=0)
    assert three == ExitInfo(exit_code=3)
    assert killed == ExitInfo(exit_code=128 + signal.SIGKILL)
    assert termed == ExitInfo(exit_code=128 + signal.SIGTERM)


def test_stdout_and_stderr_lines_in_order_with_timestamps(tmp_path: Path) -> None:
    script = "echo out1; sleep 0.05; echo err1 >&2; sleep 0.05; printf 'out2\\n\\nout3\\n'; sleep 0.05; echo err2 >&2"

    async def main() -> tuple[ExitInfo, Harness, LaunchSpec, int, int]:
        h = Harness(tmp_path)
        spec = h.spec("sh", "-c", script)
        before = time.time_ns() // 1_000_000
        info = await h.run(spec)
        after = time.time_ns() // 1_000_000
        await h.executor.aclose()
        return info, h, spec, before, after

    info, h, spec, before, after = run(main())
    assert info.exit_code == 0
    events = h.events(spec)
    # The empty line produces no event, as with the awslogs driver.
    assert [e.message for e in events] == ["out1", "err1", "out2", "out3", "err2"]
    stamps = [e.timestamp for e in events]
    assert stamps == sorted(stamps)
    assert before <= stamps[0] and stamps[-1] <= after
    assert stamps[-1] - stamps[0] >= 100


def test_partial_lines_at_eof_and_long_lines(tmp_path: Path) -> None:
    long_line = "print('é' * 300_000, end='')"

    async def main() -> tuple[Harness, LaunchSpec, LaunchSpec]:
        h = Harness(tmp_path)
        partial = h.spec("sh", "-c", "printf 'line1\\nno newline'; printf 'err tail' >&2")
        chopped = h.spec(PY, "-c", long_line)
        assert (await h.run(partial)).exit_code == 0
        assert (await h.run(chopped)).exit_code == 0
        await h.executor.aclose()
        return h, partial, chopped

    h, partial, chopped = run(main())
    assert sorted(h.messages(partial)) == ["err tail", "line1", "no newline"]
    pieces = h.messages(chopped)
    assert len(pieces) == 3
    assert all(len(p.encode()) <= MAX_EVENT_BYTES for p in pieces)
    assert "".join(pieces) == "é" * 300_000


def test_large_output_keeps_executor_memory_bounded(tmp_path: Path) -> None:
    line_count = 50_000
    script = f"import sys\nline = 'y' * 999 + '\\n'\nw = sys.stdout.write\nfor _ in range({line_count}): w(line)"

    async def main() -> tuple[ExitInfo, Harness, LaunchSpec, int]:
        h = Harness(tmp_path)
        spec = h.spec(PY, "-c", script)
        tracemalloc.start()
        try:
            info = await h.run(spec, timeout=30)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        await h.executor.aclose()
        return info, h, spec, peak

    info, h, spec, peak = run(main(), timeout=40)
    assert info.exit_code == 0
    assert peak < 8 * 1024 * 1024, f"executor peak allocation {peak} bytes"
    (info_stream,) = h.store.describe_log_streams(GROUP)
    assert info_stream.stored_bytes > line_count * 1000
    tail = h.store.get_log_events(GROUP, spec.log_stream, limit=1)
    assert tail.events[0].message == "y" * 999


def test_environment_and_working_dir(tmp_path: Path) -> None:
    workdir = tmp_path / "does" / "not" / "exist"

    async def main() -> tuple[ExitInfo, Harness, LaunchSpec]:
        h = Harness(tmp_path)
        spec = h.spec(
            "sh",
            "-c",
            'echo "$FOO"; echo "$AWS_BATCH_JOB_ID"; pwd',
            environment={"FOO": "bar  baz", "AWS_BATCH_JOB_ID": "j1"},
            working_dir=workdir,
        )
        info = await h.run(spec)
        await h.executor.aclose()
        return info, h, spec

    info, h, spec = run(main())
    assert info.exit_code == 0
    assert h.messages(spec) == ["bar  baz", "j1", str(workdir)]


def test_jobs_see_only_a_base_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The server's own variables (credentials, database URLs) must not leak into jobs.
    monkeypatch.setenv("SERVER_SECRET", "hunter2")
    monkeypatch.setenv("PASSED_THROUGH", "yes")
    monkeypatch.setenv("OPENBATCH_JOB_ENV", "PASSED_THROUGH")

    async def main() -> tuple[ExitInfo, Harness, LaunchSpec]:
        h = Harness(tmp_path)
        spec = h.spec("sh", "-c", 'echo "secret=${SERVER_SECRET:-unset} passed=$PASSED_THROUGH path=${PATH:+set}"')
        info = await h.run(spec)
        await h.executor.aclose()
        return info, h, spec

    info, h, spec = run(main())
    assert info.exit_code == 0
    assert h.messages(spec) == ["secret=unset passed=yes path=set"]


def test_unknown_executable_reports_not_started(tmp_path: Path) -> None:
    async def main() -> tuple[ExitInfo, bool, Harness]:
        h = Harness(tmp_path)
        handle, done = h.launch(h.spec(str(tmp_path / "no-such-binary"), "arg"))
        called_synchronously = done.done()
        h.executor.kill(handle, 0)
        info = await asyncio.wait_for(done, 5)
        await h.executor.aclose()
        return info, called_synchronously, h

    info, called_synchronously, h = run(main())
    assert not called_synchronously
    assert info.started is False and info.exit_code is None
    assert info.reason is not None and info.reason.startswith("CannotStartContainerError: ")
    assert "No such file or directory" in info.reason
    assert h.store.describe_log_streams(GROUP) == []


def test_kill_with_grace_removes_whole_process_group(tmp_path: Path) -> None:
    async def main() -> tuple[ExitInfo, int, float]:
        h = Harness(tmp_path)
        handle, done = h.launch(h.spec("sh", "-c", "sleep 100 & sleep 100"))
        await wait_for_members(handle.pid, lambda names: names.count("sleep") == 2)
        start = time.monotonic()
        h.executor.kill(handle, 5.0, "Terminated by user")
        info = await asyncio.wait_for(done, 5)
        elapsed = time.monotonic() - start
        h.executor.kill(handle, 0)  # already exited: a no-op
        await h.executor.aclose()
        return info, handle.pid, elapsed

    info, pgid, elapsed = run(main())
    assert info == ExitInfo(exit_code=128 + signal.SIGTERM, reason="Terminated by user")
    assert elapsed < 2
    assert_group_gone(pgid)


def test_background_children_die_with_main_process(tmp_path: Path) -> None:
    async def main() -> tuple[ExitInfo, int, float, Harness, LaunchSpec]:
        # A long drain deadline: exit must come from the group being killed, not from giving up on the pipes.
        h = Harness(tmp_path, pipe_drain_seconds=10.0)
        spec = h.spec("sh", "-c", "sleep 100 & echo started")
        start = time.monotonic()
        handle, done = h.launch(spec)
        info = await asyncio.wait_for(done, 5)
        elapsed = time.monotonic() - start
        await h.executor.aclose()
        return info, handle.pid, elapsed, h, spec

    info, pgid, elapsed, h, spec = run(main())
    assert info.exit_code == 0
    assert elapsed < 3
    assert h.messages(spec) == ["started"]
    assert_group_gone(pgid)


def pid_gone(pid: int) -> bool:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True
    return data[data.rfind(b")") + 2 : data.rfind(b")") + 3] == b"Z"


def test_descendant_in_its_own_session_dies_with_the_attempt(tmp_path: Path) -> None:
    # The main process starts a child in a new session (setsid) and exits at once: the child
    # is re-parented to the executor (subreaper) and must still be killed as part of the attempt.
    script = (
        "import subprocess, sys\n"
        "p = subprocess.Popen(['sleep', '30'], start_new_session=True)\n"
        "print(p.pid, flush=True)"
    )

    async def main() -> tuple[ExitInfo, float, Harness, LaunchSpec]:
        h = Harness(tmp_path, pipe_drain_seconds=0.3)
        spec = h.spec(PY, "-c", script)
        start = time.monotonic()
        info = await h.run(spec)
        elapsed = time.monotonic() - start
        await h.executor.aclose()
        return info, elapsed, h, spec

    info, elapsed, h, spec = run(main())
    (pid_line,) = h.messages(spec)
    assert info.exit_code == 0
    assert pid_gone(int(pid_line))
    assert elapsed < 3


def test_setsid_grandchild_is_killed_at_timeout(tmp_path: Path) -> None:
    script = "setsid sh -c 'echo $$; exec sleep 60' & sleep 60"

    async def main() -> tuple[ExitInfo, Harness, LaunchSpec]:
        h = Harness(tmp_path, memory_poll_interval=0.05)
        spec = h.spec("sh", "-c", script)
        handle, done = h.launch(spec)
        await wait_for_members(handle.pid, lambda names: "sleep" in names, timeout=20)
        deadline = time.monotonic() + 20
        while not h.messages(spec) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # a scan or two after the grandchild left the group
        h.executor.kill(handle, 0.2, "Job attempt duration exceeded timeout")
        info = await asyncio.wait_for(done, 20)
        await h.executor.aclose()
        return info, h, spec

    info, h, spec = run(main(), timeout=60)
    (pid_line,) = h.messages(spec)
    assert info.reason == "Job attempt duration exceeded timeout"
    assert pid_gone(int(pid_line))


def test_setsid_grandchild_counts_against_memory_limit(tmp_path: Path) -> None:
    hog = "import time\nx = b'\\x01' * (200 << 20)\ntime.sleep(20)"
    script = f'setsid {PY} -c "{hog}" & sleep 20'

    async def main() -> ExitInfo:
        h = Harness(tmp_path, memory_poll_interval=0.05)
        info = await h.run(h.spec("sh", "-c", script, memory_mib=64), timeout=15)
        await h.executor.aclose()
        return info

    assert run(main()) == ExitInfo(exit_code=137, reason=OOM_REASON)


def test_grace_escalates_to_sigkill(tmp_path: Path) -> None:
    async def main() -> tuple[ExitInfo, int, float]:
        h = Harness(tmp_path)
        handle, done = h.launch(h.spec("sh", "-c", "trap '' TERM; sleep 100; echo survived"))
        await wait_for_members(handle.pid, lambda names: "sleep" in names)
        start = time.monotonic()
        h.executor.kill(handle, 0.3, "Job timed out")
        info = await asyncio.wait_for(done, 5)
        elapsed = time.monotonic() - start
        await h.executor.aclose()
        return info, handle.pid, elapsed

    info, pgid, elapsed = run(main())
    assert info == ExitInfo(exit_code=128 + signal.SIGKILL, reason="Job timed out")
    assert 0.3 <= elapsed < 2
    assert_group_gone(pgid)


def test_memory_limit_kills_group_and_spares_small_jobs(tmp_path: Path) -> None:
    hog = "import time\nx = b'\\x01' * (200 << 20)\ntime.sleep(10)"
    modest = "x = b'\\x01' * (20 << 20)\nimport time\ntime.sleep(0.3)\nprint('fine')"

    async def main() -> tuple[ExitInfo, ExitInfo, float]:
        h = Harness(tmp_path, memory_poll_interval=0.05)
        start = time.monotonic()
        big, small = await asyncio.gather(
            h.run(h.spec(PY, "-c", hog, memory_mib=50)),
            h.run(h.spec(PY, "-c", modest, memory_mib=500)),
        )
        elapsed = time.monotonic() - start
        await h.executor.aclose()
        return big, small, elapsed

    big, small, elapsed = run(main())
    assert big == ExitInfo(exit_code=137, reason=OOM_REASON)
    assert small == ExitInfo(exit_code=0)
    assert elapsed < 5


def test_gpu_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> tuple[Harness, LaunchSpec, LaunchSpec]:
        h = Harness(tmp_path)
        script = 'echo "cuda=${CUDA_VISIBLE_DEVICES-unset} nvidia=${NVIDIA_VISIBLE_DEVICES-unset}"'
        with_gpus = h.spec("sh", "-c", script, gpu_ids=(0, 2))
        without = h.spec("sh", "-c", script)
        await h.run(with_gpus)
        await h.run(without)
        await h.executor.aclose()
        return h, with_gpus, without

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("NVIDIA_VISIBLE_DEVICES", raising=False)
    h, with_gpus, without = run(main())
    assert h.messages(with_gpus) == ["cuda=0,2 nvidia=0,2"]
    assert h.messages(without) == ["cuda=unset nvidia=unset"]

    monkeypatch.setenv("OPENBATCH_GPUS", "1, 0,3")
    assert detect_gpus() == [0, 1, 3]
    monkeypatch.setenv("OPENBATCH_GPUS", "")
    assert detect_gpus() == []
    monkeypatch.delenv("OPENBATCH_GPUS")
    assert all(isinstance(i, int) for i in detect_gpus())


def test_follower_sees_lines_while_process_runs(tmp_path: Path) -> None:
    script = "import time\nprint('first', flush=True)\ntime.sleep(0.3)\nprint('second', flush=True)\ntime.sleep(30)"

    async def main() -> tuple[list[str], float, ExitInfo]:
        h = Harness(tmp_path)
        spec = h.spec(PY, "-c", script)
        handle, done = h.launch(spec)
        seen: list[str] = []
        token: str | None = None
        start = time.monotonic()
        first_seen = 0.0
        while len(seen) < 2:
            assert time.monotonic() - start < 5, f"follower saw only {seen}"
            if h.store.stream_exists(GROUP, spec.log_stream):
                if token is None:
                    page = h.store.get_log_events(GROUP, spec.log_stream, start_from_head=True)
                else:
                    page = h.store.get_log_events(GROUP, spec.log_stream, next_token=token)
                if page.events and not seen:
                    first_seen = time.monotonic() - start
                seen += [e.message for e in page.events]
                token = page.next_forward_token
            await asyncio.sleep(0.02)
        assert not done.done()
        h.executor.kill(handle, 2.0)
        info = await asyncio.wait_for(done, 5)
        await h.executor.aclose()
        return seen, first_seen, info

    seen, first_seen, info = run(main())
    assert seen == ["first", "second"]
    assert first_seen < 2
    assert info == ExitInfo(exit_code=128 + signal.SIGTERM)


def test_many_concurrent_trivial_processes(tmp_path: Path) -> None:
    count = 500

    async def main() -> tuple[dict[int, list[ExitInfo]], int]:
        h = Harness(tmp_path)
        calls: dict[int, list[ExitInfo]] = {i: [] for i in range(count)}
        all_done = asyncio.get_running_loop().create_future()
        finished = 0

        def make_callback(i: int) -> Any:
            def on_exit(info: ExitInfo) -> None:
                nonlocal finished
                calls[i].append(info)
                finished += 1
                if finished == count:
                    all_done.set_result(None)

            return on_exit

        for i in range(count):
            h.executor.launch(h.spec("true"), make_callback(i))
        await asyncio.wait_for(all_done, 15)
        await asyncio.sleep(0.1)
        running = h.executor.running
        await h.executor.aclose()
        return calls, running

    calls, running = run(main())
    assert running == 0
    assert all(infos == [ExitInfo(exit_code=0)] for infos in calls.values())


def test_aclose_kills_running_attempts(tmp_path: Path) -> None:
    async def main() -> tuple[list[ExitInfo], list[int]]:
        h = Harness(tmp_path)
        launched = [h.launch(h.spec("sleep", "100")) for _ in range(3)]
        await asyncio.sleep(0.05)
        await h.executor.aclose()
        with pytest.raises(RuntimeError):
            h.executor.launch(h.spec("true"), lambda info: None)
        return [done.result() for _, done in launched], [handle.pid for handle, _ in launched]

    infos, pids = run(main())
    assert infos == [ExitInfo(exit_code=128 + signal.SIGKILL)] * 3
    for pid in pids:
        assert_group_gone(pid)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
def test_sandbox_hides_the_server_and_its_files(tmp_path: Path) -> None:
    secret_dir = tmp_path / "data"
    secret_dir.mkdir()
    (secret_dir / "openbatch.db").write_text("server secrets")
    sandbox = Sandbox.probe((secret_dir,))
    assert sandbox is not None
    script = (
        f"ls -A {secret_dir} | wc -l; cat {secret_dir}/openbatch.db || echo unreadable; "
        f"[ -e /proc/{os.getpid()} ] && echo sees-the-server || echo server-out-of-sight; pwd; exit 3"
    )

    async def main() -> tuple[ExitInfo, Harness, LaunchSpec]:
        h = Harness(tmp_path, sandbox=sandbox)
        spec = h.spec("sh", "-c", script)
        info = await h.run(spec, timeout=20)
        await h.executor.aclose()
        return info, h, spec

    info, h, spec = run(main(), timeout=60)
    lines = h.messages(spec)
    assert info.exit_code == 3
    assert lines[0].strip() == "0"
    assert "unreadable" in lines
    assert "server-out-of-sight" in lines
    assert lines[-1] == str(spec.working_dir)
