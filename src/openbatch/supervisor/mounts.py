"""The supervisor's own mount namespace (root only).

A root supervisor mounts per attempt (the state tmpfs, an overlay of the image, a devpts). In a
namespace of its own these mounts never reach the host's mount table, which every other process's
``/proc/self/mountinfo`` lists, and they go away with the supervisor, even a SIGKILLed one. ``/`` is made a
slave of the host's: what the host mounts later (a volume a job names) still shows here.
"""

from __future__ import annotations

import ctypes
import logging
import os

logger = logging.getLogger(__name__)

_CLONE_NEWNS = 0x00020000
_MS_REC = 1 << 14
_MS_SLAVE = 1 << 19


def own_mount_namespace() -> bool:
    """Move this process into a mount namespace of its own; ``False`` where that is not allowed.

    Call it before any thread starts: the kernel refuses ``unshare(CLONE_NEWNS)`` to a process whose
    threads share its file system context."""
    if os.geteuid() != 0:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNS) != 0:
        logger.info("mounts stay in the host's namespace: unshare: %s", os.strerror(ctypes.get_errno()))
        return False
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_SLAVE, None) != 0:
        logger.info("the host's later mounts will not show here: %s", os.strerror(ctypes.get_errno()))
    return True
