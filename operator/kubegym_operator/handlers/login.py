"""kopf's login: its watches use the credentials the operator's own calls use.

Without this handler kopf would pick a login of its own (the ``kubernetes`` client's when that is
importable, else a ServiceAccount login that assumes ``https://kubernetes.default.svc``); with it
both clients read :func:`kubegym_operator.kubeapi.connection_info`, one source of truth.
"""

from __future__ import annotations

from typing import Any

import kopf

from kubegym_operator.kubeapi import connection_info


@kopf.on.login(id="kubegym_login")
def login(**_: Any) -> kopf.ConnectionInfo:
    """The operator's credentials (in a pod: its ServiceAccount; else the kubeconfig)."""
    return connection_info()
