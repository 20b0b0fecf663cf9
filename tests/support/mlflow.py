"""A real MLflow tracking server for tests: ``mlflow server`` from its own venv under $KUBEGYM_CACHE
(``hack/build-components.sh mlflow``, pinned in hack/versions.env) on a free loopback port, with a
SQLite backend store and proxied artifacts (``--serve-artifacts``) in a temp folder, and a few REST
helpers that read what runs logged (the tests ask the server itself, never the runner)."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kubegym_localcluster import layout
from tests.support.wait import wait_until


def binary() -> Path:
    version = layout.versions()["MLFLOW_VERSION"]
    return layout.cache_dir() / f"mlflow-{version}" / "bin" / "mlflow"


class MlflowServer:
    def __init__(self, workdir: Path) -> None:
        self.binary = binary()
        if not self.binary.exists():
            pytest.fail(
                f"{self.binary} is missing: run `make components` (hack/build-components.sh mlflow installs "
                "the pinned mlflow into its own venv)"
            )
        self.workdir = workdir
        self.port = layout.free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "mlflow.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(self.binary),
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                    "--backend-store-uri",
                    f"sqlite:///{self.workdir / 'mlflow.db'}",
                    "--serve-artifacts",
                    "--artifacts-destination",
                    str(self.workdir / "artifacts"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        wait_until(self._ready, 180, "the MLflow server to be ready", interval=1, describe=self.tail)

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"mlflow server exited with {self.proc.returncode}:\n{self.tail()}")
        with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
            return bool(resp.status == 200)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    # --- REST reads ---

    def get(self, endpoint: str, **params: str) -> dict[str, Any]:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/2.0/mlflow/{endpoint}?{query}", timeout=10) as resp:
            data: dict[str, Any] = json.loads(resp.read() or b"{}")
            return data

    def post(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/api/2.0/mlflow/{endpoint}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            data: dict[str, Any] = json.loads(resp.read() or b"{}")
            return data

    def experiment_id(self, name: str) -> str:
        return str(self.get("experiments/get-by-name", experiment_name=name)["experiment"]["experiment_id"])

    def runs(self, experiment: str, filter_string: str = "") -> list[dict[str, Any]]:
        """The active runs of experiment ``experiment`` (by name) matching ``filter_string``."""
        body = {"experiment_ids": [self.experiment_id(experiment)], "filter": filter_string, "max_results": 100}
        return list(self.post("runs/search", body).get("runs") or [])

    def history(self, run_id: str, key: str) -> list[dict[str, Any]]:
        """The points of metric ``key``, in step order (then time)."""
        points = list(self.get("metrics/get-history", run_id=run_id, metric_key=key).get("metrics") or [])
        return sorted(points, key=lambda p: (int(p["step"]), int(p["timestamp"])))

    def artifacts(self, run_id: str, path: str) -> list[str]:
        return [f["path"] for f in self.get("artifacts/list", run_id=run_id, path=path).get("files") or []]


def tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags") or []}


def params(run: dict[str, Any]) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params") or []}
