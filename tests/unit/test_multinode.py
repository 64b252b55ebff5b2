"""Node ranges of multi-node parallel jobs: parsing, layout rules, numNodes overrides and each node's container."""

from __future__ import annotations

from typing import Any

import pytest

from openbatch.domain import multinode as mn
from openbatch.domain.errors import InvalidTransition, ValidationError
from openbatch.domain.jobspec import Resources
from openbatch.domain.states import JobStatus
from tests.unit.builders import make_job


def _container(command: str, **extra: Any) -> dict[str, Any]:
    return {"image": "busybox", "command": [command], **extra}


def _properties(num_nodes: int, main_node: int, *targets: str) -> dict[str, Any]:
    return {
        "numNodes": num_nodes,
        "mainNode": main_node,
        "nodeRangeProperties": [{"targetNodes": t, "container": _container(t)} for t in targets],
    }


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [("0:3", 0, 3), (":3", 0, 3), ("2:", 2, None), (":", 0, None), ("4:4", 4, 4), ("10:12", 10, 12)],
)
def test_ranges_are_read_as_documented(text: str, start: int, end: int | None) -> None:
    node_range = mn.parse_range("targetNodes", text)
    assert (node_range.start, node_range.end) == (start, end)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3", "not a node range"),
        ("a:b", "not a node range"),
        ("-1:2", "not a node range"),
        ("0:1:2", "not a node range"),
        (" 0:1", "not a node range"),
        (3, "not a node range"),
        ("3:1", "ends before it starts"),
    ],
)
def test_malformed_ranges_are_refused(text: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        mn.parse_range("targetNodes", text)


def test_an_open_range_ends_at_the_last_node() -> None:
    node_range = mn.parse_range("t", "2:")
    assert node_range.last(5) == 4
    assert node_range.width(5) == 3
    assert node_range.covers(4, 5) and not node_range.covers(1, 5)


@pytest.mark.parametrize(
    "targets",
    [(":",), ("0:0", "1:"), ("0:9", "4:5"), ("0:9", "4:5", "5:5"), ("0:4", "5:9"), (":", "0:0", "9:")],
)
def test_layouts_that_cover_every_node_once_or_nested_are_accepted(targets: tuple[str, ...]) -> None:
    checked = mn.check_node_properties(_properties(10, 0, *targets))
    assert [g["targetNodes"] for g in checked["nodeRangeProperties"]] == list(targets)
    # AWS's container defaults are filled in, the given members kept
    assert checked["nodeRangeProperties"][0]["container"]["environment"] == []
    assert checked["nodeRangeProperties"][0]["container"]["command"] == [targets[0]]


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        (_properties(10, 0, "0:4", "6:9"), r"no range covers node\(s\) 5"),
        (_properties(10, 0, "0:5", "3:9"), "overlap without one containing the other"),
        (_properties(10, 0, "0:9", ":9"), "name the same nodes"),
        (_properties(10, 0, ":", "0:"), "name the same nodes"),
        (_properties(10, 0, "0:10"), "past the last one"),
        (_properties(10, 0, "10:"), "past the last one"),
        (_properties(10, 10, ":"), "mainNode 10 is not one of the job's nodes"),
        (_properties(0, 0, ":"), "numNodes must be between 1 and 1000"),
        (_properties(1001, 0, ":"), "numNodes must be between 1 and 1000"),
        ({**_properties(3, 0, ":"), "numNodes": "3"}, "whole number"),
        ({**_properties(3, 0, ":"), "mainNode": True}, "whole number"),
        (_properties(10, 0, *(f"{i}:{i}" for i in range(6))), "1 to 5 node ranges"),
        ({**_properties(3, 0, ":"), "nodeRangeProperties": []}, "1 to 5 node ranges"),
        ({"numNodes": 3, "nodeRangeProperties": []}, "mainNode is required"),
        ({"numNodes": 3, "mainNode": 0, "nodeRangeProperties": [{"targetNodes": ":"}]}, "container is required"),
        (
            {"numNodes": 3, "mainNode": 0, "nodeRangeProperties": [{"targetNodes": ":", "container": {"command": []}}]},
            "image is required",
        ),
        (
            {
                "numNodes": 3,
                "mainNode": 0,
                "nodeRangeProperties": [{"targetNodes": ":", "container": _container("x"), "ecsProperties": {}}],
            },
            "ecsProperties is not supported",
        ),
        (
            {
                "numNodes": 3,
                "mainNode": 0,
                "nodeRangeProperties": [
                    {
                        "targetNodes": ":",
                        "container": _container("x", environment=[{"name": "AWS_BATCH_JOB_ID", "value": "x"}]),
                    }
                ],
            },
            "AWS_BATCH",
        ),
        (
            {
                "numNodes": 3,
                "mainNode": 0,
                "nodeRangeProperties": [
                    {
                        "targetNodes": ":",
                        "container": _container("x", resourceRequirements=[{"type": "VCPU", "value": "0"}]),
                    }
                ],
            },
            "VCPU",
        ),
    ],
)
def test_bad_layouts_are_refused(properties: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        mn.check_node_properties(properties)


def test_num_nodes_override_follows_the_three_documented_rules() -> None:
    base = mn.check_node_properties(_properties(3, 1, "0:0", "1:"))
    assert mn.with_num_nodes(base, None)["numNodes"] == 3
    assert mn.with_num_nodes(base, 8)["numNodes"] == 8
    assert mn.with_num_nodes(base, 2)["numNodes"] == 2
    with pytest.raises(ValidationError, match="greater than the lower bound"):
        mn.with_num_nodes(mn.check_node_properties(_properties(4, 0, "0:2", "3:")), 3)
    with pytest.raises(ValidationError, match="greater than the job definition's mainNode 2"):
        mn.with_num_nodes(mn.check_node_properties(_properties(3, 2, "0:")), 2)
    with pytest.raises(ValidationError, match="open upper bound"):
        mn.with_num_nodes(mn.check_node_properties(_properties(3, 0, "0:0", "1:2")), 4)
    # A closed range past the new count would name nodes the job no longer has
    with pytest.raises(ValidationError, match="past the last one"):
        mn.with_num_nodes(mn.check_node_properties(_properties(5, 0, "0:0", "1:", "1:3")), 3)


def test_the_innermost_range_gives_each_node_its_container() -> None:
    properties = mn.check_node_properties(_properties(10, 0, "0:9", "4:5", "5:5"))
    commands = [c["command"][0] for c in mn.node_containers(properties, None)]
    assert commands == ["0:9"] * 4 + ["4:5", "5:5"] + ["0:9"] * 4


def test_node_property_overrides_apply_in_order_to_their_nodes() -> None:
    properties = mn.check_node_properties(
        {
            "numNodes": 4,
            "mainNode": 0,
            "nodeRangeProperties": [
                {"targetNodes": ":", "container": _container("x", environment=[{"name": "A", "value": "1"}])}
            ],
        }
    )
    overrides = [
        {"targetNodes": "1:", "containerOverrides": {"environment": [{"name": "B", "value": "2"}]}},
        {
            "targetNodes": "3:3",
            "containerOverrides": {"command": ["y"], "resourceRequirements": [{"type": "VCPU", "value": "2"}]},
        },
    ]
    containers = mn.node_containers(properties, overrides)
    assert [c["command"] for c in containers] == [["x"], ["x"], ["x"], ["y"]]
    assert containers[0]["environment"] == [{"name": "A", "value": "1"}]
    assert containers[3]["environment"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert mn.total_resources(containers) == Resources(vcpus=5.0, memory_mib=None, gpus=0)
    # The definition's own containers are left as they were
    assert properties["nodeRangeProperties"][0]["container"]["environment"] == [{"name": "A", "value": "1"}]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"targetNodes": "2:4"}, "past the last one"),
        ({"targetNodes": "x"}, "not a node range"),
        ({"targetNodes": ":", "ecsPropertiesOverride": {}}, "ecsPropertiesOverride is not supported"),
        (
            {"targetNodes": ":", "containerOverrides": {"environment": [{"name": "AWS_BATCH_CE_NAME", "value": "x"}]}},
            "AWS_BATCH",
        ),
    ],
)
def test_bad_node_property_overrides_are_refused(override: dict[str, Any], message: str) -> None:
    properties = mn.check_node_properties(_properties(3, 0, ":"))
    with pytest.raises(ValidationError, match=message):
        mn.node_containers(properties, [override])


def test_total_resources_add_up_every_node() -> None:
    containers = [
        _container("a", resourceRequirements=[{"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "100"}]),
        _container("b", resourceRequirements=[{"type": "GPU", "value": "1"}]),
        _container("c", vcpus=3, memory=50),
    ]
    assert mn.total_resources(containers) == Resources(vcpus=6.0, memory_mib=150, gpus=1)


def test_only_a_finished_node_runs_again() -> None:
    node = make_job().status(JobStatus.FAILED).build()
    node.status_reason = "Essential container in task exited"
    node.stopped_at = 5
    assert mn.rerun_node(node, 10) is JobStatus.FAILED
    assert node.status is JobStatus.RUNNABLE
    assert node.status_reason is None
    assert node.stopped_at is None
    assert node.runnable_since == 10
    with pytest.raises(InvalidTransition):
        mn.rerun_node(node, 11)


def test_node_job_ids_are_addressed_with_a_hash() -> None:
    assert mn.node_job_id("abc", 3) == "abc#3"
