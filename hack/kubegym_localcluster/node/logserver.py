"""The kubelet API's log endpoint, so that ``kubectl logs`` reaches the local node's files.

The API server calls ``GET /containerLogs/<ns>/<pod>/<container>`` on the node's
kubelet port with its kubelet-client certificate; only clients with a certificate of
the cluster CA get an answer.
"""

from __future__ import annotations

import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agent import NodeAgent


def tail_lines(data: bytes, n: int) -> bytes:
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-n:]) if n >= 0 else data


class LogServer(threading.Thread):
    def __init__(self, agent: NodeAgent, pki: Path, port: int) -> None:
        super().__init__(name="kubelet-logs", daemon=True)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_cert_chain(str(pki / "kubelet.crt"), str(pki / "kubelet.key"))
        handler = _make_handler(agent)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)

    def run(self) -> None:
        self.httpd.serve_forever()


def _make_handler(agent: NodeAgent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def do_GET(self) -> None:
            url = urllib.parse.urlparse(self.path)
            parts = url.path.strip("/").split("/")
            q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
            if parts == ["healthz"]:
                return self._send(200, b"ok")
            if len(parts) != 4 or parts[0] != "containerLogs":
                return self._send(404, b"not found")
            _, ns, pod, container = parts
            worker = agent.worker_for(ns, pod)
            if worker is None:
                return self._send(404, f"pod {ns}/{pod} is not on this node".encode())
            f = worker.log_file(container, previous=q.get("previous") == "true")
            if f is None or not f.exists():
                return self._send(400, f'previous terminated container "{container}" in pod "{pod}" not found'.encode())
            data = f.read_bytes()
            if "tailLines" in q:
                data = tail_lines(data, int(q["tailLines"]))
            if "limitBytes" in q:
                data = data[: int(q["limitBytes"])]
            if q.get("follow") != "true":
                return self._send(200, data)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            pos = f.stat().st_size
            self._chunk(data)
            while True:
                with open(f, "rb") as fh:
                    fh.seek(pos)
                    new = fh.read()
                if new:
                    pos += len(new)
                    self._chunk(new)
                elif not worker.container_running(container):
                    break
                time.sleep(0.2)
            self.wfile.write(b"0\r\n\r\n")

        def _chunk(self, data: bytes) -> None:
            if data:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        def _send(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
