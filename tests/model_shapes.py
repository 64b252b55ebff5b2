"""Check a response body against the installed botocore Batch model's output shape.

botocore's parser drops members it does not know, so responses are checked as
raw JSON: every member must be in the shape, every required member present,
every value of the shape's type, every enum value one the model lists.
"""

from __future__ import annotations

from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StringShape, StructureShape


def batch_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("batch")


OMITTED_LIKE_AWS = {("JobDetail", "startedAt")}
"""Members the model marks required that AWS itself leaves out: a job that never
started has no ``startedAt`` (clients guard against the KeyError)."""


def shape_problems(value: Any, shape: Shape, path: str = "$") -> list[str]:
    problems: list[str] = []
    kind = shape.type_name
    if isinstance(shape, StructureShape):
        if not isinstance(value, dict):
            return [f"{path}: expected an object for {shape.name}, got {type(value).__name__}"]
        problems.extend(
            f"{path}: required member {name!r} of {shape.name} is missing"
            for name in shape.required_members
            if name not in value and (shape.name, name) not in OMITTED_LIKE_AWS
        )
        for name, item in value.items():
            member = shape.members.get(name)
            if member is None:
                problems.append(f"{path}: unknown member {name!r} in {shape.name}")
            elif item is not None:
                problems.extend(shape_problems(item, member, f"{path}.{name}"))
    elif isinstance(shape, ListShape):
        if not isinstance(value, list):
            return [f"{path}: expected a list for {shape.name}, got {type(value).__name__}"]
        for index, item in enumerate(value):
            problems.extend(shape_problems(item, shape.member, f"{path}[{index}]"))
    elif isinstance(shape, MapShape):
        if not isinstance(value, dict):
            return [f"{path}: expected a map for {shape.name}, got {type(value).__name__}"]
        for key, item in value.items():
            problems.extend(shape_problems(key, shape.key, f"{path}<key>"))
            problems.extend(shape_problems(item, shape.value, f"{path}[{key!r}]"))
    elif kind == "string":
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string, got {value!r}")
        elif isinstance(shape, StringShape) and shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} is not one of {shape.name} {shape.enum}")
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: expected an integer, got {value!r}")
    elif kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{path}: expected a number, got {value!r}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            problems.append(f"{path}: expected a boolean, got {value!r}")
    elif kind == "timestamp":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            problems.append(f"{path}: expected a timestamp, got {value!r}")
    return problems


def response_problems(operation: OperationModel, body: dict[str, Any]) -> list[str]:
    shape = operation.output_shape
    if shape is None:
        return [] if not body else [f"{operation.name} has no output shape but answered {body!r}"]
    return shape_problems(body, shape)
