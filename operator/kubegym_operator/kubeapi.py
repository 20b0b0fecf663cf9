"""The operator's few API calls, as plain JSON dicts, through the official client.

Every reconcile reads and writes through these functions, so the Kubernetes I/O surface of the
operator is this one module; its only other I/O is the STS call that mints each run's storage
credentials (:mod:`kubegym_operator.sts`). Everything else is pure.
"""

from __future__ import annotations

import json
import os
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kubegym_api import API_VERSION
from kubegym_api.benchmark import KIND as BENCHMARK_KIND
from kubegym_api.benchmark import PLURAL as BENCHMARKS
from kubegym_api.experiment import KIND as EXPERIMENT_KIND
from kubegym_api.experiment import PLURAL as EXPERIMENTS
from kubegym_api.trainingrun import KIND as TRAINING_RUN_KIND
from kubegym_api.trainingrun import PLURAL as TRAINING_RUNS
from kubegym_operator import metrics

Obj = dict[str, Any]

_api: client.ApiClient | None = None


def login() -> client.ApiClient:
    """In-cluster credentials in a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    global _api
    if _api is None:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
        else:
            config.load_kube_config()
        _api = client.ApiClient()
    return _api


def call(
    method: str,
    path: str,
    body: Any = None,
    query: list[tuple[str, Any]] | None = None,
    content_type: str | None = None,
) -> Obj:
    api = login()
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    elif body is not None:
        headers["Content-Type"] = "application/json"
    code = 0
    try:
        resp = api.call_api(
            path,
            method,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _preload_content=False,
            _request_timeout=60,
        )
        code = int(getattr(resp, "status", 200) or 200)
    except ApiException as e:
        code = int(e.status or 0)
        raise
    finally:
        metrics.API_REQUESTS.labels(method, str(code)).inc()
    data = resp.data
    result = json.loads(data) if data else {}
    return result if isinstance(result, dict) else {}


def get_or_none(path: str) -> Obj | None:
    try:
        return call("GET", path)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def create_if_absent(path: str, body: Obj) -> Obj:
    """Create the object at the collection path; an existing one is returned unchanged."""
    try:
        return call("POST", path, body)
    except ApiException as e:
        if e.status != 409:
            raise
        existing = get_or_none(f"{path}/{body['metadata']['name']}")
        return existing or {}


def create_or_replace(path: str, body: Obj) -> None:
    """Create the object at the collection path; when it exists, merge-patch its data, labels,
    annotations and owner references to ``body``'s. Nothing is read back or returned: this writes
    Secrets, which the operator may create and patch but not get."""
    try:
        call("POST", path, body)
    except ApiException as e:
        if e.status != 409:
            raise
        meta = body["metadata"]
        patch = {
            "metadata": {k: meta[k] for k in ("labels", "annotations", "ownerReferences") if k in meta},
            **({"data": body["data"]} if "data" in body else {}),
        }
        call("PATCH", f"{path}/{meta['name']}", patch, content_type="application/merge-patch+json")


def json_patch(path: str, ops: list[Obj]) -> Obj:
    return call("PATCH", path, ops, content_type="application/json-patch+json")


def merge_patch(path: str, body: Obj) -> Obj:
    return call("PATCH", path, body, content_type="application/merge-patch+json")


def delete(path: str, propagation: str = "Background") -> Obj | None:
    """Delete the object at ``path``; returns the API's answer (the object, with a deletionTimestamp
    while finalizers or foreground deletion hold it, or a Status), None when it was not there."""
    try:
        return call("DELETE", path, {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation})
    except ApiException as e:
        if e.status != 404:
            raise
        return None


def list_items(path: str, label_selector: str) -> list[Obj]:
    return list(call("GET", path, query=[("labelSelector", label_selector)]).get("items", []))


#: apiVersion and plural of every kind the operator reads or writes, by ``kind``.
RESOURCES: dict[str, tuple[str, str]] = {
    TRAINING_RUN_KIND: (API_VERSION, TRAINING_RUNS),
    BENCHMARK_KIND: (API_VERSION, BENCHMARKS),
    EXPERIMENT_KIND: (API_VERSION, EXPERIMENTS),
    "Job": ("batch/v1", "jobs"),
    "Pod": ("v1", "pods"),
    "ServiceAccount": ("v1", "serviceaccounts"),
    "Role": ("rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings"),
    "Secret": ("v1", "secrets"),
}


def collection_path(kind: str, namespace: str) -> str:
    """URL path of the namespaced collection of ``kind`` (core or grouped API)."""
    api_version, plural = RESOURCES[kind]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}"


def object_path(kind: str, namespace: str, name: str) -> str:
    """URL path of one namespaced object of ``kind``."""
    return f"{collection_path(kind, namespace)}/{name}"


def post_event(obj: Obj, type_: str, reason: str, message: str, component: str = "kubegym-operator") -> None:
    """A core/v1 Event on obj, so ``kubectl describe`` tells its story."""
    import datetime as dt
    import uuid

    meta = obj["metadata"]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": os.environ.get("HOSTNAME", component),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    call("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body)
