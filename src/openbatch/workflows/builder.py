"""A thin Python builder for workflow documents (the same format as the YAML/JSON files).

flow = Workflow("nightly", parameters={"day": "2026-01-02"}, defaults={"memory": 256})
extract = flow.step("extract", command=["sh", "-c", "echo Ref::day"])
shards = flow.step("shard", command=["./work.sh"], depends_on=[extract], map_items=["a", "b"])
flow.step("alert", command=["./page.sh"], when="on_failure")
flow.validate()                 # raises WorkflowValidationError listing every problem
text = flow.to_yaml()           # for `openbatch workflow run` or the native API's "document"
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from openbatch.workflows import spec as wf


@dataclass(frozen=True, slots=True)
class StepRef:
    """A step of a :class:`Workflow`, usable in ``depends_on`` and for output references."""

    name: str

    def output(self, key: str | None = None) -> str:
        """``Ref::steps.<name>.outputs[.key]`` for a later step's command or environment."""
        return f"Ref::steps.{self.name}.outputs" + (f".{key}" if key else "")


@dataclass(slots=True)
class Workflow:
    name: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    _steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def step(
        self,
        name: str,
        *,
        command: Sequence[str] | None = None,
        job_definition: str | None = None,
        depends_on: Sequence[StepRef | str] = (),
        when: str | None = None,
        map_items: Sequence[Any] | None = None,
        map_from: StepRef | str | None = None,
        **members: Any,
    ) -> StepRef:
        """Add a step; ``members`` are the file format's other members (vcpus, memory, environment, …)."""
        body: dict[str, Any] = dict(members)
        if command is not None:
            body["command"] = list(command)
        if job_definition is not None:
            body["jobDefinition"] = job_definition
        if depends_on:
            body["dependsOn"] = [d.name if isinstance(d, StepRef) else d for d in depends_on]
        if when is not None:
            body["when"] = when
        if map_items is not None:
            body["map"] = {"items": list(map_items)}
        elif map_from is not None:
            body["map"] = {"fromStep": map_from.name if isinstance(map_from, StepRef) else map_from}
        self._steps[name] = body
        return StepRef(name)

    def document(self) -> dict[str, Any]:
        result: dict[str, Any] = {"name": self.name}
        if self.parameters:
            result["parameters"] = dict(self.parameters)
        if self.defaults:
            result["defaults"] = dict(self.defaults)
        result["steps"] = {name: dict(body) for name, body in self._steps.items()}
        return result

    def validate(self, params: Mapping[str, str] | None = None) -> wf.WorkflowSpec:
        return wf.validate(self.document(), params=params)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.document(), sort_keys=False)

    def to_json(self) -> str:
        return json.dumps(self.document(), indent=2)
