from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from openbatch.clock import FakeClock
from openbatch.domain.job import Job, JobSpec
from openbatch.domain.jobspec import Resources, RetryPolicy
from openbatch.domain.resources import FairsharePolicy, ShareWeight
from openbatch.domain.states import JobStatus
from openbatch.scheduler.fairshare import DEFAULT_RUNTIME_SECONDS, FairshareQueue
from openbatch.scheduler.queues import RunnableQueue

T0 = 1_700_000_000_000
_ids = itertools.count()


def make_job(
    share: str | None = "A",
    *,
    priority: int | None = None,
    vcpus: float = 1.0,
    since: int = T0,
    job_id: str | None = None,
) -> Job:
    spec = JobSpec(
        job_name="job",
        queue="fair",
        definition_arn="arn:aws:batch:us-east-1:000000000000:job-definition/d:1",
        definition_name="d",
        container={},
        command=("true",),
        environment={},
        resources=Resources(vcpus=vcpus),
        retry=RetryPolicy(),
        retry_wire=None,
        timeout_seconds=None,
        parameters={},
        propagate_tags=False,
        platform_capabilities=("EC2",),
        scheduling_priority=priority,
        share_identifier=share,
        depends_on=(),
    )
    return Job(
        id=job_id or f"job-{next(_ids):08d}",
        spec=spec,
        status=JobStatus.RUNNABLE,
        created_at=since,
        runnable_since=since,
    )


def policy(weights: dict[str, float] | None = None, *, decay: int = 0, reservation: int = 0) -> FairsharePolicy:
    entries = tuple(
        ShareWeight(share_identifier=name.rstrip("*"), weight_factor=weight, wildcard=name.endswith("*"))
        for name, weight in (weights or {}).items()
    )
    return FairsharePolicy(share_decay_seconds=decay, compute_reservation=reservation, weights=entries)


def make_queue(
    weights: dict[str, float] | None = None, *, decay: int = 0, reservation: int = 0
) -> tuple[FairshareQueue, FakeClock]:
    clock = FakeClock(T0)
    return FairshareQueue(policy(weights, decay=decay, reservation=reservation), clock), clock


def drain(queue: FairshareQueue) -> list[Job]:
    out = []
    while queue.peek() is not None:
        out.append(queue.pop())
    return out


def dispatch(queue: FairshareQueue, count: int) -> list[Job]:
    """Pop and start ``count`` jobs at the current instant, as one scheduling cycle would."""
    out = []
    for _ in range(count):
        job = queue.pop()
        queue.started(job)
        out.append(job)
    return out


# --- a discrete-event simulation ------------------------------------------------------


class Simulation:
    """C vCPUs, jobs that run for a given time, the engine's peek → place → pop → started loop."""

    def __init__(
        self,
        queue: FairshareQueue,
        clock: FakeClock,
        capacity: float,
        duration_s: Callable[[Job], float],
    ) -> None:
        self.queue = queue
        self.clock = clock
        self.free = capacity
        self.duration_s = duration_s
        self.ending: list[tuple[int, int, Job]] = []
        self.runs: list[tuple[str, float, int, int]] = []
        """(share, vCPUs, start, end) of every dispatched job."""
        self._seq = itertools.count()

    def submit(self, share: str, count: int, vcpus: float = 1.0) -> None:
        now = self.clock.now_ms()
        for _ in range(count):
            self.queue.push(make_job(share, vcpus=vcpus, since=now))

    def run_until(self, until_ms: int) -> None:
        while True:
            self._dispatch()
            next_end = self.ending[0][0] if self.ending else until_ms + 1
            if next_end > until_ms:
                self.clock.advance(until_ms - self.clock.now_ms())
                return
            self.clock.advance(next_end - self.clock.now_ms())
            while self.ending and self.ending[0][0] == next_end:
                _, _, job = heapq.heappop(self.ending)
                self.queue.stopped(job)
                self.free += job.spec.resources.vcpus

    def _dispatch(self) -> None:
        now = self.clock.now_ms()
        while (job := self.queue.peek()) is not None and job.spec.resources.vcpus <= self.free:
            assert self.queue.pop() is job
            self.queue.started(job)
            self.free -= job.spec.resources.vcpus
            end = now + round(self.duration_s(job) * 1000)
            heapq.heappush(self.ending, (end, next(self._seq), job))
            self.runs.append((job.spec.share_identifier or "", job.spec.resources.vcpus, now, end))

    def vcpu_seconds(self, start_ms: int, end_ms: int) -> dict[str, float]:
        used: dict[str, float] = {}
        for share, vcpus, start, end in self.runs:
            overlap = min(end, end_ms) - max(start, start_ms)
            if overlap > 0:
                used[share] = used.get(share, 0.0) + vcpus * overlap / 1000
        return used

    def first_start(self, share: str, after_ms: int) -> int:
        return min(start for s, _, start, _ in self.runs if s == share and start >= after_ms)


def contended_ratio(
    weights: dict[str, float], *, capacity: int, duration: Callable[[Job], float], seconds: int
) -> dict[str, float]:
    queue, clock = make_queue(weights)
    sim = Simulation(queue, clock, capacity, duration)
    for share in weights:
        sim.submit(share, capacity * seconds // 20)
    sim.run_until(T0 + seconds * 1000)
    return sim.vcpu_seconds(T0, T0 + seconds * 1000)


# --- the RunnableQueue contract -------------------------------------------------------


def test_is_a_runnable_queue() -> None:
    queue, _ = make_queue()
    runnable: RunnableQueue = queue
    assert runnable.peek() is None
    assert len(runnable) == 0
    with pytest.raises(IndexError):
        queue.pop()


def test_higher_scheduling_priority_first_within_a_share() -> None:
    queue, _ = make_queue()
    low = make_job(priority=1)
    none = make_job(priority=None)
    high = make_job(priority=9999)
    mid = make_job(priority=50)
    for job in (low, none, high, mid):
        queue.push(job)
    assert drain(queue) == [high, mid, low, none]


def test_fifo_within_equal_priority_by_runnable_time_then_id() -> None:
    queue, _ = make_queue()
    late = make_job(since=T0 + 5000, job_id="a-late")
    early_b = make_job(since=T0, job_id="b-early")
    early_a = make_job(since=T0, job_id="a-early")
    for job in (late, early_b, early_a):
        queue.push(job)
    assert list(queue) == [early_a, early_b, late]
    assert drain(queue) == [early_a, early_b, late]


def test_priority_does_not_cross_shares() -> None:
    queue, _ = make_queue()
    queue.push(make_job("A"))
    dispatch(queue, 1)
    urgent = make_job("A", priority=9999)
    plain = make_job("B", priority=0)
    queue.push(urgent)
    queue.push(plain)
    assert queue.peek() is plain
    reason = queue.position_reason(urgent)
    assert reason is not None
    assert reason.startswith("share A is above its fair share")
    assert reason.endswith("share B is served first")


def test_pop_returns_what_peek_returned_even_if_time_moved() -> None:
    queue, clock = make_queue()
    queue.push(make_job("A"))
    queue.push(make_job("B"))
    head = queue.peek()
    clock.advance(1)
    assert queue.pop() is head


def test_discard() -> None:
    queue, _ = make_queue()
    jobs = [make_job("A", since=T0 + i) for i in range(5)]
    for job in jobs:
        queue.push(job)
    queue.discard(jobs[2])
    queue.discard(jobs[0])
    queue.discard(make_job("A"))  # never pushed: ignored
    queue.discard(jobs[0])  # twice: ignored
    assert len(queue) == 3
    assert list(queue) == [jobs[1], jobs[3], jobs[4]]
    assert queue.peek() is jobs[1]
    queue.push(jobs[2])  # back again (a re-queued job)
    assert drain(queue) == [jobs[1], jobs[2], jobs[3], jobs[4]]
    assert not queue.is_active("A")


def test_pushing_a_job_twice_keeps_one_entry() -> None:
    queue, _ = make_queue()
    job = make_job("A")
    queue.push(job)
    queue.push(job)
    assert len(queue) == 1
    assert drain(queue) == [job]


def test_position_reason_within_a_share() -> None:
    queue, _ = make_queue()
    first = make_job("A", priority=5, since=T0)
    second = make_job("A", priority=5, since=T0 + 1)
    third = make_job("A", priority=5, since=T0 + 2)
    low = make_job("A", priority=0)
    for job in (first, second, third, low):
        queue.push(job)
    assert queue.position_reason(first) is None
    assert queue.position_reason(third) == ("waiting behind 2 earlier jobs of the same scheduling priority in share A")
    assert queue.position_reason(low) == "waiting behind 3 jobs of higher scheduling priority in share A"
    queue.push(late := make_job("A", priority=0, since=T0 + 9))
    assert queue.position_reason(late) == "waiting behind 4 jobs in share A (3 of higher scheduling priority)"
    assert queue.position_reason(make_job("A")) is None


def test_iteration_lists_the_order_an_empty_cluster_would_start_jobs_in() -> None:
    queue, _ = make_queue({"A": 1, "B": 3})
    for _ in range(8):
        queue.push(make_job("A"))
        queue.push(make_job("B"))
    listed = list(queue)
    assert listed[0] is queue.peek()
    assert len(listed) == 16
    assert [j.spec.share_identifier for j in listed[:8]].count("A") == 6
    assert dispatch(queue, 8) == listed[:8]


# --- weights --------------------------------------------------------------------------


def test_wildcard_weights() -> None:
    queue, _ = make_queue({"team*": 0.5, "teamX": 2.0})
    assert queue.weight("teamA") == 0.5
    assert queue.weight("team") == 0.5
    assert queue.weight("teamX") == 2.0
    assert queue.weight("other") == 1.0
    for _ in range(6):
        queue.push(make_job("teamA"))
        queue.push(make_job("other"))
        queue.push(make_job("teamX"))
    started = dispatch(queue, 7)
    counts = {s: [j.spec.share_identifier for j in started].count(s) for s in ("teamA", "other", "teamX")}
    # Weights 0.5 : 1 : 2 share a burst 4 : 2 : 1.
    assert counts == {"teamA": 4, "other": 2, "teamX": 1}


def test_a_burst_in_one_cycle_is_split_by_weight() -> None:
    queue, _ = make_queue({"A": 1, "B": 3})
    for _ in range(20):
        queue.push(make_job("A"))
        queue.push(make_job("B"))
    started = dispatch(queue, 12)
    assert [j.spec.share_identifier for j in started].count("A") == 9


def test_set_policy_changes_weights_for_the_next_decision_and_keeps_usage() -> None:
    queue, clock = make_queue({"A": 1, "B": 3})
    queue.push(make_job("A"))
    queue.push(make_job("B"))
    a, b = dispatch(queue, 2)
    clock.advance(30_000)
    queue.stopped(a)
    queue.stopped(b)
    queue.push(next_a := make_job("A"))
    queue.push(next_b := make_job("B"))
    assert queue.peek() is next_a
    before = queue.share_usage()
    queue.set_policy(policy({"A": 3, "B": 1}))
    assert queue.peek() is next_b
    assert queue.share_usage() == before


def test_set_policy_changes_the_decay_from_then_on() -> None:
    queue, clock = make_queue(decay=600)
    queue.push(job := make_job("A"))
    dispatch(queue, 1)
    clock.advance(30_000)
    queue.stopped(job)
    used = queue.share_usage()["A"]
    queue.set_policy(policy(decay=60))
    clock.advance(60_000)
    assert queue.share_usage()["A"] == pytest.approx(used * math.exp(-1))


# --- usage and decay ------------------------------------------------------------------


def test_usage_is_decayed_vcpu_seconds() -> None:
    queue, clock = make_queue(decay=600)
    queue.push(job := make_job("A", vcpus=2))
    dispatch(queue, 1)
    # Charged up front for the expected run time (no attempt has ended yet: the default).
    assert queue.share_usage()["A"] == pytest.approx(2 * DEFAULT_RUNTIME_SECONDS)
    clock.advance(100_000)
    queue.stopped(job)
    # The up-front 60 s counted from dispatch, the 40 s beyond it as they were used.
    expected = 2 * 60 * math.exp(-100 / 600) + 2 * 600 * (1 - math.exp(-40 / 600))
    assert queue.share_usage()["A"] == pytest.approx(expected)
    clock.advance(600_000)
    assert queue.share_usage()["A"] == pytest.approx(expected * math.exp(-1))


def test_a_job_ending_early_gives_back_the_unused_charge() -> None:
    queue, clock = make_queue(decay=600)
    queue.push(job := make_job("A", vcpus=2))
    dispatch(queue, 1)
    clock.advance(15_000)
    queue.stopped(job)
    assert queue.share_usage()["A"] == pytest.approx(2 * 15 * math.exp(-15 / 600))


def test_steady_use_settles_at_vcpus_times_decay() -> None:
    queue, clock = make_queue(decay=300)
    sim = Simulation(queue, clock, 4, lambda _job: 45)
    sim.submit("A", 4 * 100)
    sim.run_until(T0 + 3000 * 1000)
    assert queue.share_usage()["A"] == pytest.approx(4 * 300, rel=0.05)
    assert queue.running_vcpus() == {"A": 4}


def test_zero_decay_means_a_600_second_time_constant() -> None:
    queue, _ = make_queue(decay=0)
    assert queue.decay_seconds == 600


def test_idle_shares_are_forgotten_once_decayed() -> None:
    queue, clock = make_queue(decay=60)
    queue.push(job := make_job("A"))
    dispatch(queue, 1)
    clock.advance(10_000)
    queue.stopped(job)
    assert "A" in queue.share_usage()
    clock.advance(3_600_000)
    assert queue.share_usage() == {}


# --- convergence ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "capacity", "duration"),
    [
        ({"A": 1, "B": 3}, 10, lambda _job: 60.0),
        ({"A": 1, "B": 3}, 7, lambda _job: 60.0),
        ({"A": 1, "B": 3}, 10, lambda job: 30.0 + int(job.id[-6:]) % 61),
        ({"A": 1, "B": 1}, 10, lambda _job: 60.0),
        ({"A": 1, "B": 1}, 7, lambda job: 30.0 + int(job.id[-6:]) % 61),
    ],
    ids=["1:3-10cpu", "1:3-7cpu", "1:3-mixed", "1:1-10cpu", "1:1-mixed"],
)
def test_long_run_split_follows_inverse_weights(
    weights: dict[str, float], capacity: int, duration: Callable[[Job], float]
) -> None:
    used = contended_ratio(weights, capacity=capacity, duration=duration, seconds=30 * 600)
    expected = weights["B"] / weights["A"]
    assert used["A"] / used["B"] == pytest.approx(expected, rel=0.10)
    # All capacity in use the whole time.
    assert sum(used.values()) == pytest.approx(capacity * 30 * 600, rel=0.01)


def test_new_share_is_served_promptly_after_a_long_history_of_another() -> None:
    queue, clock = make_queue({"A": 1, "B": 1})
    sim = Simulation(queue, clock, 8, lambda _job: 60)
    sim.submit("A", 8 * 1000)
    sim.run_until(T0 + 12_030_000)  # A alone for 20 τ
    arrival = clock.now_ms()
    sim.submit("B", 8 * 1000)
    sim.run_until(T0 + 12_060_000)
    # Every vCPU freed after B arrived went to B.
    assert sim.first_start("B", arrival) == T0 + 12_060_000
    assert [s for s, _, start, _ in sim.runs if start >= arrival] == ["B"] * 8
    # Within a few τ of decay, A's history no longer counts: the split is even.
    sim.run_until(arrival + 25 * 600_000)
    used = sim.vcpu_seconds(arrival + 5 * 600_000, arrival + 25 * 600_000)
    assert used["A"] / used["B"] == pytest.approx(1.0, rel=0.10)


def test_old_usage_decays_away() -> None:
    queue, clock = make_queue({"A": 1, "B": 1})
    sim = Simulation(queue, clock, 8, lambda _job: 60)
    sim.submit("A", 8 * 200)  # 200 rounds of 60 s: A busy for 20 τ
    sim.run_until(T0 + 12_000_000)
    peak = queue.share_usage()["A"]
    assert peak == pytest.approx(8 * 600, rel=0.1)
    sim.run_until(T0 + 18_000_000)  # idle for 10 τ
    assert queue.share_usage()["A"] < peak * 1e-4
    start = clock.now_ms()
    sim.submit("A", 8 * 1000)
    sim.submit("B", 8 * 1000)
    sim.run_until(start + 10 * 600_000)
    used = sim.vcpu_seconds(start, start + 10 * 600_000)
    assert used["A"] / used["B"] == pytest.approx(1.0, rel=0.05)


# --- computeReservation ---------------------------------------------------------------


def test_reserved_vcpus_shrink_with_each_active_share() -> None:
    queue, _ = make_queue(reservation=50)
    queue.push(make_job("A"))
    assert queue.active_shares() == 1
    assert queue.reserved_vcpus(16) == 8
    queue.push(make_job("B"))
    assert queue.reserved_vcpus(16) == 4
    queue.push(make_job("C"))
    assert queue.reserved_vcpus(16) == 2
    quarter, _ = make_queue(reservation=25)
    quarter.push(make_job("A"))
    quarter.push(make_job("B"))
    assert quarter.reserved_vcpus(100) == pytest.approx(6.25)
    none, _ = make_queue(reservation=0)
    none.push(make_job("A"))
    assert none.reserved_vcpus(16) == 0


def test_a_share_is_active_while_it_has_runnable_or_running_jobs() -> None:
    queue, _ = make_queue(reservation=50)
    queue.push(job := make_job("A"))
    assert queue.is_active("A") and not queue.is_using("A")
    dispatch(queue, 1)
    assert len(queue) == 0
    assert queue.is_active("A") and queue.is_using("A")
    queue.stopped(job)
    assert not queue.is_active("A") and not queue.is_using("A")
    assert queue.active_shares() == 0


def test_reservation_holds_back_shares_already_running_but_not_new_ones() -> None:
    queue, _ = make_queue(reservation=50)
    for _ in range(8):
        queue.push(make_job("A", vcpus=2))
    first = queue.peek()
    assert first is not None
    # Nothing of A runs yet: its first job may dip into the reserve, even take everything.
    assert queue.admits(first, free_vcpus=2, max_vcpus=16)
    dispatch(queue, 1)
    head = queue.peek()
    assert head is not None
    # One active share: 8 of 16 vCPUs are reserved.
    assert queue.admits(head, free_vcpus=10, max_vcpus=16)
    assert not queue.admits(head, free_vcpus=9, max_vcpus=16)
    assert queue.reservation_reason(head, 16).startswith("CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY")
    # B arrives: two active shares, 4 reserved; B runs nothing yet, so it may use the reserve.
    queue.push(newcomer := make_job("B", vcpus=2))
    assert queue.reserved_vcpus(16) == 4
    assert queue.peek_for_reserve() is newcomer
    assert queue.admits(newcomer, free_vcpus=2, max_vcpus=16)
    queue.discard(newcomer)
    queue.started(newcomer)
    assert queue.peek_for_reserve() is None
    queue.push(second := make_job("B", vcpus=2))
    assert not queue.admits(second, free_vcpus=5, max_vcpus=16)
    assert queue.admits(second, free_vcpus=6, max_vcpus=16)


def test_no_reservation_admits_everything() -> None:
    queue, _ = make_queue()
    queue.push(make_job("A"))
    dispatch(queue, 1)
    queue.push(job := make_job("A"))
    assert queue.admits(job, free_vcpus=1, max_vcpus=16)


# --- cost -----------------------------------------------------------------------------


def churn(queue: FairshareQueue, clock: FakeClock, shares: list[str], jobs: int) -> Iterator[int]:
    """Run ``jobs`` jobs through the queue, 4 at a time, yielding the footprint after each one ends."""
    rng = random.Random(7)
    running: list[Job] = []
    for i in range(jobs):
        queue.push(make_job(shares[i % len(shares)], since=clock.now_ms()))
        if len(queue) > 4:
            running.extend(dispatch(queue, 1))
        if len(running) >= 4:
            clock.advance(rng.randrange(1_000, 90_000))
            queue.stopped(running.pop(rng.randrange(len(running))))
            yield queue.footprint()


def test_structures_do_not_grow_with_finished_jobs() -> None:
    queue, clock = make_queue({"A": 1, "B": 2})
    sizes = list(churn(queue, clock, ["A", "B", "C"], 20_000))
    # Bounded by the jobs in the queue and running (≈ 9 here), not by the 20,000 that went through.
    assert max(sizes) < 80
    assert max(sizes[-1000:]) <= max(sizes[:1000]) + 10


def test_discarded_jobs_do_not_pile_up() -> None:
    queue, _ = make_queue()
    jobs = [make_job("A", since=T0 + i) for i in range(10_000)]
    for job in jobs:
        queue.push(job)
    for job in jobs[1:-10]:
        queue.discard(job)
    assert len(queue) == 11
    assert queue.footprint() < 200
    assert drain(queue) == [jobs[0], *jobs[-10:]]


def test_a_decision_looks_only_at_shares_with_runnable_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    queue, clock = make_queue()
    # 200 shares with history and nothing runnable.
    for name in range(200):
        queue.push(job := make_job(f"idle{name}"))
        dispatch(queue, 1)
        clock.advance(1000)
        queue.stopped(job)
    assert len(queue.share_usage()) == 200
    queue.push(make_job("A"))
    queue.push(make_job("B"))
    ranked: list[str] = []
    original = FairshareQueue._rank

    def counting(self: FairshareQueue, share: Any, job: Job, now: int) -> float:
        ranked.append(job.spec.share_identifier or "")
        return original(self, share, job, now)

    monkeypatch.setattr(FairshareQueue, "_rank", counting)
    clock.advance(1)
    queue.peek()
    assert sorted(ranked) == ["A", "B"]
