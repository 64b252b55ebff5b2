"""How a Ray task starts the job's command: through ``setpriv --pdeathsig`` where the node has it (so
``subprocess`` can vfork the Ray worker rather than fork it), a missing command still failing to start."""

from __future__ import annotations

import subprocess

import pytest

from openbatch.executors.ray import task

PATH = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


def test_missing_command_fails_to_start() -> None:
    with pytest.raises(FileNotFoundError):
        task._argv(["openbatch-no-such-command"], PATH)
    with pytest.raises(FileNotFoundError):
        task._argv(["/nonexistent/openbatch-no-such-command"], PATH)


@pytest.mark.skipif(task._SETPRIV is None, reason="no setpriv with --pdeathsig on this machine")
def test_command_runs_under_setpriv_with_its_own_arguments() -> None:
    argv, before_exec = task._argv(["sh", "-c", 'echo "$0 $1"; exit 3', "zero", "one"], PATH)
    assert before_exec is None  # no preexec_fn: subprocess may vfork
    assert argv[:4] == [task._SETPRIV, "--pdeathsig", "KILL", "--"]
    done = subprocess.run(argv, env=PATH, capture_output=True, text=True, process_group=0, timeout=30)
    assert (done.returncode, done.stdout) == (3, "zero one\n")


def test_relative_path_is_left_to_the_job_directory() -> None:
    argv, _ = task._argv(["./run.sh", "x"], PATH)
    assert argv[-2:] == ["./run.sh", "x"]
