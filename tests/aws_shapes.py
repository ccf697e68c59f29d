"""Strict checks of answers against botocore's own service model (botocore's parser forgives what this does not)."""
from __future__ import annotations

import functools

import botocore.session

_TYPES = {"string": str, "boolean": bool, "blob": (bytes, bytearray), "timestamp": object,
          "map": dict, "structure": dict, "list": list}


@functools.cache
def output_shape(service: str, operation: str):
    return botocore.session.get_session().get_service_model(service).operation_model(operation).output_shape


def problems(value, shape, path: str = "") -> list[str]:
    """Everything in value that its botocore shape does not allow: unknown keys, wrong types, values off the enum."""
    kind = shape.type_name
    if kind in ("integer", "long"):
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{path}: {value!r} is not {kind}"]
    if kind in ("float", "double"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: {value!r} is not {kind}"]
    if not isinstance(value, _TYPES[kind]):
        return [f"{path}: {type(value).__name__} where the model has {kind}"]
    if kind == "string" and shape.enum and value not in shape.enum:
        return [f"{path}: {value!r} is not one of {shape.enum}"]
    if kind == "structure":
        found = [f"{path}.{key}: not in {shape.name}" for key in value if key not in shape.members]
        found += [f"{path}.{key}: required" for key in shape.required_members if key not in value]
        for key, member in value.items():
            if key in shape.members:
                found += problems(member, shape.members[key], f"{path}.{key}")
        return found
    if kind == "list":
        return [p for i, item in enumerate(value) for p in problems(item, shape.member, f"{path}[{i}]")]
    if kind == "map":
        return [p for k, v in value.items() for p in problems(v, shape.value, f"{path}[{k}]")]
    return []


def assert_output_shape(service: str, operation: str, answer: dict) -> None:
    """Fail unless `answer` (without boto3's ResponseMetadata) fits the operation's output shape exactly."""
    body = {key: value for key, value in answer.items() if key != "ResponseMetadata"}
    found = problems(body, output_shape(service, operation), operation)
    assert not found, "\n".join(found)
