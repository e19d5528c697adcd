"""An independent JSON Schema checker for the subset the tool tests use
(type, properties, required, additionalProperties, enum, const, items,
anyOf, minItems/maxItems, minLength/maxLength), so tests do not trust the
service's own code to judge its output."""

from __future__ import annotations

from typing import Any

_PY = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
}


def problems(schema: dict, value: Any, path: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema`` (empty when it validates)."""
    found: list[str] = []
    kind = schema.get("type")
    if kind is not None and not _is(kind, value):
        return [f"{path}: expected {kind}, got {type(value).__name__}"]
    if "const" in schema and value != schema["const"]:
        found.append(f"{path}: expected {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{path}: {value!r} not in {schema['enum']}")
    if "anyOf" in schema and all(problems(sub, value, path) for sub in schema["anyOf"]):
        found.append(f"{path}: matches none of anyOf")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                found.append(f"{path}: missing {name!r}")
        for name, item in value.items():
            if name in props:
                found += problems(props[name], item, f"{path}.{name}")
            elif schema.get("additionalProperties") is False:
                found.append(f"{path}: unexpected property {name!r}")
    if isinstance(value, list):
        if "items" in schema:
            for index, item in enumerate(value):
                found += problems(schema["items"], item, f"{path}[{index}]")
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            found.append(f"{path}: {len(value)} items out of range")
    if isinstance(value, str) and not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
        found.append(f"{path}: length {len(value)} out of range")
    return found


def _is(kind: Any, value: Any) -> bool:
    if isinstance(kind, list):
        return any(_is(k, value) for k in kind)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _PY[kind])
