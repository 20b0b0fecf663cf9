"""A real Prometheus for tests: Debian's ``/usr/bin/prometheus`` on a free loopback port, a temp
config and TSDB, and a few HTTP API helpers.

It scrapes the operator the way the chart's ServiceMonitor would (same job name, path and
``honorLabels``, the target's ``namespace`` label) and evaluates the chart's PrometheusRule.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubegym_localcluster import layout
from tests.support.wait import wait_until

BINARY = Path("/usr/bin/prometheus")
SCRAPE_INTERVAL = 1.0


class Prometheus:
    def __init__(self, workdir: Path, scrape: dict[str, Any], rules: dict[str, Any]) -> None:
        if not BINARY.exists():
            pytest.fail(f"{BINARY} is missing: run `make deps` (Debian package prometheus, hack/install-deps.sh)")
        self.workdir = workdir
        self.port = layout.free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "rules.yaml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(workdir / "rules.yaml")],
            "scrape_configs": [scrape],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(BINARY),
                    f"--config.file={self.workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._ready, 60, "Prometheus to be ready", describe=self.tail)

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"Prometheus exited with {self.proc.returncode}:\n{self.tail()}")
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=30) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus API {path} {params}: {body}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query: the result as a list of {metric, value} (a scalar becomes one item)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def finite(self, expr: str) -> list[dict[str, Any]]:
        """The series of ``expr`` with a finite value (NaN from an empty rate is no data)."""
        return [r for r in self.query(expr) if math.isfinite(float(r["value"][1]))]

    def alerts(self, name: str, state: str = "firing") -> list[dict[str, str]]:
        """Labels of the active alerts called ``name`` in ``state``."""
        return [
            a["labels"]
            for a in self.api("alerts")["alerts"]
            if a["labels"].get("alertname") == name and a["state"] == state
        ]

    def last_scrape(self) -> float:
        """Unix time of the latest scrape of the (single) target."""
        (target,) = self.api("targets", state="active")["activeTargets"]
        return rfc3339(str(target["lastScrape"]))


def rfc3339(stamp: str) -> float:
    """Go's RFC 3339 timestamps carry nanoseconds; datetime takes microseconds."""
    match = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {stamp}")
    head, frac, zone = match.groups()
    moment = datetime.fromisoformat(f"{head}.{(frac or '0')[:6]:0<6}{'+00:00' if zone == 'Z' else zone}")
    return moment.timestamp()


def wait_for_scrape_after(prom: Prometheus, moment: float, timeout: float = 10) -> float:
    """Waits until Prometheus scraped the target after ``moment``; returns that scrape's time."""
    return wait_until(
        lambda: (t := prom.last_scrape()) > moment and t, timeout, "a scrape after the change", interval=0.1
    )
