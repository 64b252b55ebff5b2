"""How a Ray task starts the job's command so that it dies with the Ray worker that started it: a guard
process per worker kills the job's process group when the worker dies; where the guard cannot start,
``setpriv --pdeathsig`` (so ``subprocess`` can vfork the Ray worker rather than fork it). A missing
command still fails to start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openbatch.executors.ray import task

PATH = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


def test_missing_command_fails_to_start() -> None:
    with pytest.raises(FileNotFoundError):
        task._argv(["openbatch-no-such-command"], PATH)
    with pytest.raises(FileNotFoundError):
        task._argv(["/nonexistent/openbatch-no-such-command"], PATH)


@pytest.mark.skipif(task.setpriv() is None, reason="no setpriv with --pdeathsig on this machine")
def test_command_runs_under_setpriv_with_its_own_arguments() -> None:
    argv, before_exec = task._argv(["sh", "-c", 'echo "$0 $1"; exit 3', "zero", "one"], PATH)
    assert before_exec is None  # no preexec_fn: subprocess may vfork
    assert argv[:4] == [task.setpriv(), "--pdeathsig", "KILL", "--"]
    done = subprocess.run(argv, env=PATH, capture_output=True, text=True, process_group=0, timeout=30)
    assert (done.returncode, done.stdout) == (3, "zero one\n")


def test_relative_path_is_left_to_the_job_directory() -> None:
    argv, _ = task._argv(["./run.sh", "x"], PATH)
    assert argv[-2:] == ["./run.sh", "x"]


WORKER = """
import subprocess, sys, time
from openbatch.executors.ray import task
guard = task._guard()
job = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60"], process_group=0)
guard.watch(job.pid)
print(job.pid, guard.process.pid, flush=True)
time.sleep(60)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"  # ended, not reaped yet
    except FileNotFoundError:
        return True


def _group(pgid: int) -> list[int]:
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.getpgid(int(name)) == pgid and not _gone(int(name)):
                    members.append(int(name))
            except ProcessLookupError:
                continue
    return members


def test_a_job_dies_with_the_worker_that_started_it() -> None:
    """A stand-in for a Ray worker starts a job (a shell and its background child) under its guard and is
    SIGKILLed: the guard kills the job's whole process group, then ends itself."""
    worker = subprocess.Popen([sys.executable, "-c", WORKER], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        job, guard = map(int, worker.stdout.readline().split())
        deadline = time.monotonic() + 10
        while len(_group(job)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_group(job)) == 3, "the shell and its two children run"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        deadline = time.monotonic() + 10
        while (_group(job) or not _gone(guard)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _group(job) == [] and _gone(guard)
    finally:
        worker.kill()
        worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()


def test_a_guard_kills_nothing_once_its_job_has_ended() -> None:
    guard = task._Guard()
    job = subprocess.Popen(["sleep", "60"], process_group=0)
    try:
        guard.watch(job.pid)
        guard.watch(0)  # the job ended (as far as the guard knows)
        os.close(guard._pipe)  # as when the worker dies
        guard.process.wait(timeout=10)
        assert job.poll() is None
    finally:
        job.kill()
        job.wait()
        os.close(guard.group)


def test_an_attempt_runs_in_its_working_directory_which_goes_if_left_empty(tmp_path: Path) -> None:
    """As on the node: the attempt's directory is made for it, and removed after it unless the job left files."""
    try:
        spec = {"command": ["sh", "-c", "pwd"], "environment": PATH, "workingDir": str(tmp_path / "a"), "memoryMib": 0}
        result = task._run(("no-dispatcher", "none"), "job#1", spec, "127.0.0.1")
        assert (result["exitCode"], [line for _at, line in result["lines"]]) == (0, [str(tmp_path / "a")])
        assert not (tmp_path / "a").exists()
        spec = {**spec, "command": ["sh", "-c", "echo kept > out.txt"], "workingDir": str(tmp_path / "b")}
        assert task._run(("no-dispatcher", "none"), "job#2", spec, "127.0.0.1")["exitCode"] == 0
        assert (tmp_path / "b" / "out.txt").read_text() == "kept\n"
        spec = {**spec, "command": ["openbatch-no-such-command"], "workingDir": str(tmp_path / "c")}
        result = task._run(("no-dispatcher", "none"), "job#3", spec, "127.0.0.1")
        assert result["started"] is False and result["reason"].startswith(task.NOT_STARTED)
        assert not (tmp_path / "c").exists()
    finally:
        for guard in task._GUARDS:
            os.close(guard._pipe)
            guard.process.wait(timeout=10)
            os.close(guard.group)
        task._GUARDS.clear()
