"""The operator's HTTP client (:mod:`kubegym_operator.kubeapi`) against a real HTTP server on
localhost: how it logs in (a kubeconfig, or a pod's ServiceAccount), what it sends, how it reads
errors, the 401 that makes it read its credentials again, and the metrics it counts.

The server is the standard library's, in a thread; it answers what each test scripts and records
every request it got, so the assertions are about bytes on the wire, not about mocks.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from kubegym_operator import kubeapi, metrics
from kubegym_operator.apierrors import ApiError


@dataclass
class Seen:
    """One request the server got."""

    method: str
    path: str
    headers: dict[str, str]
    body: object


@dataclass
class Server:
    """A scripted API server: ``answer(seen)`` gives (status, body) for each request."""

    answer: Callable[[Seen], tuple[int, object]]
    seen: list[Seen] = field(default_factory=list)
    port: int = 0


@pytest.fixture
def server() -> Iterator[Server]:
    scripted = Server(answer=lambda seen: (200, {}))

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            seen = Seen(self.command, self.path, dict(self.headers.items()), json.loads(raw) if raw else None)
            scripted.seen.append(seen)
            status, body = scripted.answer(seen)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve  # noqa: N815 - http.server's names

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scripted.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield scripted
    httpd.shutdown()
    httpd.server_close()


def write_kubeconfig(path: Path, server: str, token: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": "ns"}}],
                "clusters": [{"name": "test", "cluster": {"server": server}}],
                "users": [{"name": "test", "user": {"token": token}}],
            }
        )
    )
    return path


@pytest.fixture
def logged_in(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The client logs in with a kubeconfig naming the test server and the token ``first``."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    config = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{server.port}", "first")
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.setattr(kubeapi, "_session", None)
    return config


def counted(method: str, code: str) -> float:
    return metrics.REGISTRY.get_sample_value("kubegym_api_requests_total", {"verb": method, "code": code}) or 0.0


def test_a_call_sends_json_with_the_token_and_returns_the_answer(server: Server, logged_in: Path) -> None:
    server.answer = lambda seen: (201, {"kind": "Job", "metadata": {"name": "j"}})
    before = counted("POST", "201")
    answer = kubeapi.call("POST", "/apis/batch/v1/namespaces/a/jobs", {"kind": "Job"})
    assert answer == {"kind": "Job", "metadata": {"name": "j"}}
    (seen,) = server.seen
    assert (seen.method, seen.path, seen.body) == ("POST", "/apis/batch/v1/namespaces/a/jobs", {"kind": "Job"})
    assert seen.headers["Authorization"] == "Bearer first"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Accept"] == "application/json"
    assert counted("POST", "201") == before + 1


def test_patches_carry_their_content_type_and_queries_are_encoded(server: Server, logged_in: Path) -> None:
    kubeapi.merge_patch("/apis/kubegym.io/v1alpha1/namespaces/a/trainingruns/r", {"spec": {"suspend": True}})
    kubeapi.json_patch("/apis/kubegym.io/v1alpha1/namespaces/a/trainingruns/r", [{"op": "remove", "path": "/x"}])
    server.answer = lambda seen: (200, {"items": [{"metadata": {"name": "p"}}]})
    items = kubeapi.list_items("/api/v1/namespaces/a/pods", "app in (a,b),kubegym.io/run=r")
    merge, patch, listing = server.seen
    assert merge.headers["Content-Type"] == "application/merge-patch+json"
    assert patch.headers["Content-Type"] == "application/json-patch+json"
    assert listing.path == "/api/v1/namespaces/a/pods?labelSelector=app+in+%28a%2Cb%29%2Ckubegym.io%2Frun%3Dr"
    assert items == [{"metadata": {"name": "p"}}]


def test_an_error_answer_raises_api_error_with_the_status_body(server: Server, logged_in: Path) -> None:
    status = {"kind": "Status", "status": "Failure", "reason": "AlreadyExists", "code": 409}
    server.answer = lambda seen: (409, status)
    before = counted("POST", "409")
    with pytest.raises(ApiError) as raised:
        kubeapi.call("POST", "/api/v1/namespaces/a/secrets", {"kind": "Secret"})
    assert raised.value.status == 409
    assert json.loads(raised.value.body) == status
    assert counted("POST", "409") == before + 1


def test_the_helpers_read_404_and_409_as_the_api_means_them(server: Server, logged_in: Path) -> None:
    def answer(seen: Seen) -> tuple[int, object]:
        if seen.method == "POST":
            return 409, {"kind": "Status", "code": 409}
        if seen.path.endswith("/there"):
            return 200, {"metadata": {"name": "there"}}
        return 404, {"kind": "Status", "code": 404}

    server.answer = answer
    assert kubeapi.get_or_none("/api/v1/namespaces/a/serviceaccounts/gone") is None
    assert kubeapi.delete("/api/v1/namespaces/a/serviceaccounts/gone") is None
    assert kubeapi.create_if_absent("/api/v1/namespaces/a/serviceaccounts", {"metadata": {"name": "there"}}) == {
        "metadata": {"name": "there"}
    }
    deletion = next(s for s in server.seen if s.method == "DELETE")
    assert deletion.body == {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}


def test_a_401_reads_the_credentials_again_and_retries_once(server: Server, logged_in: Path, tmp_path: Path) -> None:
    server.answer = lambda seen: (200, {"who": seen.headers["Authorization"]})
    assert kubeapi.call("GET", "/version") == {"who": "Bearer first"}
    # The token is rotated: the server now refuses the old one.
    write_kubeconfig(logged_in, f"http://127.0.0.1:{server.port}", "second")
    server.answer = lambda seen: (
        (200, {"who": seen.headers["Authorization"]})
        if seen.headers["Authorization"] == "Bearer second"
        else (401, {"kind": "Status", "code": 401})
    )
    assert kubeapi.call("GET", "/version") == {"who": "Bearer second"}
    assert [s.headers["Authorization"] for s in server.seen] == ["Bearer first", "Bearer first", "Bearer second"]
    # A credential that stays refused is an error after the one retry, not a loop.
    server.answer = lambda seen: (401, {"kind": "Status", "code": 401})
    with pytest.raises(ApiError) as raised:
        kubeapi.call("GET", "/version")
    assert raised.value.status == 401
    assert len(server.seen) == 5


def test_no_answer_is_an_api_error_with_status_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{port}", "t")))
    monkeypatch.setattr(kubeapi, "_session", None)
    before = counted("GET", "0")
    with pytest.raises(ApiError) as raised:
        kubeapi.call("GET", "/version")
    assert raised.value.status == 0 and "Connection" in raised.value.reason
    assert counted("GET", "0") == before + 1


def test_in_a_pod_it_uses_the_service_account_and_the_service_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "namespace").write_text("kubegym-system")
    (tmp_path / "ca.crt").write_text("not read here")
    monkeypatch.setattr(kubeapi, "SERVICE_ACCOUNT_DIR", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    info = kubeapi.connection_info()
    assert info.server == "https://10.0.0.1:6443"
    assert info.token == "sa-token" and info.default_namespace == "kubegym-system"
    assert info.ca_path == str(tmp_path / "ca.crt")
    assert info.as_http_headers() == {"Authorization": "Bearer sa-token"}
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    assert kubeapi.connection_info().server == "https://[fd00::1]:6443"


def test_without_any_credentials_the_login_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kopf

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(kopf.LoginError, match="no credentials"):
        kubeapi.connection_info()


def test_the_operator_process_never_loads_the_kubernetes_client() -> None:
    """Its entry point keeps the library out even where it is installed (as in this environment)."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from kubegym_operator import entrypoint\n"
        "try:\n"
        "    entrypoint.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "import kubegym_operator.handlers\n"
        "assert 'kopf' in sys.modules\n"
        "print(sorted(m for m in sys.modules if m.startswith('kubernetes') and sys.modules[m] is not None))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
