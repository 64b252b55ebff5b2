"""Fair-share ordering of the RUNNABLE jobs of a job queue that has a fair-share scheduling policy.

A job queue with a ``fairsharePolicy`` does not dispatch in submission order.
Jobs are grouped by their ``shareIdentifier`` (a *share*) and every dispatch
decision serves the share that has had the least of the compute environment
lately, relative to its weight. This module is that ordering and the usage
accounting behind it.

Usage
-----
A share's *usage* is the vCPU-seconds its jobs have used in this job queue,
with older use counting less (see *Decay*). A job uses its vCPUs (the
``VCPU`` resource requirement) from the moment it is dispatched until its
attempt ends, whatever it does with them; memory and GPUs are not counted,
as on AWS.

Decay
-----
Usage fades exponentially with the time constant ``shareDecaySeconds``
(written τ below): a vCPU-second used ``t`` seconds ago counts
``exp(-t / τ)``, so use from one τ ago counts 37 %, from three τ ago 5 %.
A share that keeps ``r`` vCPUs busy settles at a usage of ``r × τ``
vCPU-seconds. ``shareDecaySeconds`` 0 means τ = 600 s, the minimum window
current AWS documentation gives for 0 (older documentation said 0 means
"current usage only", which makes a share's history worthless; we follow the
current text). Because usage is stored as a value plus the time it was last
brought up to date, decay costs nothing while nothing happens.

Weights
-------
Each share's weight is its ``weightFactor`` from ``shareDistribution``: an
exact ``shareIdentifier`` entry wins; otherwise the entry whose identifier
ends in ``*`` and is a prefix of the share; otherwise 1.0. A share's
*normalized usage* is::

    weight × (usage + running vCPUs × τ)

The running term charges the vCPUs a share holds right now as if it had
held them for a whole τ. Without it a burst of dispatches in one scheduling
cycle, when no time passes and usage cannot change, would all go to one
share; with it the burst is split in inverse proportion to the weights at
once. It does not change the long-run balance, because in steady state usage
is itself ``running × τ``.

Lower weight means a larger share: the scheduler keeps the normalized usages
of contending shares level, so a share of weight 1 settles at three times the
vCPU-seconds of a share of weight 3 (0.125 gets 8 times what 1.0 gets).

Choosing the next job
---------------------
1. Among shares with RUNNABLE jobs, take the one with the lowest normalized
   usage (ties: the one whose next job has waited longest, then job id).
2. Within it, the job with the highest ``schedulingPriority`` (none counts
   as 0); ties by the time it became RUNNABLE, then by job id.

``schedulingPriority`` never crosses shares: a priority 9999 job of a share
that is above its fair share waits for a priority 0 job of one below it.

A share that arrives after another has had the queue to itself has zero
usage, so it is served at the first free vCPU, and keeps being served until
its normalized usage catches up; a share that was busy long ago but has been
idle for a few τ competes as if new.

computeReservation
------------------
With ``computeReservation`` R (0-99), ``max_vcpus × (R/100) ** A`` vCPUs are
kept free for shares that are not using the queue yet, where A is the number
of *active* shares: shares with RUNNABLE or running jobs in this queue. With
R = 50 and one active share, half of the vCPUs are kept back; with two, a
quarter; with three, an eighth. R = 0 reserves nothing.

A share that holds no vCPUs in this queue (``is_using`` is false) may start a
job in the reserved vCPUs; a share that holds some may not. So a new share
gets its first job started at once, and from then on the reserve (now smaller,
since A grew) applies to it too. A share alone in the queue is never locked
out: while it runs nothing, its next job is exempt.

How the engine uses this queue
------------------------------
* ``queue_factory`` returns ``FairshareQueue(policy, clock)`` for a job queue
  whose scheduling policy has a ``fairsharePolicy``; when the policy is
  updated, call ``set_policy`` (usage history is kept).
* ``push``/``discard`` exactly as for ``FifoQueue``.
* ``started(job)`` right after ``pop()`` (or ``discard`` of a job taken from
  ``peek_for_reserve``) when the job is placed, before the next ``peek``:
  the next decision of the same cycle must see the vCPUs just handed out.
  ``stopped(job)`` when the attempt ends and its vCPUs are released (before
  the job is pushed back for a retry).
* computeReservation, for the job ``peek`` returned and before trying the
  compute environments::

      max_vcpus = sum(ce.max_vcpus for the queue's ENABLED compute environments)
      free = sum(max(ce.max_vcpus - vCPUs in use on ce, 0) for the same)
      if queue.admits(job, free, max_vcpus):
          place it as usual; on success pop(), then started(job)
      else:
          other = queue.peek_for_reserve()
          if other is not None and it can be placed:
              discard(other), then started(other), and continue the loop
          else:
              note the reason (reservation_reason) on job and stop
              dispatching this queue for this cycle

  ``admits`` is ``not is_using(share) or free - job vCPUs >=
  reserved_vcpus(max_vcpus)``.
* As with FIFO queues, a head job that does not fit blocks the queue for the
  cycle: the scheduler does not skip ahead to a smaller job of another share,
  so a large job is never starved by a stream of small ones (at the cost of
  idle vCPUs while it waits).

Cost
----
``peek`` and ``pop`` cost O(S + log k), where S is the number of shares with
RUNNABLE jobs and k the RUNNABLE jobs of the chosen share: each share keeps a
heap (with lazy deletion, compacted when half of it is stale) and its usage
is brought up to date in O(1). ``push`` is O(log k), ``discard``,
``started`` and ``stopped`` O(1) amortized. A finished job leaves nothing
behind but its contribution to one number; a share with no jobs is forgotten
once its usage has decayed below 0.001 vCPU-seconds. Iteration (snapshots) and
``position_reason`` are O(n log n) and O(k).

Limits
------
* Usage lives in memory: after a server restart every share starts from zero.
* Usage is kept per job queue; one share identifier used in two queues is two
  independent shares.
* AWS keeps a share active for about the decay period after its last job;
  here a share is active exactly while it has RUNNABLE or running jobs, so the
  reserve grows back as soon as a share drains.
* The limit of 500 active shares is enforced at SubmitJob, not here.
* ``__iter__`` (GetJobQueueSnapshot's front of queue) shows the order in which
  jobs would start if capacity freed up all at once; with time passing and
  jobs ending, later positions may change.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator

from openbatch.clock import Clock
from openbatch.domain.job import Job
from openbatch.domain.resources import FairsharePolicy

DEFAULT_DECAY_SECONDS = 600
"""τ when ``shareDecaySeconds`` is 0."""

DEFAULT_RUNTIME_SECONDS = 60.0
"""Expected attempt duration before any attempt of the queue has ended."""

RUNTIME_SMOOTHING = 0.2
"""Weight of the latest attempt in the running average of attempt durations."""

FORGET_BELOW = 1e-3
"""Decayed usage (vCPU-seconds) under which an idle share is dropped."""

_COMPACT_MIN_STALE = 32

# (-priority, runnable since, job id, push sequence, job): the sequence is unique,
# so comparisons never reach the Job, and a re-pushed job never ties its own stale entry.
_Entry = tuple[int, int, str, int, Job]


def share_of(job: Job) -> str:
    """The share a job is accounted to; jobs without one (not valid on fair-share queues) share ``""``."""
    return job.spec.share_identifier or ""


def _key(job: Job) -> tuple[int, int, str]:
    since = job.runnable_since if job.runnable_since is not None else job.created_at
    return (-(job.spec.scheduling_priority or 0), since, job.id)


class _Run:
    """One job between ``started`` and ``stopped``."""

    __slots__ = ("charged", "due", "seq", "share", "started", "vcpus")

    def __init__(self, share: str, vcpus: float, started: int, due: int, seq: int) -> None:
        self.share = share
        self.vcpus = vcpus
        self.started = started
        self.due = due
        """When its expected duration is up, in ms from the queue's base."""
        self.seq = seq
        self.charged = True
        """Whether it still counts in its share's charge (until ``due`` or its end)."""


class _Share:
    __slots__ = (
        "as_of",
        "charged_due",
        "charged_jobs",
        "charged_vcpus",
        "dues",
        "heap",
        "live",
        "name",
        "runtime",
        "running_jobs",
        "running_vcpus",
        "stale",
        "usage",
    )

    def __init__(self, name: str, now: int) -> None:
        self.name = name
        self.heap: list[_Entry] = []
        self.live = 0
        """RUNNABLE jobs of this share in the queue."""
        self.stale = 0
        """Heap entries of jobs discarded from the middle, removed lazily."""
        self.usage = 0.0
        """Decayed vCPU-seconds as of ``as_of``."""
        self.as_of = now
        self.running_vcpus = 0.0
        self.running_jobs = 0
        self.runtime: float | None = None
        """Running average of this share's attempt durations, seconds."""
        self.dues: list[tuple[int, int, str]] = []
        """(due, run sequence, job id) of charged runs, earliest first; stale entries are skipped."""
        self.charged_jobs = 0
        self.charged_vcpus = 0.0
        self.charged_due = 0.0
        """Σ vCPUs × due over charged runs, so the charge is ``charged_due - charged_vcpus × now``."""

    def advance(self, now: int, tau: float) -> None:
        elapsed = (now - self.as_of) / 1000.0
        if elapsed <= 0:
            return
        fade = math.exp(-elapsed / tau)
        # Exact for the piecewise-constant running vCPUs between started/stopped calls.
        self.usage = self.usage * fade + self.running_vcpus * tau * (1.0 - fade)
        self.as_of = now


class FairshareQueue:
    """RUNNABLE jobs of a fair-share job queue, in fair-share dispatch order; see the module docstring."""

    def __init__(self, policy: FairsharePolicy, clock: Clock) -> None:
        self._policy = policy
        self._clock = clock
        self._base = clock.now_ms()
        """Origin of the ``due`` times, which keeps the charge sums small enough to stay exact."""
        self._tau = float(policy.share_decay_seconds or DEFAULT_DECAY_SECONDS)
        self._weights: dict[str, float] = {}
        self._shares: dict[str, _Share] = {}
        self._waiting: dict[str, _Share] = {}
        """Shares with RUNNABLE jobs: the only ones a decision looks at."""
        self._active: set[str] = set()
        self._live: dict[str, _Entry] = {}
        self._running: dict[str, _Run] = {}
        self._runtime: float | None = None
        """Running average of attempt durations over all shares, for shares with no history."""
        self._seq = 0
        self._version = 0
        self._head: tuple[int, int, _Share] | None = None
        """(version, time, share) of the last decision, so ``pop`` returns what ``peek`` returned."""
        self._prune_at = 64

    # --- policy -----------------------------------------------------------------------

    @property
    def policy(self) -> FairsharePolicy:
        return self._policy

    @property
    def decay_seconds(self) -> float:
        """τ in seconds (``shareDecaySeconds``, or 600 when that is 0)."""
        return self._tau

    def set_policy(self, policy: FairsharePolicy) -> None:
        """Apply an UpdateSchedulingPolicy from the next decision on; usage so far is kept."""
        now = self._clock.now_ms()
        # Usage up to now decays at the old rate; the new τ applies from here on.
        for share in self._shares.values():
            share.advance(now, self._tau)
        self._policy = policy
        self._tau = float(policy.share_decay_seconds or DEFAULT_DECAY_SECONDS)
        self._weights.clear()
        self._version += 1

    def weight(self, share: str) -> float:
        weight = self._weights.get(share)
        if weight is None:
            weight = self._weights[share] = self._policy.weight_of(share)
        return weight

    # --- RunnableQueue ----------------------------------------------------------------

    def push(self, job: Job) -> None:
        if job.id in self._live:
            self.discard(job)
        now = self._clock.now_ms()
        share = self._share(share_of(job), now)
        self._seq += 1
        entry: _Entry = (*_key(job), self._seq, job)
        heapq.heappush(share.heap, entry)
        self._live[job.id] = entry
        share.live += 1
        self._waiting[share.name] = share
        self._active.add(share.name)
        self._version += 1
        if len(self._shares) > self._prune_at:
            self._prune(now)

    def discard(self, job: Job) -> None:
        entry = self._live.pop(job.id, None)
        if entry is None:
            return
        share = self._shares[share_of(entry[4])]
        if share.heap[0] is entry:
            heapq.heappop(share.heap)
        else:
            share.stale += 1
            if share.stale > _COMPACT_MIN_STALE and share.stale * 2 > len(share.heap):
                share.heap = [e for e in share.heap if self._live.get(e[2]) is e]
                heapq.heapify(share.heap)
                share.stale = 0
        self._removed(share)

    def peek(self) -> Job | None:
        now = self._clock.now_ms()
        head = self._head
        if head is not None and head[0] == self._version and head[1] == now:
            return head[2].heap[0][4]
        best: _Share | None = None
        best_rank: tuple[float, int, str] | None = None
        for share in self._waiting.values():
            top = self._top(share)
            rank = (self._normalized(share, now), top[1], top[2])
            if best_rank is None or rank < best_rank:
                best, best_rank = share, rank
        if best is None:
            self._head = None
            return None
        self._head = (self._version, now, best)
        return best.heap[0][4]

    def pop(self) -> Job:
        head = self._head
        if head is None or head[0] != self._version:
            if self.peek() is None:
                raise IndexError("pop from an empty FairshareQueue")
            head = self._head
            assert head is not None
        share = head[2]
        entry = heapq.heappop(share.heap)
        del self._live[entry[2]]
        self._removed(share)
        return entry[4]

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[Job]:
        """Every RUNNABLE job in the order it would start if capacity freed up all at once.

        Each share is charged for the jobs listed before, exactly as ``started``
        would charge it, so the listing interleaves shares by weight.
        """
        now = self._clock.now_ms()
        lanes: dict[str, list[_Entry]] = {}
        shares: list[tuple[float, int, str, str]] = []
        for share in self._waiting.values():
            lane = sorted(e for e in share.heap if self._live.get(e[2]) is e)
            lanes[share.name] = lane
            shares.append((self._normalized(share, now), lane[0][1], lane[0][2], share.name))
        heapq.heapify(shares)
        return self._interleave(lanes, shares)

    def _interleave(self, lanes: dict[str, list[_Entry]], shares: list[tuple[float, int, str, str]]) -> Iterator[Job]:
        positions = dict.fromkeys(lanes, 0)
        while shares:
            metric, _, _, name = heapq.heappop(shares)
            lane, at = lanes[name], positions[name]
            job = lane[at][4]
            yield job
            at = positions[name] = at + 1
            if at < len(lane):
                metric += self.weight(name) * job.spec.resources.vcpus * self._expected_seconds(self._shares[name])
                heapq.heappush(shares, (metric, lane[at][1], lane[at][2], name))

    # --- usage accounting -------------------------------------------------------------

    def started(self, job: Job) -> None:
        """``job`` was dispatched: its share now holds its vCPUs."""
        if job.id in self._running:
            return
        vcpus = job.spec.resources.vcpus
        now = self._clock.now_ms()
        share = self._share(share_of(job), now)
        share.advance(now, self._tau)
        share.running_vcpus += vcpus
        share.running_jobs += 1
        self._seq += 1
        due = now - self._base + round(self._expected_seconds(share) * 1000)
        self._running[job.id] = _Run(share.name, vcpus, now, due, self._seq)
        heapq.heappush(share.dues, (due, self._seq, job.id))
        share.charged_jobs += 1
        share.charged_vcpus += vcpus
        share.charged_due += vcpus * due
        self._active.add(share.name)
        self._version += 1

    def stopped(self, job: Job) -> None:
        """The attempt of ``job`` ended: its vCPUs are released. Unknown jobs are ignored."""
        run = self._running.pop(job.id, None)
        if run is None:
            return
        now = self._clock.now_ms()
        share = self._shares[run.share]
        share.advance(now, self._tau)
        self._uncharge(share, run)
        share.running_jobs -= 1
        if share.running_jobs:
            share.running_vcpus -= run.vcpus
            if len(share.dues) > 2 * share.charged_jobs + _COMPACT_MIN_STALE:
                share.dues = [d for d in share.dues if self._charged(d)]
                heapq.heapify(share.dues)
        else:
            # Reset exactly at zero so float error cannot leave a phantom fraction of a vCPU.
            share.running_vcpus = 0.0
            share.dues.clear()
            if not share.live:
                self._active.discard(run.share)
        seconds = max(now - run.started, 0) / 1000.0
        share.runtime = _smooth(share.runtime, seconds)
        self._runtime = _smooth(self._runtime, seconds)
        self._version += 1

    def share_usage(self) -> dict[str, float]:
        """Decayed usage (vCPU-seconds) of every share still remembered, as of now; not weighted."""
        now = self._clock.now_ms()
        self._prune(now)
        usage = {}
        for share in self._shares.values():
            share.advance(now, self._tau)
            usage[share.name] = share.usage
        return usage

    def normalized_usage(self, share: str) -> float:
        """The number decisions compare: ``weight × (usage + expected remaining use of running jobs)``."""
        record = self._shares.get(share)
        return 0.0 if record is None else self._normalized(record, self._clock.now_ms())

    def running_vcpus(self) -> dict[str, float]:
        """vCPUs held right now, per share holding any (GetJobQueueSnapshot's capacity usage)."""
        return {s.name: s.running_vcpus for s in self._shares.values() if s.running_jobs}

    # --- computeReservation -----------------------------------------------------------

    def active_shares(self) -> int:
        """Shares with RUNNABLE or running jobs in this queue."""
        return len(self._active)

    def is_active(self, share: str) -> bool:
        """Whether ``share`` has RUNNABLE or running jobs in this queue (counts in the reservation's exponent)."""
        return share in self._active

    def is_using(self, share: str) -> bool:
        """Whether ``share`` holds vCPUs in this queue; a share that does not may start a job in the reserve."""
        record = self._shares.get(share)
        return record is not None and record.running_jobs > 0

    def reserved_vcpus(self, max_vcpus: float) -> float:
        """vCPUs to keep free for shares not yet using the queue: ``max × (R/100) ** active shares``."""
        reservation = self._policy.compute_reservation
        if reservation <= 0:
            return 0.0
        return max_vcpus * (reservation / 100.0) ** len(self._active)

    def admits(self, job: Job, free_vcpus: float, max_vcpus: float) -> bool:
        """Whether computeReservation lets ``job`` start when ``free_vcpus`` of ``max_vcpus`` are free now."""
        if self._policy.compute_reservation <= 0 or not self.is_using(share_of(job)):
            return True
        # A small tolerance: vCPU counts are floats summed over compute environments.
        return free_vcpus - job.spec.resources.vcpus >= self.reserved_vcpus(max_vcpus) - 1e-9

    def reservation_reason(self, job: Job, max_vcpus: float) -> str:
        """``statusReason`` for a job that ``admits`` holds back."""
        name = share_of(job)
        share = self._shares.get(name)
        held = share.running_vcpus if share is not None else 0.0
        return (
            f"CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - computeReservation keeps "
            f"{self.reserved_vcpus(max_vcpus):g} of {max_vcpus:g} vCPUs free for shares not yet running; "
            f"share {name} already holds {held:g}"
        )

    def peek_for_reserve(self) -> Job | None:
        """The next job among shares holding no vCPUs (lowest normalized usage first): they may use the reserve.

        Remove it with ``discard`` once placed. O(S).
        """
        now = self._clock.now_ms()
        best: tuple[float, int, str, Job] | None = None
        for share in self._waiting.values():
            if share.running_jobs:
                continue
            top = self._top(share)
            rank = (self._normalized(share, now), top[1], top[2], top[4])
            if best is None or rank[:3] < best[:3]:
                best = rank
        return None if best is None else best[3]

    # --- diagnostics ------------------------------------------------------------------

    def position_reason(self, job: Job) -> str | None:
        """Why RUNNABLE ``job`` is not the next to start; ``None`` if it is, or if it is not in this queue.

        O(RUNNABLE jobs of the job's share).
        """
        entry = self._live.get(job.id)
        if entry is None:
            return None
        head = self.peek()
        if head is None or head is job:
            return None
        name = share_of(job)
        share = self._shares[name]
        parts = []
        if share_of(head) != name:
            now = self._clock.now_ms()
            other = share_of(head)
            parts.append(
                f"share {name} is above its fair share (weighted usage {self._normalized(share, now):.1f} "
                f"vs {self._normalized(self._shares[other], now):.1f}); share {other} is served first"
            )
        higher = same = 0
        for e in share.heap:
            if e is entry or self._live.get(e[2]) is not e or e > entry:
                continue
            if e[0] < entry[0]:
                higher += 1
            else:
                same += 1
        if higher and same:
            parts.append(
                f"waiting behind {higher + same} jobs in share {name} ({higher} of higher scheduling priority)"
            )
        elif higher:
            parts.append(f"waiting behind {higher} {_jobs(higher)} of higher scheduling priority in share {name}")
        elif same:
            parts.append(f"waiting behind {same} earlier {_jobs(same)} of the same scheduling priority in share {name}")
        return "; ".join(parts) or None

    def footprint(self) -> int:
        """Entries held in internal structures; bounded by current work, not by jobs ever seen."""
        return (
            sum(len(s.heap) for s in self._shares.values())
            + len(self._shares)
            + len(self._live)
            + len(self._running)
            + sum(len(s.dues) for s in self._shares.values())
            + len(self._weights)
        )

    # --- internals --------------------------------------------------------------------

    def _share(self, name: str, now: int) -> _Share:
        share = self._shares.get(name)
        if share is None:
            share = self._shares[name] = _Share(name, now)
        return share

    def _top(self, share: _Share) -> _Entry:
        heap = share.heap
        while self._live.get(heap[0][2]) is not heap[0]:
            heapq.heappop(heap)
            share.stale -= 1
        return heap[0]

    def _normalized(self, share: _Share, now: int) -> float:
        share.advance(now, self._tau)
        return self.weight(share.name) * (share.usage + self._committed(share, now))

    def _expected_seconds(self, share: _Share) -> float:
        """What a new run of ``share`` is charged for, in seconds: its expected duration, at most τ."""
        runtime = share.runtime if share.runtime is not None else self._runtime
        # More than τ would overstate it: decayed usage of one vCPU never exceeds τ vCPU-seconds.
        return min(runtime if runtime is not None else DEFAULT_RUNTIME_SECONDS, self._tau)

    def _committed(self, share: _Share, now: int) -> float:
        """vCPU-seconds the share's running jobs are still expected to use (each until its ``due``)."""
        at = now - self._base
        dues = share.dues
        while dues and dues[0][0] <= at:
            entry = heapq.heappop(dues)
            if self._charged(entry):
                self._uncharge(share, self._running[entry[2]])
        if not share.charged_jobs:
            return 0.0
        return max(share.charged_due - share.charged_vcpus * at, 0.0) / 1000.0

    def _charged(self, entry: tuple[int, int, str]) -> bool:
        run = self._running.get(entry[2])
        return run is not None and run.seq == entry[1] and run.charged

    def _uncharge(self, share: _Share, run: _Run) -> None:
        if not run.charged:
            return
        share.charged_jobs -= 1
        if share.charged_jobs:
            share.charged_vcpus -= run.vcpus
            share.charged_due -= run.vcpus * run.due
        else:
            share.charged_vcpus = share.charged_due = 0.0
        run.charged = False

    def _removed(self, share: _Share) -> None:
        share.live -= 1
        if not share.live:
            share.heap.clear()
            share.stale = 0
            self._waiting.pop(share.name, None)
            if not share.running_jobs:
                self._active.discard(share.name)
        self._version += 1

    def _prune(self, now: int) -> None:
        for name in [n for n, s in self._shares.items() if not s.live and not s.running_jobs]:
            share = self._shares[name]
            share.advance(now, self._tau)
            if share.usage < FORGET_BELOW:
                del self._shares[name]
                self._weights.pop(name, None)
        self._prune_at = max(64, 2 * len(self._shares))


def _smooth(average: float | None, sample: float) -> float:
    return sample if average is None else average + RUNTIME_SMOOTHING * (sample - average)


def _jobs(count: int) -> str:
    return "job" if count == 1 else "jobs"
