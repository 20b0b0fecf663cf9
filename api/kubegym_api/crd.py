"""CustomResourceDefinitions from the pydantic models: JSON Schema in, structural OpenAPI out.

Pydantic writes JSON Schema 2020-12 (``$ref``/``$defs``, ``anyOf`` with ``null`` for optional
fields, numeric ``exclusiveMinimum``, titles); the API server wants a *structural* OpenAPI v3
schema (every node typed, no references, no typed alternatives, OpenAPI 3.0 keywords). This
module converts the former into the latter and checks the result, so a model change that the
API server would reject fails in the unit tests and not at install time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from kubegym_api import GROUP, VERSION

Schema = dict[str, Any]


class SchemaError(ValueError):
    """The models use a construct that has no structural OpenAPI equivalent."""


#: Keywords of Kubernetes' JSONSchemaProps that the conversion keeps; everything else
#: (title, examples, $defs, ...) is dropped.
_KEPT_KEYWORDS = frozenset(
    {
        "type",
        "format",
        "description",
        "default",
        "enum",
        "maximum",
        "minimum",
        "exclusiveMaximum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxProperties",
        "minProperties",
        "required",
        "items",
        "properties",
        "additionalProperties",
        "nullable",
        "anyOf",
    }
)

#: The only typed alternative a structural schema allows (IntOrString).
_INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


@dataclass(frozen=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry; ``priority=1`` shows it only with ``-o wide``."""

    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0
    format: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            out["priority"] = self.priority
        if self.format:
            out["format"] = self.format
        return out


@dataclass(frozen=True)
class ResourceKind:
    """Everything that defines one custom resource kind's CRD."""

    kind: str
    plural: str
    singular: str
    description: str
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ("gym",)
    printer_columns: tuple[PrinterColumn, ...] = ()
    #: CEL rules on the whole object (they may read metadata.name and oldSelf.status).
    rules: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def model_schema(model: type[BaseModel]) -> Schema:
    """The structural OpenAPI v3 schema of a pydantic model (camelCase names)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _convert(raw, raw.get("$defs", {}), path=model.__name__)


def _resolve(node: Schema, defs: Mapping[str, Schema], path: str) -> Schema:
    """Inline ``$ref``/single ``allOf``; keywords next to the reference win (field docs)."""
    while True:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name not in defs:
                raise SchemaError(f"{path}: unresolvable reference {node['$ref']}")
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            node = {**defs[name], **siblings}
        elif "allOf" in node and len(node["allOf"]) == 1:
            siblings = {k: v for k, v in node.items() if k != "allOf"}
            node = {**node["allOf"][0], **siblings}
        else:
            return node


def _strip_null(node: Schema, defs: Mapping[str, Schema], path: str) -> Schema:
    """``X | None`` becomes plain optional X: absence, not null, is how Kubernetes omits."""
    alternatives = node.get("anyOf")
    if not alternatives or {"type": "null"} not in alternatives:
        return node
    rest = [alt for alt in alternatives if alt != {"type": "null"}]
    if len(rest) != 1:
        raise SchemaError(f"{path}: a union of several types cannot be structural")
    siblings = {k: v for k, v in node.items() if k != "anyOf"}
    merged = {**_resolve(rest[0], defs, path), **siblings}
    if merged.get("default", 0) is None:
        del merged["default"]
    return merged


def _openapi_bounds(node: Schema) -> None:
    """JSON Schema's numeric exclusive bounds become OpenAPI 3.0's boolean flags."""
    for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        bound = node.get(exclusive)
        if isinstance(bound, bool) or bound is None:
            continue
        other = node.get(inclusive)
        lower = exclusive == "exclusiveMinimum"
        if other is None or (bound >= other if lower else bound <= other):
            node[inclusive] = bound
            node[exclusive] = True
        else:
            del node[exclusive]


def _convert(node: Schema, defs: Mapping[str, Schema], path: str) -> Schema:
    node = _strip_null(_resolve(node, defs, path), defs, path)
    out: Schema = {}
    for key, value in node.items():
        if key in _KEPT_KEYWORDS or key.startswith("x-kubernetes-"):
            out[key] = value
    if "const" in node:
        out["enum"] = [node["const"]]
        out.setdefault("type", "string")
    _openapi_bounds(out)
    if "anyOf" in out:
        if out["anyOf"] != _INT_OR_STRING or not out.get("x-kubernetes-int-or-string"):
            raise SchemaError(f"{path}: unions are only supported for int-or-string")
        return out
    if "type" not in out:
        # ``Any``: a value of any JSON type, kept as written.
        out["x-kubernetes-preserve-unknown-fields"] = True
        return out
    kind = out["type"]
    if kind == "object":
        _convert_object(out, defs, path)
    elif kind == "array":
        if "items" not in out:
            raise SchemaError(f"{path}: an array needs an item type")
        out["items"] = _convert(out["items"], defs, f"{path}[]")
    return out


def _convert_object(out: Schema, defs: Mapping[str, Schema], path: str) -> None:
    extra = out.pop("additionalProperties", None)
    if "properties" in out:
        out["properties"] = {name: _convert(child, defs, f"{path}.{name}") for name, child in out["properties"].items()}
        if not out.get("required"):
            out.pop("required", None)
        return
    if extra is True or extra == {}:
        out["x-kubernetes-preserve-unknown-fields"] = True
    elif isinstance(extra, dict):
        out["additionalProperties"] = _convert(extra, defs, f"{path}{{}}")
    elif not out.get("x-kubernetes-preserve-unknown-fields"):
        raise SchemaError(f"{path}: an object needs properties or a value type")


def strip_defaults(schema: Schema) -> Schema:
    """A copy without ``default``: status is observed, never defaulted by the API server."""
    out = {k: v for k, v in schema.items() if k != "default"}
    if "properties" in out:
        out["properties"] = {k: strip_defaults(v) for k, v in out["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = strip_defaults(out[key])
    return out


def object_schema(kind: ResourceKind) -> Schema:
    """The ``openAPIV3Schema`` of a kind: envelope, spec, status and whole-object rules."""
    spec = model_schema(kind.spec_model)
    status = strip_defaults(model_schema(kind.status_model))
    spec["description"] = f"Desired state of the {kind.kind}."
    status["description"] = f"Observed state of the {kind.kind}, written by kubegym."
    root: Schema = {
        "description": kind.description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "description": "Versioned schema of this object (kubegym.io/v1alpha1).",
                "type": "string",
            },
            "kind": {"description": f"Always {kind.kind}.", "type": "string"},
            # The API server owns metadata's schema and refuses even a description here.
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    if kind.rules:
        root["x-kubernetes-validations"] = [dict(rule) for rule in kind.rules]
    return root


def build_crd(kind: ResourceKind) -> dict[str, Any]:
    """The CustomResourceDefinition manifest of a kind; raises if it would not be structural."""
    schema = object_schema(kind)
    problems = structural_errors(schema)
    if problems:
        raise SchemaError(f"{kind.kind} schema is not structural:\n  " + "\n  ".join(problems))
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {"app.kubernetes.io/part-of": "kubegym"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": list(kind.categories),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.to_dict() for c in kind.printer_columns],
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def structural_errors(schema: Schema, path: str = "") -> list[str]:
    """Violations of the structural-schema rules the API server enforces, plus our own rule
    that every field is documented (``kubectl explain`` shows nothing for undocumented ones).

    Checked: no references; every node typed unless int-or-string or preserve-unknown; typed
    alternatives only in the IntOrString form; properties and additionalProperties exclusive;
    no ``additionalProperties: false``; array items a single schema; a description on every
    property; metadata without defaults.
    """
    errors: list[str] = []
    where = path or "<root>"
    if "$ref" in schema:
        errors.append(f"{where}: $ref is not allowed")
    unknown = {k for k in schema if k not in _KEPT_KEYWORDS and not k.startswith("x-kubernetes-")}
    if unknown:
        errors.append(f"{where}: keywords the API server does not know: {sorted(unknown)}")
    untyped_ok = schema.get("x-kubernetes-int-or-string") or schema.get("x-kubernetes-preserve-unknown-fields")
    if "type" not in schema and not untyped_ok:
        errors.append(f"{where}: no type")
    if schema.get("x-kubernetes-int-or-string") and schema.get("anyOf") != _INT_OR_STRING:
        errors.append(f"{where}: int-or-string must be anyOf [integer, string]")
    for junctor in ("allOf", "oneOf", "not"):
        if junctor in schema:
            errors.append(f"{where}: {junctor} is not used by kubegym and not checked")
    if "anyOf" in schema and not schema.get("x-kubernetes-int-or-string"):
        errors.append(f"{where}: anyOf outside int-or-string")
    if "properties" in schema and "additionalProperties" in schema:
        errors.append(f"{where}: properties and additionalProperties are mutually exclusive")
    if schema.get("additionalProperties") is False:
        errors.append(f"{where}: additionalProperties: false is not allowed")
    if schema.get("x-kubernetes-preserve-unknown-fields") is False:
        errors.append(f"{where}: x-kubernetes-preserve-unknown-fields must be true or absent")
    if schema.get("type") == "array" and not isinstance(schema.get("items"), dict):
        errors.append(f"{where}: array without a single items schema")
    for name, child in schema.get("properties", {}).items():
        child_path = f"{path}.{name}"
        if child_path == ".metadata":
            if child != {"type": "object"}:
                errors.append(f"{child_path}: the API server allows only type: object here")
            continue
        if not child.get("description"):
            errors.append(f"{child_path}: no description")
        errors.extend(structural_errors(child, child_path))
    if isinstance(schema.get("items"), dict):
        errors.extend(structural_errors(schema["items"], f"{path}[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        errors.extend(structural_errors(schema["additionalProperties"], f"{path}{{}}"))
    return errors
