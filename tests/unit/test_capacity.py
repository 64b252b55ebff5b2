"""Resource accounting: why a job cannot be placed (§4.4) and whole-GPU acquire/release."""

from __future__ import annotations

from typing import Any

import pytest

from openbatch.domain.jobspec import Resources
from openbatch.domain.resources import ComputeEnvironment
from openbatch.scheduler.capacity import INSUFFICIENT, JOB_RESOURCE, MAX_RESOURCE, Capacity, host_memory_mib
from tests.unit.builders import make_ce

HOST_MEMORY = 16_384


def _capacity(gpus: int = 2, memory: int = HOST_MEMORY) -> Capacity:
    return Capacity(memory_mib=memory, gpus=list(range(gpus)))


def _need(vcpus: float = 1, memory: int | None = 512, gpus: int = 0) -> Resources:
    return Resources(vcpus=vcpus, memory_mib=memory, gpus=gpus)


def test_reason_codes_are_the_aws_ones() -> None:
    assert MAX_RESOURCE == "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE"
    assert JOB_RESOURCE == "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"
    assert INSUFFICIENT == "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"


@pytest.mark.parametrize(
    "need",
    [_need(), _need(vcpus=4), _need(memory=HOST_MEMORY), _need(memory=None), _need(gpus=2), _need(vcpus=0.5)],
    ids=["small", "all-vcpus", "all-memory", "no-memory", "all-gpus", "half-vcpu"],
)
def test_a_job_that_fits_is_not_refused(need: Resources) -> None:
    assert _capacity().refusal(need, make_ce(max_vcpus=4)) is None


# (need, compute environment, code, permanent, words in the reason)
PERMANENT: list[tuple[str, Resources, ComputeEnvironment, str, tuple[str, ...]]] = [
    ("vcpus-over-max", _need(vcpus=8), make_ce("ce-a", max_vcpus=4), MAX_RESOURCE, ("8 vCPUs", "ce-a", "maxvCpus 4")),
    ("fraction-over-max", _need(vcpus=4.5), make_ce(max_vcpus=4), MAX_RESOURCE, ("4.5 vCPUs",)),
    (
        "max-beats-disabled",
        _need(vcpus=8),
        make_ce(max_vcpus=4, enabled=False),
        MAX_RESOURCE,
        ("maxvCpus",),
    ),
    ("memory-over-host", _need(memory=HOST_MEMORY + 1), make_ce(), JOB_RESOURCE, (f"{HOST_MEMORY} MiB",)),
    ("gpus-over-host", _need(gpus=3), make_ce(), JOB_RESOURCE, ("3 GPUs", "host has 2 GPUs")),
]


@pytest.mark.parametrize(("case", "need", "ce", "code", "words"), PERMANENT, ids=[c[0] for c in PERMANENT])
def test_permanent_refusals(
    case: str, need: Resources, ce: ComputeEnvironment, code: str, words: tuple[str, ...]
) -> None:
    refusal = _capacity().refusal(need, ce)
    assert refusal is not None
    assert refusal.permanent
    assert refusal.reason.startswith(f"{code} - ")
    for word in words:
        assert word in refusal.reason


def test_gpu_job_on_a_host_without_gpus() -> None:
    refusal = _capacity(gpus=0).refusal(_need(gpus=1), make_ce())
    assert refusal is not None and refusal.permanent
    assert refusal.reason == f"{JOB_RESOURCE} - the job needs 1 GPUs but the host has no GPUs"


def test_disabled_compute_environment_is_a_capacity_wait() -> None:
    refusal = _capacity().refusal(_need(), make_ce("ce-off", enabled=False))
    assert refusal is not None
    assert not refusal.permanent
    assert refusal.reason == f"{INSUFFICIENT} - compute environment ce-off is DISABLED"


def _busy(capacity: Capacity, ce: ComputeEnvironment, need: Resources, **held: Any) -> tuple[str, bool] | None:
    capacity.acquire(Resources(**held), ce.name)
    refusal = capacity.refusal(need, ce)
    return None if refusal is None else (refusal.reason, refusal.permanent)


@pytest.mark.parametrize(
    ("held", "need", "words"),
    [
        ({"vcpus": 3.0}, _need(vcpus=2), ("needs 2 vCPUs", "1 of 4 free")),
        ({"vcpus": 4.0}, _need(vcpus=1), ("0 of 4 free",)),
        ({"vcpus": 1.0, "memory_mib": HOST_MEMORY - 100}, _need(memory=512), ("512 MiB", "100 MiB are free")),
        ({"vcpus": 1.0, "gpus": 1}, _need(gpus=2), ("needs 2 GPUs", "1 are free")),
    ],
    ids=["vcpus", "vcpus-full", "memory", "gpus"],
)
def test_busy_refusals_are_temporary(held: dict[str, Any], need: Resources, words: tuple[str, ...]) -> None:
    result = _busy(_capacity(), make_ce(max_vcpus=4), need, **held)
    assert result is not None
    reason, permanent = result
    assert not permanent
    assert reason.startswith(f"{INSUFFICIENT} - ")
    for word in words:
        assert word in reason


def test_vcpus_are_budgeted_per_compute_environment() -> None:
    capacity = _capacity()
    a, b = make_ce("ce-a", max_vcpus=2), make_ce("ce-b", max_vcpus=2)
    capacity.acquire(_need(vcpus=2, memory=None), "ce-a")
    assert capacity.refusal(_need(vcpus=1, memory=None), a) is not None
    assert capacity.refusal(_need(vcpus=1, memory=None), b) is None


def test_memory_is_shared_by_every_compute_environment() -> None:
    capacity = _capacity(memory=1024)
    capacity.acquire(_need(memory=1024), "ce-a")
    refusal = capacity.refusal(_need(memory=1), make_ce("ce-b"))
    assert refusal is not None and not refusal.permanent


def test_fractional_vcpus_add_up() -> None:
    capacity = _capacity()
    ce = make_ce(max_vcpus=1)
    capacity.acquire(_need(vcpus=0.5), ce.name)
    assert capacity.refusal(_need(vcpus=0.5), ce) is None
    capacity.acquire(_need(vcpus=0.5), ce.name)
    assert capacity.refusal(_need(vcpus=0.5), ce) is not None


def test_acquire_and_release_restore_the_books() -> None:
    capacity = _capacity(gpus=4)
    need = _need(vcpus=2, memory=2048, gpus=2)
    taken = capacity.acquire(need, "ce-a")
    assert capacity.vcpus_used == {"ce-a": 2.0}
    assert capacity.memory_used == 2048
    assert capacity.free_gpus == [2, 3]
    capacity.release(need, "ce-a", taken)
    assert capacity.vcpus_used == {"ce-a": 0.0}
    assert capacity.memory_used == 0
    assert capacity.free_gpus == [0, 1, 2, 3]


def test_jobs_without_memory_do_not_touch_the_memory_books() -> None:
    capacity = _capacity()
    taken = capacity.acquire(_need(memory=None), "ce-a")
    assert capacity.memory_used == 0
    capacity.release(_need(memory=None), "ce-a", taken)
    assert capacity.memory_used == 0


def test_whole_gpus_are_never_shared() -> None:
    capacity = _capacity(gpus=3)
    ce = make_ce(max_vcpus=16)
    one = _need(gpus=1)
    first = capacity.acquire(one, ce.name)
    second = capacity.acquire(_need(gpus=2), ce.name)
    assert first == (0,)
    assert second == (1, 2)
    assert set(first).isdisjoint(second)
    assert capacity.refusal(one, ce) is not None, "no GPU is left, however small the job"
    assert capacity.refusal(_need(gpus=0), ce) is None, "CPU-only jobs still fit"

    capacity.release(_need(gpus=2), ce.name, second)
    assert capacity.free_gpus == [1, 2]
    third = capacity.acquire(one, ce.name)
    assert third == (1,)
    assert third[0] not in first


def test_released_gpus_are_handed_out_lowest_first() -> None:
    capacity = _capacity(gpus=4)
    held = [capacity.acquire(_need(gpus=1), "ce") for _ in range(4)]
    assert held == [(0,), (1,), (2,), (3,)]
    capacity.release(_need(gpus=1), "ce", held[2])
    capacity.release(_need(gpus=1), "ce", held[0])
    assert capacity.acquire(_need(gpus=2), "ce") == (0, 2)
    assert capacity.free_gpus == []


def test_cpu_only_job_gets_no_gpus() -> None:
    capacity = _capacity()
    assert capacity.acquire(_need(), "ce") == ()
    assert capacity.free_gpus == [0, 1]


def test_host_memory_is_positive() -> None:
    assert host_memory_mib() > 0


# --- compute environment views ------------------------------------------------------------


def _ce_body(**members: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "computeEnvironmentName": "ce",
        "computeEnvironmentArn": "arn:aws:batch:us-east-1:123456789012:compute-environment/ce",
    }
    body.update(members)
    return body


@pytest.mark.parametrize(
    ("body", "enabled", "max_vcpus", "managed"),
    [
        (_ce_body(type="MANAGED", computeResources={"maxvCpus": 16}), True, 16.0, True),
        (_ce_body(type="MANAGED", state="DISABLED", computeResources={"maxvCpus": 4}), False, 4.0, True),
        (_ce_body(type="MANAGED"), True, 0.0, True),
        (_ce_body(type="UNMANAGED"), True, 8.0, False),
        (_ce_body(type="UNMANAGED", unmanagedvCpus=2), True, 2.0, False),
    ],
    ids=["managed", "disabled", "managed-no-resources", "unmanaged-host", "unmanaged-narrowed"],
)
def test_compute_environment_from_body(body: dict[str, Any], enabled: bool, max_vcpus: float, managed: bool) -> None:
    ce = ComputeEnvironment.from_body(body, host_vcpus=8)
    assert (ce.name, ce.enabled, ce.max_vcpus, ce.managed) == ("ce", enabled, max_vcpus, managed)
