"""Fair-share ordering of the RUNNABLE jobs of a job queue that has a fair-share scheduling policy.

A job queue with a ``fairsharePolicy`` does not dispatch in submission order.
Jobs are grouped by their ``shareIdentifier`` (a *share*), and each dispatch
decision serves the share that has had the least of the queue's compute
lately, relative to its weight. This module is that ordering and the usage
accounting behind it.

Usage
-----
A share's *usage* is the vCPU-seconds its jobs have used in this job queue,
with older use counting less (see *Decay*). A job uses its vCPUs (its
``VCPU`` requirement) from dispatch until its attempt ends, whatever it does
with them; memory and GPUs are not counted, as on AWS.

A job is charged in two steps, so that each decision already sees the work
handed out just before it:

* at dispatch, up front, for its expected run time: vCPUs × the smaller of
  τ (below) and the running average of the share's attempt durations (the
  queue's average for a share with no finished attempt yet, 60 s before any
  attempt of the queue has ended);
* if it runs longer, the rest as it is used; if it ends sooner, the unused
  part of the up-front charge is given back.

So every attempt is charged exactly the vCPU-seconds it used; charging up
front only moves part of it earlier, which matters for decay alone. Without
it, the dispatches of one scheduling cycle, between which no time passes,
would all go to the same share.

Decay
-----
Usage fades exponentially with the time constant τ = ``shareDecaySeconds``:
a vCPU-second used ``t`` seconds ago counts ``exp(-t / τ)``, so use from one
τ ago counts 37 %, from three τ ago 5 %. A share that keeps ``r`` vCPUs busy
settles at a usage of ``r × τ``. ``shareDecaySeconds`` 0 means τ = 600 s, the
minimum window the current AWS documentation gives for 0 (older versions
said 0 means "current usage only", which leaves nothing to balance over).
Usage is stored as a value and the time it was last brought up to date, so
decay costs nothing while nothing happens.

Weights
-------
A share's weight is its ``weightFactor`` from ``shareDistribution``: the
entry naming it exactly, else the entry whose identifier ends in ``*`` and
is a prefix of it, else 1.0. Its *normalized usage* is ``weight × usage``.
Lower weight means a larger share: the scheduler keeps the normalized usages
of the shares that have work level, so under contention a share of weight 1
gets three times the vCPU-seconds of a share of weight 3, and 0.125 gets
eight times what 1.0 gets.

Choosing the next job
---------------------
1. Among the shares with RUNNABLE jobs, take the one with the lowest
   normalized usage counting half the up-front charge of its next job
   (ties: the share whose next job became RUNNABLE first, then job id).
2. Within it, take the job with the highest ``schedulingPriority`` (none
   counts as 0); ties by the time it became RUNNABLE, then by job id.

The half charge in step 1 matters: serving the lowest usage as it stands
lets each share's usage swing between the common level and one charge above
it, half a charge high on average, and with decay a steady excess of usage
is a steady excess of vCPUs, as large for a share of one vCPU as for one of
a hundred. In a simulation with 7 vCPUs, 5-minute jobs, τ = 600 s and
weights 0.125 and 1, the smaller share got 23 % more than its due;
comparing at the midpoint of the swing removes that.

``schedulingPriority`` never crosses shares: a priority 9999 job of a share
above its fair share waits for a priority 0 job of a share below it.

A share arriving after another has had the queue to itself has no usage, so
it is served at the first free vCPU and until its normalized usage catches
up; a share busy long ago but idle for a few τ competes as if new.

computeReservation
------------------
With ``computeReservation`` R (0-99), ``max_vcpus × (R/100) ** A`` vCPUs are
kept free for shares that are not using the queue yet, where A is the number
of *active* shares: shares with RUNNABLE or running jobs in this queue. With
R = 50: half of the vCPUs with one active share, a quarter with two, an
eighth with three. R = 0 reserves nothing.

A share that holds no vCPUs in this queue (``is_using`` is false) may start
a job in the reserve; a share that holds some may not. So a newly arriving
share gets its first job started at once, after which the reserve (smaller
now, since A grew) applies to it too; and a share alone in the queue is
never locked out, since while it runs nothing its next job is exempt.

How the engine uses this queue
------------------------------
* ``queue_factory`` returns ``FairshareQueue(policy, clock)`` for a job queue
  whose scheduling policy has a ``fairsharePolicy``; when that policy is
  updated, call ``set_policy`` (usage history is kept).
* ``push`` and ``discard`` as for ``FifoQueue``.
* ``started(job)`` as soon as a job taken from this queue is placed (after
  ``pop``, or ``discard`` of a job from ``peek_for_reserve``), before the next
  ``peek``: the next decision of the same cycle must see it.
  ``stopped(job)`` when its attempt ends and its vCPUs are released, before
  it is pushed again for a retry.
* computeReservation, for the job ``peek`` returned, before trying the
  compute environments::

      max_vcpus = sum of maxvCpus over the queue's ENABLED compute environments
      free = sum over the same of max(maxvCpus - vCPUs in use, 0)
      if queue.admits(job, free, max_vcpus):
          place it as usual; once placed: pop(), then started(job)
      else:
          other = queue.peek_for_reserve()
          if other is not None and it can be placed:
              discard(other), then started(other); continue with the next peek
          else:
              note reservation_reason(job, max_vcpus) on the job and stop
              dispatching this queue for this cycle

  ``admits(job, free, max)`` is ``not is_using(share of job) or
  free - job vCPUs >= reserved_vcpus(max)``.
* As in a FIFO queue, a head job that does not fit blocks the queue for the
  cycle: the scheduler does not skip ahead to a smaller job of another share,
  so a large job is never starved by a stream of small ones (at the price of
  idle vCPUs while it waits).

Cost
----
``peek`` and ``pop`` cost O(S + log k), S being the shares with RUNNABLE jobs
and k the RUNNABLE jobs of the chosen share: each share keeps a heap of its
jobs (with lazy deletion, compacted once half of it is stale) and a heap of
the times its running jobs use up their up-front charge; its usage is
brought up to date in O(1) plus O(log) per such time passed. ``push`` is
O(log k); ``discard``, ``started`` and ``stopped`` are O(log) amortized.
A finished job leaves nothing behind but its part of one number, and a share
with no jobs is forgotten once its usage has decayed below 0.001
vCPU-seconds. Iterating (snapshots) is O(n log n), ``position_reason`` O(k).

Limits
------
* The long-run split matches the weights when τ is a few times the typical
  attempt duration or more. With attempts as long as τ or longer, the queue
  remembers only the last few of them, and the split can settle on the
  nearest whole number of jobs per share (with 7 vCPUs, 60-second jobs,
  τ = 60 s and weights 1:3, 5:2 instead of 5.25:1.75).
* Usage lives in memory: after a server restart every share starts at zero.
* Usage is kept per job queue; a share identifier used in two queues is two
  independent shares.
* AWS keeps a share active for about the decay period after its last job;
  here a share is active exactly while it has RUNNABLE or running jobs, so
  the reserve grows back as soon as a share drains.
* The limit of 500 active shares is enforced at SubmitJob, not here.
* ``__iter__`` (GetJobQueueSnapshot's front of queue) lists jobs in the order
  they would start if capacity freed up all at once; as time passes and jobs
  end, later positions can change.
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

    __slots__ = ("charge", "due", "prepaid", "seq", "share", "started", "vcpus")

    def __init__(self, share: str, vcpus: float, started: int, charge: float, seq: int) -> None:
        self.share = share
        self.vcpus = vcpus
        self.started = started
        self.charge = charge
        """Seconds of use charged up front."""
        self.due = started + round(charge * 1000)
        """When the up-front charge is used up and use starts accruing as it happens."""
        self.prepaid = True
        """Still within the up-front charge (not yet ``due``)."""
        self.seq = seq


class _Share:
    __slots__ = (
        "accruing_jobs",
        "accruing_vcpus",
        "as_of",
        "dues",
        "heap",
        "live",
        "name",
        "running_jobs",
        "running_vcpus",
        "runtime",
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
        self.running_jobs = 0
        self.running_vcpus = 0.0
        self.accruing_jobs = 0
        self.accruing_vcpus = 0.0
        """vCPUs of running jobs past their up-front charge: usage grows by these as time passes."""
        self.dues: list[tuple[int, int, str]] = []
        """(due, run sequence, job id) of prepaid runs, earliest first; entries of ended runs are skipped."""
        self.runtime: float | None = None
        """Running average of this share's attempt durations, seconds."""

    def decay_to(self, when: int, tau: float) -> None:
        elapsed = (when - self.as_of) / 1000.0
        if elapsed <= 0:
            return
        fade = math.exp(-elapsed / tau)
        # Exact for a constant accruing rate, which only changes at dues and at stopped().
        self.usage = self.usage * fade + self.accruing_vcpus * tau * (1.0 - fade)
        self.as_of = when


class FairshareQueue:
    """RUNNABLE jobs of a fair-share job queue, in fair-share dispatch order; see the module docstring."""

    def __init__(self, policy: FairsharePolicy, clock: Clock) -> None:
        self._policy = policy
        self._clock = clock
        self._tau = float(policy.share_decay_seconds or DEFAULT_DECAY_SECONDS)
        self._weights: dict[str, float] = {}
        self._shares: dict[str, _Share] = {}
        self._waiting: dict[str, _Share] = {}
        """Shares with RUNNABLE jobs: the only ones a decision looks at."""
        self._active: set[str] = set()
        self._live: dict[str, _Entry] = {}
        self._running: dict[str, _Run] = {}
        self._runtime: float | None = None
        """Running average of attempt durations over all shares, for shares with none of their own."""
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
            self._advance(share, now)
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
            rank = (self._rank(share, top[4], now), top[1], top[2])
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
        lanes: list[_Lane] = []
        for share in self._waiting.values():
            jobs = [e[4] for e in sorted(e for e in share.heap if self._live.get(e[2]) is e)]
            self._advance(share, now)
            lanes.append(_Lane(jobs, self.weight(share.name), share.usage, self._expected_seconds(share)))
        # Copied up front: the listing must not change if the queue does while it is being read.
        return _interleave(lanes)

    # --- usage accounting -------------------------------------------------------------

    def started(self, job: Job) -> None:
        """``job`` was dispatched: its share now holds its vCPUs and is charged its expected run time."""
        if job.id in self._running:
            return
        vcpus = job.spec.resources.vcpus
        now = self._clock.now_ms()
        share = self._share(share_of(job), now)
        self._advance(share, now)
        self._seq += 1
        run = self._running[job.id] = _Run(share.name, vcpus, now, self._expected_seconds(share), self._seq)
        share.usage += vcpus * run.charge
        heapq.heappush(share.dues, (run.due, run.seq, job.id))
        share.running_jobs += 1
        share.running_vcpus += vcpus
        self._active.add(share.name)
        self._version += 1

    def stopped(self, job: Job) -> None:
        """The attempt of ``job`` ended: its vCPUs are released. Unknown jobs are ignored."""
        run = self._running.get(job.id)
        if run is None:
            return
        now = self._clock.now_ms()
        share = self._shares[run.share]
        # Before forgetting the run: if its charge ran out meanwhile, it must switch to accruing first.
        self._advance(share, now)
        del self._running[job.id]
        seconds = max(now - run.started, 0) / 1000.0
        if run.prepaid:
            # Ended before its up-front charge was used: give back the unused part, decayed as the charge was.
            refund = run.vcpus * (run.charge - seconds) * math.exp(-seconds / self._tau)
            share.usage = max(share.usage - refund, 0.0)
        else:
            share.accruing_jobs -= 1
            # Reset exactly at zero so float error cannot leave a phantom fraction of a vCPU.
            share.accruing_vcpus = share.accruing_vcpus - run.vcpus if share.accruing_jobs else 0.0
        share.running_jobs -= 1
        if share.running_jobs:
            share.running_vcpus -= run.vcpus
            if len(share.dues) > 2 * share.running_jobs + _COMPACT_MIN_STALE:
                share.dues = [d for d in share.dues if self._prepaid(d) is not None]
                heapq.heapify(share.dues)
        else:
            share.running_vcpus = 0.0
            share.dues.clear()
            if not share.live:
                self._active.discard(run.share)
        share.runtime = _smooth(share.runtime, seconds)
        self._runtime = _smooth(self._runtime, seconds)
        self._version += 1

    def share_usage(self) -> dict[str, float]:
        """Decayed usage (vCPU-seconds) of every share still remembered, as of now; not weighted."""
        now = self._clock.now_ms()
        self._prune(now)
        usage = {}
        for share in self._shares.values():
            self._advance(share, now)
            usage[share.name] = share.usage
        return usage

    def normalized_usage(self, share: str) -> float:
        """``weight × usage`` as of now: what decisions compare, before adding half the next job's charge."""
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
            rank = (self._rank(share, top[4], now), top[1], top[2], top[4])
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
            other = self._shares[share_of(head)]
            # The numbers decisions compared, so the message never contradicts the order.
            mine, theirs = self._rank(share, self._top(share)[4], now), self._rank(other, head, now)
            parts.append(
                f"share {name} is above its fair share (weighted usage {mine:.1f} vs {theirs:.1f} vCPU-seconds); "
                f"share {other.name} is served first"
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
        self._advance(share, now)
        return self.weight(share.name) * share.usage

    def _rank(self, share: _Share, job: Job, now: int) -> float:
        """What decisions compare: normalized usage counting half the up-front charge of ``job`` (module docstring)."""
        self._advance(share, now)
        return self.weight(share.name) * (share.usage + job.spec.resources.vcpus * self._expected_seconds(share) / 2)

    def _expected_seconds(self, share: _Share) -> float:
        """The up-front charge of a new run of ``share`` per vCPU: its expected duration, at most τ."""
        runtime = share.runtime if share.runtime is not None else self._runtime
        # More than τ at once would outweigh what a vCPU used continuously ever adds up to (τ vCPU-seconds).
        return min(runtime if runtime is not None else DEFAULT_RUNTIME_SECONDS, self._tau)

    def _advance(self, share: _Share, now: int) -> None:
        """Bring the share's usage up to ``now``, switching runs whose charge is used up to accruing."""
        dues = share.dues
        while dues and dues[0][0] <= now:
            entry = heapq.heappop(dues)
            run = self._prepaid(entry)
            if run is None:
                continue
            share.decay_to(entry[0], self._tau)
            run.prepaid = False
            share.accruing_jobs += 1
            share.accruing_vcpus += run.vcpus
        share.decay_to(now, self._tau)

    def _prepaid(self, entry: tuple[int, int, str]) -> _Run | None:
        run = self._running.get(entry[2])
        return run if run is not None and run.seq == entry[1] and run.prepaid else None

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
            self._advance(share, now)
            if share.usage < FORGET_BELOW:
                del self._shares[name]
                self._weights.pop(name, None)
        self._prune_at = max(64, 2 * len(self._shares))


class _Lane:
    """One share's jobs in ``__iter__``'s projection, and the usage it would reach."""

    __slots__ = ("at", "charge", "jobs", "usage", "weight")

    def __init__(self, jobs: list[Job], weight: float, usage: float, charge: float) -> None:
        self.jobs = jobs
        self.weight = weight
        self.usage = usage
        self.charge = charge
        self.at = 0

    def rank(self) -> tuple[float, int, str]:
        job = self.jobs[self.at]
        since = job.runnable_since if job.runnable_since is not None else job.created_at
        return (self.weight * (self.usage + job.spec.resources.vcpus * self.charge / 2), since, job.id)


def _interleave(lanes: list[_Lane]) -> Iterator[Job]:
    order = [(*lane.rank(), index) for index, lane in enumerate(lanes)]
    heapq.heapify(order)
    while order:
        index = heapq.heappop(order)[3]
        lane = lanes[index]
        job = lane.jobs[lane.at]
        yield job
        lane.usage += job.spec.resources.vcpus * lane.charge
        lane.at += 1
        if lane.at < len(lane.jobs):
            heapq.heappush(order, (*lane.rank(), index))


def _smooth(average: float | None, sample: float) -> float:
    return sample if average is None else average + RUNTIME_SMOOTHING * (sample - average)


def _jobs(count: int) -> str:
    return "job" if count == 1 else "jobs"
