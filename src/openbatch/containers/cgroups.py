"""Per-attempt cgroups of a root supervisor: memory and CPU limits for containerised attempts.

Making a memory cgroup and removing it again costs more than starting a short job's container (the
kernel allocates and later offlines its per-CPU state), so a supervisor keeps the groups its attempts
ended in and hands them to later attempts: each is checked empty, given the new attempt's limits and its
OOM count noted, rather than recreated. Both layouts are handled: cgroup v1 (a ``memory`` and a ``cpu``
hierarchy, each with its own group) and v2 (one group with ``memory.max`` and ``cpu.max``).

CPU: ``vcpus`` become a weight (v1 ``cpu.shares`` of 1024 per vCPU, as ECS on EC2 gives Docker's
``--cpu-shares``; v2 ``cpu.weight``) and a hard quota of ``vcpus`` CPUs per period (``cpu.cfs_quota_us``,
``cpu.max``), as Fargate enforces it.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_MIB = 1024 * 1024
CPU_PERIOD_US = 100_000
SHARES_PER_VCPU = 1024


@dataclass(frozen=True, slots=True)
class Layout:
    """Where this host lets a root supervisor make cgroups, per controller (``None``: not available)."""

    memory: Path | None
    cpu: Path | None
    v2: bool

    def says(self) -> tuple[str, str]:
        """How memory and vCPUs are enforced, in words for the server's start message."""
        memory = "a cgroup per attempt" if self.memory is not None else "RSS sampling"
        cpu = "CPU shares and quota of a cgroup per attempt" if self.cpu is not None else "not enforced"
        return memory, cpu


_LAYOUT: Layout | None = None


def layout() -> Layout:
    """This host's cgroup layout as seen by this process (root only; cached)."""
    global _LAYOUT
    if _LAYOUT is None:
        _LAYOUT = _probe()
    return _LAYOUT


def _probe() -> Layout:
    if os.geteuid() != 0:
        return Layout(None, None, False)
    memory_v1, cpu_v1 = CGROUP_ROOT / "memory", CGROUP_ROOT / "cpu"
    memory = memory_v1 / "openbatch" if (memory_v1 / "memory.limit_in_bytes").exists() else None
    cpu = cpu_v1 / "openbatch" if (cpu_v1 / "cpu.cfs_quota_us").exists() else None
    if memory is not None or cpu is not None:
        return Layout(_usable(memory), _usable(cpu), False)
    controllers: list[str] = []
    with contextlib.suppress(OSError):
        controllers = (CGROUP_ROOT / "cgroup.controllers").read_text().split()
    root = CGROUP_ROOT / "openbatch"
    wanted = [name for name in ("memory", "cpu") if name in controllers]
    if not wanted:
        return Layout(None, None, True)
    try:
        root.mkdir(exist_ok=True)
        # v2: a group's children may only use the controllers its parent delegates to it.
        for parent in (CGROUP_ROOT, root):
            for name in wanted:
                with contextlib.suppress(OSError):
                    (parent / "cgroup.subtree_control").write_text(f"+{name}")
        delegated = (root / "cgroup.subtree_control").read_text().split()
    except OSError:
        return Layout(None, None, True)
    return Layout(
        root if "memory" in delegated else None,
        root if "cpu" in delegated else None,
        True,
    )


def _usable(root: Path | None) -> Path | None:
    if root is None:
        return None
    try:
        root.mkdir(exist_ok=True)
    except OSError:
        return None
    return root


@dataclass(slots=True)
class AttemptGroup:
    """The cgroup(s) one attempt runs in, and what to read at its end."""

    memory: Path | None
    cpu: Path | None
    v2: bool
    limit_bytes: int | None = None
    swap_bytes: int | None = None
    oom_kills_before: int = 0
    swappiness: int | None = None
    vcpus: float | None = None
    cpu_set: bool = False
    procs: list[Path] = field(default_factory=list)

    def add(self, pid: int) -> None:
        """Move ``pid`` (and so what it starts later) into the attempt's groups."""
        for procs in self.procs:
            procs.write_text(str(pid))

    def out_of_memory(self) -> bool:
        return self.memory is not None and _oom_kills(self.memory) > self.oom_kills_before

    def paths(self) -> list[Path]:
        return list(dict.fromkeys(p for p in (self.memory, self.cpu) if p is not None))


class GroupPool:
    """The supervisor's cgroups, reused from one attempt to the next."""

    def __init__(self, found: Layout) -> None:
        self.layout = found
        self.free: list[AttemptGroup] = []
        self.made: list[AttemptGroup] = []
        self._names = itertools.count(1)
        self._closed = False

    def acquire(
        self, memory_mib: int | None, vcpus: float | None, swap_mib: int = 0, swappiness: int | None = None
    ) -> AttemptGroup | None:
        """A group limited to ``memory_mib`` and ``vcpus``; ``None`` if this host gives none."""
        want_memory = memory_mib is not None and self.layout.memory is not None
        want_cpu = vcpus is not None and self.layout.cpu is not None
        if not want_memory and not want_cpu:
            return None
        for _ in range(2):
            group = self.free.pop() if self.free else self._make()
            if group is None:
                return None
            try:
                self._limit(group, memory_mib if want_memory else None, vcpus if want_cpu else None, swap_mib)
                if group.memory is not None and not group.v2 and swappiness != group.swappiness:
                    value = swappiness if swappiness is not None else self._host_swappiness()
                    (group.memory / "memory.swappiness").write_text(str(value))
                    group.swappiness = swappiness
                return group
            except OSError:
                # A limit the group cannot take (pages of the last attempt still charged above it): drop it.
                self._discard(group)
        return None

    def _host_swappiness(self) -> int:
        assert self.layout.memory is not None
        try:
            return int((self.layout.memory / "memory.swappiness").read_text())
        except (OSError, ValueError):
            return 60

    def release(self, group: AttemptGroup) -> None:
        """The attempt's processes are gone: keep the group for the next attempt (if it is empty)."""
        try:
            empty = all(not procs.read_text().strip() for procs in group.procs)
        except OSError:
            empty = False
        if empty and not self._closed:
            self.free.append(group)
        else:
            self._discard(group)

    def close(self) -> None:
        """Remove the groups (at the supervisor's exit)."""
        self._closed = True
        for group in [*self.free]:
            self._discard(group)
        self.free.clear()

    def _make(self) -> AttemptGroup | None:
        name = f"{os.getpid()}-{next(self._names)}"
        memory = self.layout.memory / name if self.layout.memory is not None else None
        cpu = self.layout.cpu / name if self.layout.cpu is not None else None
        group = AttemptGroup(memory, cpu, self.layout.v2)
        try:
            for path in group.paths():
                path.mkdir()
                group.procs.append(path / "cgroup.procs")
        except OSError:
            self._discard(group)
            return None
        if not self.made:
            atexit.register(self.close)
        self.made.append(group)
        return group

    def _discard(self, group: AttemptGroup) -> None:
        for path in group.paths():
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(ValueError):
            self.made.remove(group)

    @staticmethod
    def _limit(group: AttemptGroup, memory_mib: int | None, vcpus: float | None, swap_mib: int) -> None:
        if group.memory is not None:
            limit = memory_mib * _MIB if memory_mib is not None else None
            swap = limit + swap_mib * _MIB if limit is not None else None
            if (limit, swap) != (group.limit_bytes, group.swap_bytes):
                _write_memory(group, limit, swap)
                group.limit_bytes, group.swap_bytes = limit, swap
            group.oom_kills_before = _oom_kills(group.memory)
        if group.cpu is not None and (vcpus != group.vcpus or not group.cpu_set):
            group.vcpus, group.cpu_set = vcpus, True
            if group.v2:
                quota = "max" if vcpus is None else str(max(1000, round(vcpus * CPU_PERIOD_US)))
                (group.cpu / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
                # cpu.weight 100 is v2's default share; 1 vCPU = 100, within its 1..10000 range.
                weight = 100 if vcpus is None else min(10000, max(1, round(vcpus * 100)))
                (group.cpu / "cpu.weight").write_text(str(weight))
            else:
                (group.cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                quota = "-1" if vcpus is None else str(max(1000, round(vcpus * CPU_PERIOD_US)))
                (group.cpu / "cpu.cfs_quota_us").write_text(quota)
                shares = 1024 if vcpus is None else max(2, round(vcpus * SHARES_PER_VCPU))
                (group.cpu / "cpu.shares").write_text(str(shares))


def _write_memory(group: AttemptGroup, limit: int | None, swap: int | None) -> None:
    assert group.memory is not None
    if group.v2:
        (group.memory / "memory.max").write_text("max" if limit is None else str(limit))
        with contextlib.suppress(OSError):
            swap_max = "max" if swap is None or limit is None else str(swap - limit)
            (group.memory / "memory.swap.max").write_text(swap_max)
        return
    memsw = group.memory / "memory.memsw.limit_in_bytes"
    plain = group.memory / "memory.limit_in_bytes"
    values = ("-1" if limit is None else str(limit), "-1" if swap is None else str(swap))
    if not memsw.exists():
        plain.write_text(values[0])
        return
    # v1 keeps memory+swap at or above memory: lowering sets memory first, raising memory+swap first.
    lowering = limit is not None and (group.limit_bytes is None or limit <= group.limit_bytes)
    order = [(plain, values[0]), (memsw, values[1])]
    for path, value in order if lowering else reversed(order):
        path.write_text(value)


def _oom_kills(memory: Path) -> int:
    for name in ("memory.oom_control", "memory.events"):
        with contextlib.suppress(OSError):
            for line in (memory / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value.strip() or 0)
    return 0


_POOL: GroupPool | None = None


def pool() -> GroupPool:
    """This supervisor's pool of attempt groups."""
    global _POOL
    if _POOL is None:
        _POOL = GroupPool(layout())
    return _POOL
