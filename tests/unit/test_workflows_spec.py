"""The workflow file format: parsing YAML and JSON, and validation that lists every problem with its place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openbatch.domain.errors import ValidationError
from openbatch.workflows.builder import Workflow
from openbatch.workflows.service import substitute
from openbatch.workflows.spec import WorkflowValidationError, parse, parse_params

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class FakeResolver:
    """Answers as a Batch endpoint with one job definition and one job queue would."""

    def job_definition_exists(self, reference: str) -> bool:
        return reference in ("known", "known:1")

    def job_queue_exists(self, name: str) -> bool:
        return name == "default"


def problems_of(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(WorkflowValidationError) as info:
        parse(text, **kwargs)  # type: ignore[arg-type]
    return info.value.problems


def test_the_six_step_graph_parses_in_topological_order() -> None:
    spec = parse((EXAMPLES / "seed-dag.yaml").read_text(), params={"day": "2026-03-01"})
    order = list(spec.steps)
    assert sorted(order) == list("ABCDEF")
    for step in spec.steps.values():
        assert all(order.index(dep) < order.index(step.name) for dep in step.depends_on)
    assert spec.parameters == {"day": "2026-03-01"}
    assert spec.steps["A"].vcpus == 1 and spec.steps["A"].memory == 128
    assert spec.steps["A"].retry == {"attempts": 1}
    assert spec.upstream("F") == {"A", "B", "C", "D", "E"}


def test_json_with_the_same_structure_is_accepted() -> None:
    document = {"name": "j", "steps": {"a": {"command": ["true"]}, "b": {"command": ["true"], "dependsOn": ["a"]}}}
    spec = parse(json.dumps(document, indent=2))
    assert list(spec.steps) == ["a", "b"]


def test_every_problem_is_listed_with_its_location() -> None:
    text = """name: "bad name"
steps:
  A: {command: [sh, -c, "echo Ref::nope"], dependsOn: [C]}
  B: {command: x, dependsOn: [Z], when: sometimes}
  C: {command: [a], dependsOn: [A], vcpus: -1}
  D: {jobDefinition: missing, command: [x], map: {fromStep: B}}
  E: {command: [echo, "Ref::steps.F.outputs.x"], foo: 1, queue: other}
  F: {command: [echo], dependsOn: [F]}
"""
    found = problems_of(text, params={"zz": "1"}, resolver=FakeResolver())
    expected = [
        "name (line 1): required",
        "--param zz: unknown parameter 'zz'",
        "steps.B.command (line 4): must be a non-empty list",
        "steps.B.when (line 4): must be one of success, on_failure, always",
        "steps.C.vcpus (line 5): must be a number",
        "steps.D (line 6): needs exactly one of command or jobDefinition",
        "steps.D.jobDefinition (line 6): job definition 'missing' does not exist",
        "steps.E.foo (line 7): unknown member",
        "steps.E.queue (line 7): job queue 'other' does not exist",
        "steps.F.dependsOn[0] (line 8): a step cannot depend on itself",
        "steps.B.dependsOn[0] (line 4): unknown step 'Z'",
        "steps.A.dependsOn (line 3): dependency cycle: A → C → A",
        "steps.D.map.fromStep (line 6): step 'B' is not upstream of 'D'",
        "steps.E.command (line 7): Ref::steps.F.outputs reads step 'F', which is not upstream",
        "steps.A.command[2] (line 3): Ref::nope names no parameter",
    ]
    for fragment in expected:
        assert any(p.startswith(fragment) for p in found), (fragment, found)
    assert len(found) == len(expected), found


def test_syntax_errors_name_the_line() -> None:
    assert problems_of("name: x\nsteps:\n  A: {command: [true]\n")[0].startswith("workflow: not valid YAML (line 4)")
    assert "not valid JSON (line 2)" in problems_of('{"name": "x",\n "steps": }')[0]
    assert "must be a mapping" in problems_of("- a\n- b\n")[0]


def test_structural_mistakes() -> None:
    found = problems_of(
        """name: s
parameters: [a]
defaults: {cpu: 2}
steps:
  m: {command: [x], map: {items: []}}
  n: {command: [x], map: {items: [1], fromStep: m}}
  r: {command: [x], retry: {attempts: 11}, timeout: 0, environment: {AWS_BATCH_X: y, "1bad": z}}
  d: {command: [x], dependsOn: [m, m]}
"""
    )
    for fragment in (
        "parameters (line 2): must be a mapping",
        "defaults.cpu (line 3): unknown member",
        "steps.m.map.items (line 5): must be a list of 1 to 10,000 items",
        "steps.n.map (line 6): needs exactly one of items",
        "steps.r.retry.attempts (line 7): must be an integer between 1 and 10",
        "steps.r.timeout (line 7): must be an integer",
        "steps.r.environment.AWS_BATCH_X (line 7): names starting with AWS_BATCH_",
        "steps.r.environment.1bad (line 7): invalid variable name",
        "steps.d.dependsOn[1] (line 8): step 'm' is listed twice",
    ):
        assert any(p.startswith(fragment) for p in found), (fragment, found)


def test_a_when_step_without_dependencies_follows_every_other_step() -> None:
    spec = parse(
        """name: h
steps:
  a: {command: ["true"]}
  b: {command: ["true"], dependsOn: [a]}
  alert: {command: ["true"], when: on_failure}
"""
    )
    assert list(spec.steps)[-1] == "alert"
    assert set(spec.steps["alert"].depends_on) == {"a", "b"}
    assert not spec.steps["alert"].is_static and spec.steps["b"].is_static


def test_output_references_make_a_step_wait_for_its_upstream() -> None:
    spec = parse(
        """name: o
steps:
  a: {command: ["true"]}
  b: {command: [echo, "Ref::steps.a.outputs.n"], dependsOn: [a]}
  c: {command: ["true"], dependsOn: [a], map: {fromStep: a}}
"""
    )
    assert spec.steps["b"].output_refs == ("a",)
    assert not spec.steps["b"].is_static and not spec.steps["c"].is_static


def test_params_from_the_command_line() -> None:
    assert parse_params(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(ValidationError, match="key=value"):
        parse_params(["novalue"])


def test_output_and_parameter_references_are_substituted() -> None:
    outputs = {"a": {"n": 42, "cfg": {"x": "y"}, "items": ["p", "q"]}}
    params = {"day": "2026-01-02"}
    assert substitute("Ref::day/Ref::steps.a.outputs.n", params, outputs) == "2026-01-02/42"
    assert substitute("Ref::steps.a.outputs.cfg.x Ref::steps.a.outputs.items.1", {}, outputs) == "y q"
    assert substitute("Ref::steps.a.outputs.cfg", {}, outputs) == '{"x":"y"}'
    # Unknown references stay as they are (AWS's rule for parameters).
    assert substitute("Ref::nope Ref::steps.a.outputs.missing Ref::steps.b.outputs", {}, outputs) == (
        "Ref::nope Ref::steps.a.outputs.missing Ref::steps.b.outputs"
    )


def test_the_python_builder_writes_the_same_format() -> None:
    flow = Workflow("built", parameters={"day": "d"}, defaults={"memory": 64})
    extract = flow.step("extract", command=["sh", "-c", "echo Ref::day"])
    shard = flow.step("shard", command=["echo", extract.output("n")], depends_on=[extract], map_items=["a", "b"])
    flow.step("alert", command=["true"], when="on_failure")
    spec = flow.validate()
    assert list(spec.steps) == ["extract", "shard", "alert"]
    assert spec.steps["shard"].output_refs == ("extract",) and shard.name == "shard"
    assert parse(flow.to_yaml()).document == parse(flow.to_json()).document == flow.document()
    flow.step("broken", command=["true"], depends_on=["nowhere"])
    with pytest.raises(WorkflowValidationError, match="unknown step 'nowhere'"):
        flow.validate()
