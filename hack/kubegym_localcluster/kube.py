"""A small JSON client for the Kubernetes API, used by the local node and the cluster scripts.

The node agent talks to the API server the way a kubelet does: with its own client
certificate, plain JSON, and long-running watches. The official client's typed models
add nothing here, so this stays a thin layer over urllib3.
"""

from __future__ import annotations

import json
import ssl
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml

Obj = dict[str, Any]


class ApiError(Exception):
    """A non-2xx answer of the API server."""

    def __init__(self, status: int, body: str, method: str, path: str) -> None:
        self.status = status
        self.body = body
        try:
            self.reason = str(json.loads(body).get("reason", ""))
            self.text = str(json.loads(body).get("message", body))
        except ValueError:
            self.reason, self.text = "", body
        super().__init__(f"{method} {path}: {status} {self.text}")


@dataclass(frozen=True)
class Credentials:
    server: str
    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | Path) -> Credentials:
        """Reads the current context of a kubeconfig written by this package (file references)."""
        cfg = yaml.safe_load(Path(path).read_text())
        ctx_name = cfg["current-context"]
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        return cls(
            server=cluster["server"],
            ca_file=cluster["certificate-authority"],
            cert_file=user.get("client-certificate"),
            key_file=user.get("client-key"),
            token=user.get("token"),
        )


class Kube:
    """Blocking JSON client; thread-safe (urllib3 pools are)."""

    def __init__(self, creds: Credentials, timeout: float = 30.0) -> None:
        ctx = ssl.create_default_context(cafile=creds.ca_file)
        if creds.cert_file and creds.key_file:
            ctx.load_cert_chain(creds.cert_file, creds.key_file)
        self.server = creds.server.rstrip("/")
        self._headers = {"Accept": "application/json"}
        if creds.token:
            self._headers["Authorization"] = f"Bearer {creds.token}"
        self._http = urllib3.PoolManager(ssl_context=ctx, maxsize=8, retries=False)
        self._timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        url = self._url(path, params)
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        resp = self._http.request(method, url, body=data, headers=headers, timeout=self._timeout, preload_content=True)
        text = resp.data.decode("utf-8", "replace")
        if resp.status >= 300:
            raise ApiError(resp.status, text, method, path)
        return json.loads(text) if text else {}

    def raw(self, path: str, **params: Any) -> str:
        """GET of a non-JSON endpoint (/readyz, logs)."""
        resp = self._http.request("GET", self._url(path, params or None), headers=self._headers, timeout=self._timeout)
        text = resp.data.decode("utf-8", "replace")
        if resp.status >= 300:
            raise ApiError(resp.status, text, "GET", path)
        return text

    def get(self, path: str, **params: Any) -> Obj:
        return self.request("GET", path, params=params or None)

    def create(self, path: str, body: Obj) -> Obj:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, body: Obj) -> Obj:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def strategic_patch(self, path: str, body: Obj) -> Obj:
        return self.request("PATCH", path, body, content_type="application/strategic-merge-patch+json")

    def delete(self, path: str, body: Obj | None = None) -> Obj:
        return self.request("DELETE", path, body)

    def apply(self, path: str, body: Obj, manager: str) -> Obj:
        """Server-side apply (create or update) of one object at its own path."""
        return self.request(
            "PATCH",
            path,
            body,
            params={"fieldManager": manager, "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    def watch(self, path: str, timeout_seconds: int = 300, **params: Any) -> Iterator[Obj]:
        """Yields watch events until the server closes the stream."""
        params = {**params, "watch": "true", "timeoutSeconds": timeout_seconds}
        resp = self._http.request(
            "GET",
            self._url(path, params),
            headers=self._headers,
            preload_content=False,
            timeout=urllib3.Timeout(connect=10, read=timeout_seconds + 30),
        )
        try:
            if resp.status >= 300:
                raise ApiError(resp.status, resp.read().decode(), "WATCH", path)
            buf = b""
            for chunk in resp.stream(65536):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            resp.release_conn()

    def _url(self, path: str, params: dict[str, Any] | None) -> str:
        url = self.server + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        return url
