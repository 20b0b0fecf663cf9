"""A small CEL evaluator for the unit tier: the subset our CRDs' simple rules use, with the API server's defaulting.

The API server evaluates ``x-kubernetes-validations`` rules after it has applied the schema's
defaults. The integration tier's bad-input corpus checks them against the real server; this lets
a unit test evaluate the committed rule text itself on a spec, for rules written in the subset:
``self.a.b`` field access, ``has(self.a.b)``, ``!``, ``&&``, ``||``, ``==``, ``!=``, ``<``, ``<=``,
``>``, ``>=``, ``in [...]``, parentheses, integers and single-quoted strings. A rule outside the
subset (``?:``, ``size()``, ``oldSelf``, macros) raises :class:`UnsupportedRuleError` rather than guessing.

The translation maps the subset onto the same Python operators: CEL and Python agree on the
precedence of these (comparisons bind tighter than ``!``/``not`` where the rule negates a call or a
parenthesised expression, ``&&``/``and`` tighter than ``||``/``or``).
"""

from __future__ import annotations

import copy
import re
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<has>has\(\s*self(?P<has_path>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*\))"
    r"|(?P<field>self(?P<path>(?:\.[A-Za-z_][A-Za-z0-9_]*)*))"
    r"|(?P<str>'[^'\\]*')"
    r"|(?P<num>-?\d+(?:\.\d+)?)"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[!<>()\[\],])"
    r"|(?P<word>in|true|false))"
)


class UnsupportedRuleError(ValueError):
    """The rule uses CEL beyond the subset this evaluator knows."""


def _get(obj: Any, path: str) -> Any:
    for part in path.strip(".").split("."):
        if not part:
            continue
        if not isinstance(obj, dict) or part not in obj:
            raise KeyError(f"no such key: {part} (in self{path})")
        obj = obj[part]
    return obj


def _has(obj: Any, path: str) -> bool:
    *parents, last = path.strip(".").split(".")
    for part in parents:
        if not isinstance(obj, dict) or part not in obj:
            raise KeyError(f"no such key: {part} (in has(self{path}))")
        obj = obj[part]
    return isinstance(obj, dict) and last in obj


def translate(rule: str) -> str:
    """The rule as a Python expression over ``_get``/``_has`` of ``self``."""
    out: list[str] = []
    pos = 0
    while pos < len(rule):
        if rule[pos:].strip() == "":
            break
        m = _TOKEN.match(rule, pos)
        if m is None:
            raise UnsupportedRuleError(f"not in the CEL subset at {rule[pos:]!r}: {rule}")
        pos = m.end()
        if m.group("has") is not None:
            out.append(f"_has(self, {m.group('has_path')!r})")
        elif m.group("field") is not None:
            if rule[pos:].lstrip().startswith("("):
                raise UnsupportedRuleError(f"method calls are not in the subset: {rule}")
            out.append(f"_get(self, {m.group('path')!r})")
        elif m.group("str") is not None:
            out.append(m.group("str"))
        elif m.group("num") is not None:
            out.append(m.group("num"))
        elif m.group("word") is not None:
            out.append({"in": "in", "true": "True", "false": "False"}[m.group("word")])
        else:
            op = m.group("op")
            out.append({"&&": "and", "||": "or", "!": "not"}.get(op, op))
    return " ".join(out)


def evaluate(rule: str, self: Any) -> bool:
    """Whether ``rule`` holds for ``self`` (a node of a defaulted object); a missing field read
    raises KeyError, as the API server reports an evaluation error."""
    result = eval(translate(rule), {"__builtins__": {}}, {"_get": _get, "_has": _has, "self": self})
    if not isinstance(result, bool):
        raise UnsupportedRuleError(f"the rule is not boolean: {rule}")
    return result


def apply_defaults(obj: Any, schema: dict[str, Any]) -> Any:
    """A copy of ``obj`` with the schema's defaults filled in, as the API server does before it
    validates: each absent property with a ``default`` gets it, recursively into present objects
    (and into array items)."""
    obj = copy.deepcopy(obj)
    _fill(obj, schema)
    return obj


def _fill(obj: Any, schema: dict[str, Any]) -> None:
    if isinstance(obj, dict):
        for name, prop in (schema.get("properties") or {}).items():
            if name not in obj and "default" in prop:
                obj[name] = copy.deepcopy(prop["default"])
            if name in obj:
                _fill(obj[name], prop)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for item in obj:
            _fill(item, schema["items"])


def violations(obj: Any, schema: dict[str, Any]) -> list[str]:
    """The messages of every rule of ``schema``'s nodes (recursively, where ``obj`` has the node) that
    ``obj`` breaks. Rules outside the subset (and transition rules) are skipped: they are not
    this evaluator's to judge."""
    out: list[str] = []
    for rule in schema.get("x-kubernetes-validations") or []:
        try:
            holds = evaluate(rule["rule"], obj)
        except UnsupportedRuleError:
            continue
        if not holds:
            out.append(rule["message"])
    if isinstance(obj, dict):
        for name, prop in (schema.get("properties") or {}).items():
            if name in obj:
                out.extend(violations(obj[name], prop))
    return out
