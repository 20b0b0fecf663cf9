"""Apply-time validation building blocks: CEL rules in the JSON schema, and Kubernetes name syntax.

A model attaches CEL rules to its schema node (``x-kubernetes-validations``); :mod:`kubegym_api.crd`
carries them into the CRD unchanged, so the API server rejects at ``kubectl apply`` what could
never work, with a message that says what to fix. The name patterns are Kubernetes' own, for
fields that name other objects or end up in labels.
"""

from __future__ import annotations

from pydantic import ConfigDict
from pydantic.config import JsonDict

#: A DNS-1123 label: names of queues, secrets and priority classes that end up in labels.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: A DNS-1123 subdomain: names of most namespaced objects.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def validation_rule(
    rule: str,
    message: str,
    *,
    field_path: str | None = None,
    reason: str | None = None,
) -> JsonDict:
    """One ``x-kubernetes-validations`` entry; ``message`` should tell the user what to fix."""
    out: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        out["fieldPath"] = field_path
    if reason is not None:
        out["reason"] = reason
    return out


def rules(*entries: JsonDict) -> ConfigDict:
    """Model config that attaches CEL rules to the model's schema node."""
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": list(entries)})


def immutable_rule(field: str, why: str, *, optional: bool) -> JsonDict:
    """A transition rule keeping spec ``field`` as it was (``why`` ends the message); optional fields
    may not appear or vanish either."""
    rule = f"self.{field} == oldSelf.{field}"
    if optional:
        rule = f"has(self.{field}) == has(oldSelf.{field}) && (!has(self.{field}) || self.{field} == oldSelf.{field})"
    return validation_rule(
        rule,
        f"spec.{field} is immutable: {why}",
        field_path=f".{field}",
        reason="FieldValueForbidden",
    )
