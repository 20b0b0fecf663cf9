"""The operator's few API calls, as plain JSON dicts, through the official client.

Every reconcile reads and writes through these functions, so the I/O surface of the
operator is this one module: everything else is pure.
"""

from __future__ import annotations

import json
import os
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

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


def json_patch(path: str, ops: list[Obj]) -> Obj:
    return call("PATCH", path, ops, content_type="application/json-patch+json")


def merge_patch(path: str, body: Obj) -> Obj:
    return call("PATCH", path, body, content_type="application/merge-patch+json")


def delete(path: str, propagation: str = "Background") -> None:
    try:
        call("DELETE", path, {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation})
    except ApiException as e:
        if e.status != 404:
            raise


def list_items(path: str, label_selector: str) -> list[Obj]:
    return list(call("GET", path, query=[("labelSelector", label_selector)]).get("items", []))


def collection_path(manifest: Obj) -> str:
    """The collection URL of a namespaced manifest (core or grouped API)."""
    api_version: str = manifest["apiVersion"]
    ns = manifest["metadata"]["namespace"]
    plural = {
        "ServiceAccount": "serviceaccounts",
        "Role": "roles",
        "RoleBinding": "rolebindings",
        "Job": "jobs",
        "TrainingRun": "trainingruns",
        "Benchmark": "benchmarks",
        "Experiment": "experiments",
    }[manifest["kind"]]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{ns}/{plural}"


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
