"""The one way ``kubectl gym`` and :class:`kubegym.Client` reach the Kubernetes API: the kubeconfig's
context, as kubectl reads it, and that context's namespace as the default."""

from __future__ import annotations

import os
from typing import Any


def connect(kubeconfig: str | None, context: str | None) -> tuple[Any, str]:
    """A CustomObjectsApi for ``context`` of ``kubeconfig`` (default: ``$KUBECONFIG``, else
    ``~/.kube/config``, and its current context), and that context's namespace (else ``default``)."""
    from kubernetes import client, config

    # The kubernetes package reads $KUBECONFIG once, when it is first imported; read it now, so that a
    # notebook (or a test) that sets it after ``import kubernetes`` reaches the cluster it names.
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
    config.load_kube_config(config_file=kubeconfig, context=context)
    _, active = config.list_kube_config_contexts(config_file=kubeconfig)
    if context:
        contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
        active = next((c for c in contexts if c["name"] == context), active)
    namespace = (active or {}).get("context", {}).get("namespace") or "default"
    return client.CustomObjectsApi(), namespace
