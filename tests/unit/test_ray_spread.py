"""How many nodes of a multi-node job fit a Ray cluster at once, one per Ray node (STRICT_SPREAD)."""

from __future__ import annotations

from openbatch.domain.jobspec import Resources
from openbatch.executors.ray.cluster import bundle, spread

MIB = 1024 * 1024
SMALL = {"CPU": 1.0, "memory": 1024.0 * MIB, "small": 1.0}
BIG = {"CPU": 2.0, "memory": 3072.0 * MIB, "big": 1.0}
HEAD = {"CPU": 0.0, "memory": 256.0 * MIB}


def test_a_bundle_asks_what_the_node_asks() -> None:
    assert bundle(Resources(vcpus=2, memory_mib=100, gpus=1), {"big": 0.5}) == {
        "CPU": 2,
        "big": 0.5,
        "memory": 100 * MIB,
        "GPU": 1,
    }
    assert bundle(Resources(vcpus=0.5), {}) == {"CPU": 0.5}


def test_each_bundle_needs_a_node_of_its_own() -> None:
    one = bundle(Resources(vcpus=1, memory_mib=128), {})
    assert spread([one, one], [HEAD, SMALL, BIG]) == 2
    assert spread([one, one, one], [HEAD, SMALL, BIG]) == 2  # the head has no CPUs
    assert spread([], [SMALL]) == 0


def test_bundles_of_different_shapes_are_matched_not_taken_in_order() -> None:
    one = bundle(Resources(vcpus=1), {})
    two = bundle(Resources(vcpus=2), {})
    # Taken in order, the first bundle would take the big node and leave the second none.
    assert spread([one, two], [BIG, SMALL]) == 2
    assert spread([two, two], [BIG, SMALL]) == 1
    assert spread([bundle(Resources(vcpus=1), {"small": 1}), one], [SMALL, BIG]) == 2
    assert (
        spread([bundle(Resources(vcpus=1), {"small": 1}), bundle(Resources(vcpus=1), {"small": 1})], [SMALL, BIG]) == 1
    )
