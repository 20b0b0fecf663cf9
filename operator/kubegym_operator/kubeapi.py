"""The operator's few API calls, as plain JSON dicts, over one small HTTP client of its own.

Every reconcile reads and writes through these functions, so the Kubernetes I/O surface of the
operator is this one module; its only other I/O is the STS call that mints each run's storage
credentials (:mod:`kubegym_operator.sts`). Everything else is pure.

Why not the official ``kubernetes`` client: the operator sends JSON it built itself and reads the
answers as dicts, so it used the client only for ``call_api`` and its login; importing it cost about
60 MB of the operator's memory (its ~700 generated model classes), and kopf imports it too whenever
it is importable, only to recognise those models. The operator now logs in with kopf's own
credentials object (:class:`kopf.ConnectionInfo`: its TLS context and its Authorization header) and
speaks HTTP through urllib3, one connection pool shared by the reconciling threads;
the operator's login handler (:mod:`kubegym_operator.handlers.login`) hands kopf the same credentials, so the operator's two clients (kopf's watches,
these calls) never disagree about who they are.

Credentials, as client-go finds them: in a pod (``KUBERNETES_SERVICE_HOST`` set) the
ServiceAccount token and CA under :data:`SERVICE_ACCOUNT_DIR` and the API at
``KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT``, the token read again every
:data:`TOKEN_REREAD_SECONDS` (the kubelet rotates it) and at once after a 401; elsewhere the
kubeconfig (``KUBECONFIG``, else ``~/.kube/config``) as kopf reads it: its current context's
server, CA, client certificate and key (paths or data), token or basic auth. Not supported, as in
kopf without a client library: ``exec`` and ``auth-provider`` plugins that must run to get a token
(the cloud CLIs' kubeconfigs); run the operator in the cluster, or with a kubeconfig holding a
certificate or a token.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
import urllib3

from kubegym_api import API_VERSION
from kubegym_api.benchmark import KIND as BENCHMARK_KIND
from kubegym_api.benchmark import PLURAL as BENCHMARKS
from kubegym_api.experiment import KIND as EXPERIMENT_KIND
from kubegym_api.experiment import PLURAL as EXPERIMENTS
from kubegym_api.trainingrun import KIND as TRAINING_RUN_KIND
from kubegym_api.trainingrun import PLURAL as TRAINING_RUNS
from kubegym_operator import metrics
from kubegym_operator.apierrors import ApiError

Obj = dict[str, Any]

#: Where a pod finds its ServiceAccount's token, CA and namespace.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: How often the in-cluster token file is read again (client-go's period).
TOKEN_REREAD_SECONDS = 60.0
#: Seconds a request may take, connecting and reading, unless the caller says otherwise.
REQUEST_TIMEOUT_SECONDS = 60.0
#: Connections kept open to the API server (the work queue's threads, the resync, the leases).
POOL_SIZE = 12


def connection_info() -> kopf.ConnectionInfo:
    """The operator's credentials: the pod's ServiceAccount in a cluster, else the kubeconfig."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if host:
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        ca = SERVICE_ACCOUNT_DIR / "ca.crt"
        namespace = SERVICE_ACCOUNT_DIR / "namespace"
        return kopf.ConnectionInfo(
            server=server,
            ca_path=str(ca) if ca.exists() else None,
            token=(SERVICE_ACCOUNT_DIR / "token").read_text().strip() or None,
            default_namespace=namespace.read_text().strip() if namespace.exists() else None,
        )
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    if info is None:
        raise kopf.LoginError("no credentials: not in a pod, and neither KUBECONFIG nor ~/.kube/config exists")
    return info


@dataclass
class _Session:
    """One login: the server, a connection pool with its TLS context, the Authorization header."""

    server: str
    pool: urllib3.PoolManager
    headers: dict[str, str]
    in_cluster: bool
    read_at: float


_session: _Session | None = None
_session_lock = threading.Lock()


def _login() -> _Session:
    info = connection_info()
    pool = urllib3.PoolManager(
        num_pools=2,
        maxsize=POOL_SIZE,
        block=False,
        ssl_context=info.as_ssl_context() if info.server.startswith("https") else None,
        retries=urllib3.Retry(total=3, connect=3, read=0, redirect=0, status=0),
    )
    return _Session(
        server=info.server.rstrip("/"),
        pool=pool,
        headers=info.as_http_headers(),
        in_cluster=bool(os.environ.get("KUBERNETES_SERVICE_HOST")),
        read_at=time.monotonic(),
    )


def session(*, renew: bool = False) -> _Session:
    """The current login (made on first use); ``renew`` reads the credentials again."""
    global _session
    with _session_lock:
        current = _session
        stale = current is not None and current.in_cluster and time.monotonic() - current.read_at > TOKEN_REREAD_SECONDS
        if current is None or renew:
            _session = _login()
        elif stale:
            # A rotated token: the same pool (its TLS context and open connections), a new header.
            current.headers = connection_info().as_http_headers()
            current.read_at = time.monotonic()
        assert _session is not None
        return _session


def request(
    method: str,
    path: str,
    body: Any = None,
    query: list[tuple[str, Any]] | None = None,
    content_type: str | None = None,
    timeout: float = REQUEST_TIMEOUT_SECONDS,
) -> tuple[int, Obj]:
    """Send one request; the status code and the answer as a dict (``{}`` when it is not one).

    Raises :class:`ApiError` for an error answer (after logging in again once on a 401: a rotated
    token) and for no answer at all (status 0). Not counted in the metrics: :func:`call` is.
    """
    headers = {"Accept": "application/json"}
    payload = None
    if body is not None:
        headers["Content-Type"] = content_type or "application/json"
        payload = json.dumps(body).encode()
    url = path if not query else f"{path}?{urllib.parse.urlencode(query)}"
    for attempt in (1, 2):
        current = session(renew=attempt == 2)
        try:
            resp = current.pool.request(
                method,
                current.server + url,
                body=payload,
                headers={**headers, **current.headers},
                timeout=urllib3.Timeout(total=timeout),
                preload_content=True,
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as e:
            raise ApiError(0, f"{type(e).__name__}: {e}") from e
        if resp.status == 401 and attempt == 1:
            continue
        text = resp.data.decode("utf-8", errors="replace") if resp.data else ""
        if resp.status >= 400:
            raise ApiError(resp.status, resp.reason or "", text)
        result = json.loads(text) if text else {}
        return resp.status, result if isinstance(result, dict) else {}
    raise AssertionError("unreachable")  # pragma: no cover


def call(
    method: str,
    path: str,
    body: Any = None,
    query: list[tuple[str, Any]] | None = None,
    content_type: str | None = None,
) -> Obj:
    """:func:`request`, counted in ``kubegym_api_requests_total`` by verb and status code."""
    code = 0
    try:
        code, result = request(method, path, body, query, content_type)
    except ApiError as e:
        code = e.status
        raise
    finally:
        metrics.API_REQUESTS.labels(method, str(code)).inc()
    return result


def get_or_none(path: str) -> Obj | None:
    try:
        return call("GET", path)
    except ApiError as e:
        if e.status == 404:
            return None
        raise


def create_if_absent(path: str, body: Obj) -> Obj:
    """Create the object at the collection path; an existing one is returned unchanged."""
    try:
        return call("POST", path, body)
    except ApiError as e:
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
    except ApiError as e:
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
    except ApiError as e:
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
