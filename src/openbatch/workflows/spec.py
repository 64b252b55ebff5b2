"""The workflow file format: parse YAML or JSON, validate everything, report every problem at once.

A workflow is a DAG of steps, each an ordinary Batch job (or an array job for ``map``)::

    name: seed-dag
    parameters: {day: "2026-01-02"}
    defaults: {queue: default, vcpus: 1, memory: 128, retry: {attempts: 1}}
    steps:
      A: {command: [sh, -c, "echo A Ref::day"]}
      B: {command: [sh, -c, "echo B"], dependsOn: [A]}

Validation never stops at the first problem: :func:`parse` collects them all, each with
its location (``steps.B.dependsOn[0]``, plus the line in YAML files), and raises one
:class:`WorkflowValidationError`. Checks that need the server (job definitions, job
queues) go through a :class:`Resolver` so the same code serves the server and the
any-endpoint submitter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import yaml

from openbatch.domain.errors import ValidationError

WHEN_VALUES = ("success", "on_failure", "always")
MAX_MAP_ITEMS = 10_000
MAX_STEPS = 10_000
MAX_OUTPUT_BYTES = 256 * 1024
"""Step outputs are for small values (Step Functions' state limit is 256 KiB as well)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_STEP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_PARAM = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,127}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REF = re.compile(r"Ref::([A-Za-z0-9_.\-]+)")
_STEP_REF = re.compile(r"^steps\.([A-Za-z0-9_-]+)\.outputs(?:\.(.+))?$")
_TOP_KEYS = {"name", "description", "parameters", "defaults", "steps"}
_JOB_KEYS = {"image", "vcpus", "memory", "gpus", "environment", "retry", "timeout", "queue"}
_STEP_KEYS = {"command", "jobDefinition", "parameters", "dependsOn", "when", "map", "tags", *_JOB_KEYS}
_RESERVED_ENV = ("AWS_BATCH_", "OPENBATCH_")


class WorkflowValidationError(ValidationError):
    """Every problem found in a workflow document, each with its location."""

    def __init__(self, problems: list[str]) -> None:
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"The workflow is invalid ({count}): " + "; ".join(problems))
        self.problems = problems


class Resolver(Protocol):
    """What validation asks the Batch endpoint: does this job definition / job queue exist?"""

    def job_definition_exists(self, reference: str) -> bool: ...

    def job_queue_exists(self, name: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class MapSpec:
    items: tuple[Any, ...] | None = None
    from_step: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepSpec:
    name: str
    command: tuple[str, ...] | None
    job_definition: str | None
    image: str
    vcpus: float
    memory: int
    gpus: int
    environment: dict[str, str]
    retry: dict[str, Any] | None
    """The wire ``retryStrategy``."""
    timeout: int | None
    queue: str
    parameters: dict[str, str]
    depends_on: tuple[str, ...]
    when: str
    map: MapSpec | None
    tags: dict[str, str]
    output_refs: tuple[str, ...]
    """Steps whose outputs this step reads (``Ref::steps.S.outputs…``)."""

    @property
    def is_static(self) -> bool:
        """Can be submitted before its upstream steps finish (only ``dependsOn`` ties it to them)."""
        return self.when == "success" and not self.output_refs and (self.map is None or self.map.from_step is None)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowSpec:
    name: str
    parameters: dict[str, str]
    steps: dict[str, StepSpec]
    """In topological order (upstream first)."""
    document: dict[str, Any] = field(repr=False)
    """The document as given (for storage and display)."""

    def upstream(self, step: str) -> set[str]:
        """Every step ``step`` transitively depends on."""
        seen: set[str] = set()
        pending = list(self.steps[step].depends_on)
        while pending:
            name = pending.pop()
            if name not in seen:
                seen.add(name)
                pending.extend(self.steps[name].depends_on)
        return seen

    def downstream(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {name: [] for name in self.steps}
        for step in self.steps.values():
            for dep in step.depends_on:
                result[dep].append(step.name)
        return result


# --- loading -------------------------------------------------------------------------


def load_document(text: str, source: str = "workflow") -> tuple[dict[str, Any], dict[str, int]]:
    """Parse YAML or JSON text into a mapping, with the line of each path (for YAML and JSON alike)."""
    try:
        value = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise WorkflowValidationError([f"{source}: not valid JSON (line {exc.lineno}): {exc.msg}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise WorkflowValidationError([f"{source}: not valid YAML{where}: {problem}"]) from None
    if not isinstance(value, dict):
        raise WorkflowValidationError([f"{source}: the document must be a mapping with name and steps"])
    return value, _line_map(text)


def _line_map(text: str) -> dict[str, int]:
    """``path → line`` from the YAML node tree (JSON parses as YAML too); best effort."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}
    pending: list[tuple[str, yaml.Node]] = [("", root)] if root is not None else []
    while pending and len(lines) < 200_000:
        path, node = pending.pop()
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, child in node.value:
                name = f"{path}.{key.value}" if path else str(key.value)
                lines[name] = key.start_mark.line + 1
                pending.append((name, child))
        elif isinstance(node, yaml.SequenceNode):
            pending.extend((f"{path}[{i}]", child) for i, child in enumerate(node.value))
    return lines


# --- validation --------------------------------------------------------------------


class _Problems:
    def __init__(self, lines: Mapping[str, int]) -> None:
        self.lines = lines
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        line, parent = self.lines.get(path), path
        while line is None and "." in parent:
            # A missing member has no line of its own: point at its closest parent's.
            parent = parent.rsplit(".", 1)[0]
            line = self.lines.get(parent)
        where = f"{path} (line {line})" if line is not None and path else (path or "document")
        self.items.append(f"{where}: {message}")


def parse(
    text: str,
    *,
    params: Mapping[str, str] | None = None,
    resolver: Resolver | None = None,
    source: str = "workflow",
) -> WorkflowSpec:
    document, lines = load_document(text, source)
    return validate(document, params=params, resolver=resolver, lines=lines)


def validate(
    document: Mapping[str, Any],
    *,
    params: Mapping[str, str] | None = None,
    resolver: Resolver | None = None,
    lines: Mapping[str, int] | None = None,
) -> WorkflowSpec:
    """The checked workflow, or :class:`WorkflowValidationError` listing every problem."""
    problems = _Problems(lines or {})
    if not isinstance(document, Mapping):
        raise WorkflowValidationError(["document: must be a mapping with name and steps"])
    for key in document:
        if key not in _TOP_KEYS:
            problems.add(str(key), f"unknown member (expected one of {', '.join(sorted(_TOP_KEYS))})")
    name = document.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.add(
            "name", "required: up to 100 letters, numbers, hyphens and underscores, starting with a letter or number"
        )
        name = "workflow"
    parameters = _string_map(document.get("parameters"), "parameters", problems, _PARAM, "parameter name")
    for key, value in (params or {}).items():
        if key not in parameters:
            known = ", ".join(sorted(parameters)) or "none"
            problems.add(f"--param {key}", f"unknown parameter {key!r} given at run time (declared: {known})")
        elif not isinstance(value, str):
            problems.add(f"--param {key}", "a parameter value must be a string")
        else:
            parameters[key] = value
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        problems.add("defaults", "must be a mapping")
        defaults = {}
    for key in defaults:
        if key not in _JOB_KEYS:
            problems.add(f"defaults.{key}", f"unknown member (expected one of {', '.join(sorted(_JOB_KEYS))})")
    raw_steps = document.get("steps")
    if not isinstance(raw_steps, Mapping) or not raw_steps:
        problems.add("steps", "required: a mapping of step names to steps")
        raw_steps = {}
    if len(raw_steps) > MAX_STEPS:
        problems.add("steps", f"at most {MAX_STEPS:,} steps; {len(raw_steps):,} were given")
        raw_steps = {}
    steps: dict[str, StepSpec] = {}
    for step_name, raw in raw_steps.items():
        path = f"steps.{step_name}"
        if not isinstance(step_name, str) or not _STEP.fullmatch(step_name):
            problems.add(
                path, "step names are up to 64 letters, numbers, hyphens and underscores, starting alphanumeric"
            )
            continue
        if not isinstance(raw, Mapping):
            problems.add(path, "a step must be a mapping (command or jobDefinition, dependsOn, …)")
            continue
        steps[step_name] = _step(step_name, raw, defaults, problems, resolver)
    handlers = [s.name for s in steps.values() if s.when != "success" and not s.depends_on]
    for handler in handlers:
        # A clean-up/alert step without dependsOn follows every other step (an exit handler).
        others = tuple(n for n in steps if n not in handlers)
        steps[handler] = replace(steps[handler], depends_on=others)
    order = _check_graph(steps, set(raw_steps), problems)
    _check_references(steps, order, parameters, problems)
    if problems.items:
        raise WorkflowValidationError(problems.items)
    return WorkflowSpec(name=name, parameters=parameters, steps={s: steps[s] for s in order}, document=dict(document))


def _string_map(value: Any, path: str, problems: _Problems, pattern: re.Pattern[str], what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.add(path, "must be a mapping of names to values")
        return {}
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not pattern.fullmatch(key):
            problems.add(f"{path}.{key}", f"invalid {what} {key!r}")
            continue
        if isinstance(item, bool):
            item = "true" if item else "false"
        if not isinstance(item, str | int | float):
            problems.add(f"{path}.{key}", "the value must be a string, number or boolean")
            continue
        result[key] = str(item)
    return result


def _number(
    value: Any, path: str, problems: _Problems, low: float, integer: bool = True, high: float | None = None
) -> Any:
    number: float | None = None
    if not isinstance(value, bool) and isinstance(value, int | float) and (not integer or isinstance(value, int)):
        number = value
    if number is None or number < low or (high is not None and number > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        problems.add(path, f"must be {'an integer' if integer else 'a number'} {bound}; got {value!r}")
        return None
    return value


def _step(
    name: str, raw: Mapping[str, Any], defaults: Mapping[str, Any], problems: _Problems, resolver: Resolver | None
) -> StepSpec:
    path = f"steps.{name}"
    for key in raw:
        if key not in _STEP_KEYS:
            problems.add(f"{path}.{key}", f"unknown member (expected one of {', '.join(sorted(_STEP_KEYS))})")
    merged = {**{k: v for k, v in defaults.items() if k in _JOB_KEYS}, **raw}

    def where(key: str) -> str:
        return f"{path}.{key}" if key in raw else f"defaults.{key}"

    command = raw.get("command")
    job_definition = raw.get("jobDefinition")
    if (command is None) == (job_definition is None):
        problems.add(path, "needs exactly one of command or jobDefinition")
    if command is not None and (
        not isinstance(command, list) or not command or not all(isinstance(c, str | int | float) for c in command)
    ):
        problems.add(f"{path}.command", "must be a non-empty list of strings, e.g. [sh, -c, 'echo hi']")
        command = None
    if job_definition is not None:
        if not isinstance(job_definition, str) or not job_definition:
            problems.add(f"{path}.jobDefinition", "must be a job definition name, name:revision or ARN")
            job_definition = None
        elif resolver is not None and not resolver.job_definition_exists(job_definition):
            problems.add(f"{path}.jobDefinition", f"job definition {job_definition!r} does not exist or is not ACTIVE")
    queue = merged.get("queue", "default")
    if not isinstance(queue, str) or not queue:
        problems.add(where("queue"), "must be a job queue name")
        queue = "default"
    elif resolver is not None and not resolver.job_queue_exists(queue):
        problems.add(where("queue"), f"job queue {queue!r} does not exist")
    image = merged.get("image", "local")
    if not isinstance(image, str) or not image:
        problems.add(where("image"), "must be a string")
        image = "local"
    vcpus = _number(merged.get("vcpus", 1), where("vcpus"), problems, 0.25, integer=False)
    memory = _number(merged.get("memory", 128), where("memory"), problems, 4)
    gpus = _number(merged.get("gpus", 0), where("gpus"), problems, 0)
    timeout_value = merged.get("timeout")
    if isinstance(timeout_value, Mapping):
        timeout_value = timeout_value.get("attemptDurationSeconds")
    timeout = None
    if timeout_value is not None:
        timeout = _number(timeout_value, where("timeout"), problems, 1, high=14 * 24 * 3600)
    retry = _retry(merged.get("retry"), where("retry"), problems)
    environment = _string_map(merged.get("environment"), where("environment"), problems, _ENV, "variable name")
    for key in environment:
        if key.startswith(_RESERVED_ENV):
            problems.add(f"{where('environment')}.{key}", "names starting with AWS_BATCH_ or OPENBATCH_ are reserved")
    parameters = _string_map(raw.get("parameters"), f"{path}.parameters", problems, _PARAM, "parameter name")
    tags = _string_map(raw.get("tags"), f"{path}.tags", problems, re.compile(r"^(?!aws:).{1,120}$"), "tag key")
    depends = raw.get("dependsOn") or []
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        problems.add(f"{path}.dependsOn", "must be a list of step names")
        depends = []
    for index, dep in enumerate(depends):
        if depends.index(dep) != index:
            problems.add(f"{path}.dependsOn[{index}]", f"step {dep!r} is listed twice")
        if dep == name:
            problems.add(f"{path}.dependsOn[{index}]", "a step cannot depend on itself")
    when = raw.get("when", "success")
    if when not in WHEN_VALUES:
        problems.add(f"{path}.when", f"must be one of {', '.join(WHEN_VALUES)}; got {when!r}")
        when = "success"
    map_spec = _map(raw.get("map"), f"{path}.map", problems)
    refs = _output_refs([*(command or []), *environment.values()])
    # Returned even when invalid, so that graph and reference checks still see the step.
    return StepSpec(
        name=name,
        command=tuple(str(c) for c in command) if command is not None else None,
        job_definition=job_definition,
        image=image,
        vcpus=float(vcpus or 1),
        memory=int(memory or 128),
        gpus=int(gpus or 0),
        environment=environment,
        retry=retry,
        timeout=timeout,
        queue=queue,
        parameters=parameters,
        depends_on=tuple(dict.fromkeys(d for d in depends if d != name)),
        when=when,
        map=map_spec,
        tags=tags,
        output_refs=refs,
    )


def _retry(value: Any, path: str, problems: _Problems) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"attempts": value}
    if not isinstance(value, Mapping):
        problems.add(path, "must be a number of attempts or {attempts: N, evaluateOnExit: […]}")
        return None
    unknown = set(value) - {"attempts", "evaluateOnExit"}
    if unknown:
        problems.add(path, f"unknown member(s) {', '.join(sorted(map(str, unknown)))}")
    attempts = _number(value.get("attempts", 1), f"{path}.attempts", problems, 1, high=10)
    rules = value.get("evaluateOnExit")
    if rules is not None and not isinstance(rules, list):
        problems.add(f"{path}.evaluateOnExit", "must be a list of rules")
        rules = None
    result: dict[str, Any] = {"attempts": attempts or 1}
    if rules:
        result["evaluateOnExit"] = rules
    return result


def _map(value: Any, path: str, problems: _Problems) -> MapSpec | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or ("items" in value) == ("fromStep" in value):
        problems.add(path, "needs exactly one of items (a list) or fromStep (a step name)")
        return None
    unknown = set(value) - {"items", "fromStep"}
    if unknown:
        problems.add(path, f"unknown member(s) {', '.join(sorted(map(str, unknown)))}")
    if "items" in value:
        items = value["items"]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_MAP_ITEMS:
            problems.add(f"{path}.items", f"must be a list of 1 to {MAX_MAP_ITEMS:,} items")
            return None
        return MapSpec(items=tuple(items))
    source = value["fromStep"]
    if not isinstance(source, str):
        problems.add(f"{path}.fromStep", "must be a step name")
        return None
    return MapSpec(from_step=source)


def _output_refs(values: Iterable[Any]) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for value in values:
        for ref in REF.findall(str(value)):
            match = _STEP_REF.match(ref)
            if match:
                found[match.group(1)] = None
    return tuple(found)


def _check_graph(steps: Mapping[str, StepSpec], names: set[Any], problems: _Problems) -> list[str]:
    """Unknown dependencies and cycles; the topological order (Kahn) of the valid steps."""
    for step in steps.values():
        for index, dep in enumerate(step.depends_on):
            if dep not in names:
                problems.add(f"steps.{step.name}.dependsOn[{index}]", f"unknown step {dep!r}")
    edges = {s.name: [d for d in s.depends_on if d in steps] for s in steps.values()}
    indegree = {name: len(deps) for name, deps in edges.items()}
    children: dict[str, list[str]] = {name: [] for name in edges}
    for name, deps in edges.items():
        for dep in deps:
            children[dep].append(name)
    ready = [name for name, n in indegree.items() if n == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0) if len(ready) < 64 else ready.pop()
        order.append(name)
        for child in children[name]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if len(order) < len(edges):
        left = {n for n, d in indegree.items() if d > 0}
        for cycle in _cycles(edges, left):
            problems.add(f"steps.{cycle[0]}.dependsOn", "dependency cycle: " + " → ".join([*cycle, cycle[0]]))
    return order


def _cycles(edges: Mapping[str, list[str]], left: set[str]) -> list[list[str]]:
    """One cycle per strongly tangled group, found by walking dependencies until a step repeats."""
    cycles: list[list[str]] = []
    covered: set[str] = set()
    for start in sorted(left):
        if start in covered:
            continue
        path: list[str] = []
        position: dict[str, int] = {}
        node = start
        while node not in position and len(path) <= len(left):
            position[node] = len(path)
            path.append(node)
            node = next((d for d in edges[node] if d in left), node)
        cycle = path[position.get(node, 0) :]
        covered.update(path)
        if cycle and not (set(cycle) & {n for c in cycles for n in c}):
            cycles.append(cycle)
    return cycles


def _check_references(
    steps: Mapping[str, StepSpec], order: list[str], parameters: Mapping[str, str], problems: _Problems
) -> None:
    upstream: dict[str, set[str]] = {}
    for name in order:
        step = steps[name]
        seen: set[str] = set()
        for dep in step.depends_on:
            seen.add(dep)
            seen |= upstream.get(dep, set())
        upstream[name] = seen
    for name, step in steps.items():
        path = f"steps.{name}"
        _check_parameter_refs(step, parameters, path, problems)
        ups = upstream.get(name)
        if ups is None:
            continue  # in a cycle: already reported
        if step.map is not None and step.map.from_step is not None and step.map.from_step not in ups:
            problems.add(
                f"{path}.map.fromStep",
                f"step {step.map.from_step!r} is not upstream of {name!r}: add it to dependsOn",
            )
        for ref in step.output_refs:
            if ref not in ups:
                problems.add(f"{path}.command", f"Ref::steps.{ref}.outputs reads step {ref!r}, which is not upstream")


def _check_parameter_refs(step: StepSpec, parameters: Mapping[str, str], path: str, problems: _Problems) -> None:
    if step.command is None:
        return  # a job definition's own parameters are not known here
    known = {**parameters, **step.parameters}
    for index, element in enumerate(step.command):
        for ref in REF.findall(element):
            if not ref.startswith("steps.") and ref not in known:
                problems.add(f"{path}.command[{index}]", f"Ref::{ref} names no parameter of the workflow or step")


def parse_params(pairs: Iterable[str]) -> dict[str, str]:
    """``k=v`` strings from the command line."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValidationError(f"--param {pair!r} must be key=value")
        result[key] = value
    return result
