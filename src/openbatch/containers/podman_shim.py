"""Runs ``podman run …`` and waits for conmon too: ``python -I podman_shim.py podman run …``.

conmon (podman's container monitor) leaves its parent and would become a zombie of the supervisor, which
reaps only its attempts' process groups. This shim is a child subreaper: conmon is re-parented here and
reaped here. It exits with podman's status. Standard library only: it runs with ``python -I``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

_PR_SET_CHILD_SUBREAPER = 36
_CONMON_WAIT_SECONDS = 10.0


def main() -> int:
    ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # The executor signals the whole process group, podman included: the shim itself waits. A handler,
    # not SIG_IGN, so that podman (after exec) gets the default action back.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    podman = subprocess.Popen(sys.argv[1:])
    code = podman.wait()
    deadline = time.monotonic() + _CONMON_WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.02)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
