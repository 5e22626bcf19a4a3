"""Check a kdoctor task manifest against the schema of kdoctor's own CRDs, as the API server
does with strict field validation: unknown fields refused, every field's type, enum, range
and integer format checked, non-finite numbers refused. The schema (``schemas/
kdoctor-tasks.json``) is derived from kdoctor's CRDs by ``hack/task-schema``.

Each problem is one ``SchemaError`` naming the field by its path (``spec.request.qps``).
"""

from __future__ import annotations

import functools
import json
import math
import re
from importlib import resources
from typing import Any

SCHEMA_FILE = "kdoctor-tasks.json"
INT_RANGE = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
# The fields of ObjectMeta (metadata of any object): others are unknown.
METADATA_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
TOP_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")


class SchemaError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


@functools.cache
def _schema() -> dict[str, Any]:
    text = resources.files("kubectl_kdoctor").joinpath("schemas", SCHEMA_FILE).read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def spec_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = _schema()["kinds"][kind]
    return schema


def _short(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 40 else r[:37] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"  # dates, binary, sets: YAML types JSON does not have


def check_document(doc: dict[str, Any], kind: str) -> None:
    """The whole manifest: top-level fields, metadata, spec (status is not checked: it is
    what ``kubectl get -o yaml`` adds, and is never sent)."""
    for key in doc:
        if not isinstance(key, str):
            raise SchemaError("", f"field names must be strings (got {_short(key)})")
        if key not in TOP_FIELDS:
            raise SchemaError(key, f"unknown field (expected one of {', '.join(TOP_FIELDS)})")
    meta = doc.get("metadata")
    if meta is not None:
        if not isinstance(meta, dict):
            raise SchemaError("metadata", f"must be a mapping (got {_type_name(meta)})")
        for key, val in meta.items():
            if key not in METADATA_FIELDS:
                raise SchemaError(f"metadata.{key}", "unknown field")
            if key in ("name", "namespace", "generateName") and not isinstance(val, str | None):
                raise SchemaError(f"metadata.{key}", f"must be a string (got {_type_name(val)})")
            if (
                key in ("labels", "annotations")
                and val is not None
                and (
                    not isinstance(val, dict)
                    or not all(isinstance(k, str) and isinstance(v, str) for k, v in val.items())
                )
            ):
                raise SchemaError(f"metadata.{key}", "must be a mapping of strings")
    status = doc.get("status")
    if status is not None and not isinstance(status, dict):
        raise SchemaError("status", f"must be a mapping (got {_type_name(status)})")
    check(doc.get("spec"), spec_schema(kind), "spec")


def check(value: Any, schema: dict[str, Any], path: str) -> None:
    """``value`` against one OpenAPI v3 (structural) schema node; SchemaError at the first
    problem. ``null`` is an absent field, as the API server reads it."""
    if "$ref" in schema:
        schema = _schema()[schema["$ref"]]
    if value is None:
        return
    if schema.get("x-kubernetes-int-or-string") or "anyOf" in schema:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise SchemaError(path, f"must be an integer or a string (got {_type_name(value)})")
        if isinstance(value, str):
            _check_string(value, schema, path)
        return
    kind = schema.get("type")
    if kind == "object":
        _check_object(value, schema, path)
    elif kind == "array":
        if not isinstance(value, list):
            raise SchemaError(path, f"must be a list (got {_type_name(value)})")
        items = schema.get("items") or {}
        for i, item in enumerate(value):
            if item is None:
                raise SchemaError(f"{path}[{i}]", "must not be null")
            check(item, items, f"{path}[{i}]")
    elif kind == "string":
        if not isinstance(value, str):
            raise SchemaError(path, f"must be a string (got {_type_name(value)})")
        _check_string(value, schema, path)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise SchemaError(path, f"must be true or false (got {_short(value)})")
    elif kind in ("integer", "number"):
        _check_number(value, schema, path, kind)


def _check_object(value: Any, schema: dict[str, Any], path: str) -> None:
    if not isinstance(value, dict):
        raise SchemaError(path, f"must be a mapping (got {_type_name(value)})")
    props: dict[str, Any] = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        if not isinstance(key, str):
            raise SchemaError(path, f"field names must be strings (got {_short(key)})")
        where = f"{path}.{key}"
        if key in props:
            check(item, props[key], where)
        elif isinstance(extra, dict):
            if item is None:
                raise SchemaError(where, "must not be null")
            check(item, extra, where)
        else:
            known = ", ".join(sorted(props)) or "none"
            raise SchemaError(where, f"unknown field (known here: {known})")
    for key in schema.get("required") or ():
        # the API server fills in a schema default before it checks required fields
        if value.get(key) is None and "default" not in props.get(key, {}):
            raise SchemaError(f"{path}.{key}", "is required")


def _check_string(value: str, schema: dict[str, Any], path: str) -> None:
    enum = schema.get("enum")
    if enum and value not in enum:
        raise SchemaError(path, f"must be one of {', '.join(enum)} (got {_short(value)})")
    pattern = schema.get("pattern")
    if pattern and not re.search(pattern, value):
        raise SchemaError(path, f"invalid value {_short(value)}")


def _check_number(value: Any, schema: dict[str, Any], path: str, kind: str) -> None:
    what = "an integer" if kind == "integer" else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SchemaError(path, f"must be {what} (got {_short(value)})")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SchemaError(path, f"must be a finite number (got {_short(value)})")
        if kind == "integer":
            if not value.is_integer():
                raise SchemaError(path, f"must be an integer (got {_short(value)})")
            value = int(value)
    low, high = INT_RANGE.get(schema.get("format", ""), (None, None))
    if kind == "integer" and low is None:
        low, high = INT_RANGE["int64"]
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    if minimum is not None and value < minimum:
        raise SchemaError(path, f"must be at least {minimum} (got {_short(value)})")
    if maximum is not None and value > maximum:
        raise SchemaError(path, f"must be at most {maximum} (got {_short(value)})")
    if low is not None and high is not None and not low <= value <= high:
        raise SchemaError(path, f"out of range (got {_short(value)})")
