"""Process-wide state of the operator, set once at startup."""

from __future__ import annotations

from dataclasses import dataclass, field

from kubegym_operator.settings import Settings


@dataclass
class OperatorState:
    settings: Settings = field(default_factory=Settings)
    #: Namespaces watched; empty means cluster-wide.
    namespaces: tuple[str, ...] = ()


STATE = OperatorState()
