"""Process-wide state of the operator, set once at startup."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from kubegym_operator.credentials import Issuer
from kubegym_operator.settings import Settings


@dataclass
class OperatorState:
    settings: Settings = field(default_factory=Settings)
    #: Set while this replica may reconcile: at once without leader election, else once it holds
    #: the Lease. A standby keeps its watches and view warm but reconciles nothing.
    leading: threading.Event = field(default_factory=threading.Event)
    #: Mints runner pods' storage credentials with the operator's own key (STS mode); None: none minted.
    issuer: Issuer | None = None


STATE = OperatorState()
