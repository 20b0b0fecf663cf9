"""Logging a training run to an MLflow tracking server (``spec.tracking.mlflow``), best effort.

Why REST and not the ``mlflow`` package: the runner image would carry MLflow and its dependency
tree for a handful of HTTP calls, so the runner speaks MLflow's REST API (``/api/2.0/mlflow/...``)
with ``requests``, and puts artifacts through the tracking server's proxied artifact API
(``/api/2.0/mlflow-artifacts/artifacts/<path>``, ``mlflow server --serve-artifacts``).

Why a background thread: a tracking server that is slow, down or never there must not stall or
fail training. SB3's logger hands its scalars (``rollout/``, ``train/``, ``time/``, the runner's
``eval/``) to :class:`Tracker.record`, which only appends them to a bounded queue; the worker
sends them with ``runs/log-batch`` at most once per :data:`LOG_INTERVAL_SECONDS`
(``$KUBEGYM_MLFLOW_LOG_INTERVAL_SECONDS``), so a run sends a few requests a minute however fast
it steps. Every failure is caught: the points wait in the queue (the oldest dropped beyond
:data:`MAX_PENDING_METRICS`), and :meth:`Tracker.status` reports it as
``status.progress.tracking``, which the operator turns into the TrackingAvailable condition.

One MLflow run per TrainingRun, found again by its tag ``kubegym.uid``: a restarted pod (resumed
from a checkpoint) searches for it before creating one, so its metrics continue the same run at
the same steps (SB3 logs at ``num_timesteps``, which a resumed model carries on).

Trials of an Experiment are child runs (tag ``mlflow.parentRunId``) of one parent run tagged with
the Experiment's uid. The trials find or create it themselves; trials starting together may each
create one, so every trial settles on the same one — the oldest (start time, then run id), which
no trial ever deletes — and checks again when it finishes, re-pointing its parent tag; a trial
deletes the parent it created once that is not the oldest. MLflow has no compare-and-set, so this
converges (by the trials' ends) rather than locks. The operator does not create it because it would then need
network access to the tracking server and read access to the credentials Secret, which it has for
no other purpose (it reads no Secret through the API).

The pure parts (request bodies, batching, the filter, the choice of parent) are functions; the
thread takes an injectable clock and the REST client is a small class, so each is tested alone.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

import requests

from kubegym_api.tracking import (
    CREDENTIAL_ENV,
    MAX_TRACKING_MESSAGE,
    MlflowRunConfig,
    RunIdentity,
    TrackingState,
    TrackingStatus,
)
from kubegym_runner.logs import redact
from kubegym_runner.uploads import interval_from_env

if TYPE_CHECKING:
    from stable_baselines3.common.logger import KVWriter

log = logging.getLogger(__name__)

#: Seconds between two rounds of requests to the tracking server (a batch of metrics, or a setup try).
LOG_INTERVAL_SECONDS = 10.0
#: Overrides :data:`LOG_INTERVAL_SECONDS`.
LOG_INTERVAL_ENV = "KUBEGYM_MLFLOW_LOG_INTERVAL_SECONDS"
#: Seconds per request: (connect, read).
REQUEST_TIMEOUT = (3.0, 15.0)
#: Seconds an artifact upload may take.
ARTIFACT_TIMEOUT = (3.0, 120.0)
#: Most metric points kept while the server is away; the oldest go first.
MAX_PENDING_METRICS = 20_000
#: MLflow's limits on one ``runs/log-batch``.
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100
MAX_BATCH_ENTITIES = 1000
#: MLflow's limits on a param's value and key.
MAX_PARAM_VALUE = 6000
MAX_PARAM_KEY = 250
#: Folder of the run's artifacts where the final model goes.
MODEL_ARTIFACT_PATH = "model"
#: Tags every kubegym run carries; ``kubegym.uid`` finds a run again.
UID_TAG = "kubegym.uid"
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"

Clock = Callable[[], float]
Now = Callable[[], datetime]


class TrackingError(Exception):
    """A tracking request failed: no answer, or an error answer (``code`` is MLflow's error code)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


# --- pure parts: bodies and choices -------------------------------------------------------------


#: What a metric name may hold (MLflow's rule); anything else becomes ``_``.
_METRIC_NAME = re.compile(r"[^\w./\- ]")
#: The memory address in a repr (``<function f at 0x7f...>``): it differs in every attempt.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _plain(value: Any) -> Any:
    """A JSON stand-in for what JSON cannot hold: a class or function by its qualified name."""
    name = getattr(value, "__qualname__", None)
    if name is not None:
        return f"{getattr(value, '__module__', '')}.{name}".lstrip(".")
    return _ADDRESS.sub("", str(value))


def stringify(value: Any) -> str:
    """A param value as MLflow keeps it: strings as they are, the rest as compact JSON, classes and
    functions (schedules, activation functions) by name, so every attempt of a run logs the same
    value (MLflow refuses to change a param)."""
    if isinstance(value, str):
        text = value
    elif not isinstance(value, (dict, list, tuple, int, float, bool, type(None))):
        text = str(_plain(value))
    else:
        try:
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=_plain)
        except (TypeError, ValueError):
            text = str(_plain(value))
    return text if len(text) <= MAX_PARAM_VALUE else text[: MAX_PARAM_VALUE - 1] + "…"


def metric_name(key: str) -> str:
    """``key`` as MLflow accepts a metric name (a custom callback may log any string)."""
    return _METRIC_NAME.sub("_", key)[:MAX_PARAM_KEY]


def run_params(
    *, algorithm: str, env_id: str, seed: int, total_timesteps: int, n_envs: int, hyperparameters: Mapping[str, Any]
) -> dict[str, str]:
    """The params of a training run: what it trains, and every hyperparameter it was built with."""
    params = {
        "algorithm": algorithm,
        "env_id": env_id,
        "seed": str(seed),
        "total_timesteps": str(total_timesteps),
        "n_envs": str(n_envs),
    }
    for name, value in sorted(hyperparameters.items()):
        params.setdefault(name[:MAX_PARAM_KEY], stringify(value))
    return params


def identity_tags(identity: RunIdentity) -> dict[str, str]:
    """Tags naming the custom resource an MLflow run stands for."""
    return {
        "kubegym.namespace": identity.namespace,
        "kubegym.name": identity.name,
        UID_TAG: identity.uid,
        "kubegym.kind": identity.kind,
    }


def uid_filter(uid: str) -> str:
    """``runs/search`` filter of the runs tagged with ``uid`` (quotes escaped)."""
    return f"tags.`{UID_TAG}` = '{uid.replace(chr(39), chr(92) + chr(39))}'"


def key_values(items: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in items.items()]


@dataclass(frozen=True)
class Point:
    """One metric point."""

    key: str
    value: float
    step: int
    timestamp_ms: int
    #: Order of recording: what was sent leaves the queue by it, even if older points were dropped meanwhile.
    seq: int = 0

    def body(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "timestamp": self.timestamp_ms, "step": self.step}


def batches(
    run_id: str,
    metrics: Sequence[Point] = (),
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """``runs/log-batch`` bodies carrying everything within MLflow's per-request limits, in order."""
    param_items, tag_items = key_values(params or {}), key_values(tags or {})
    metric_items = [p.body() for p in metrics]
    out: list[dict[str, Any]] = []
    while param_items or tag_items or metric_items:
        ps, param_items = param_items[:MAX_BATCH_PARAMS], param_items[MAX_BATCH_PARAMS:]
        ts, tag_items = tag_items[:MAX_BATCH_TAGS], tag_items[MAX_BATCH_TAGS:]
        room = min(MAX_BATCH_METRICS, MAX_BATCH_ENTITIES - len(ps) - len(ts))
        ms, metric_items = metric_items[:room], metric_items[room:]
        out.append({"run_id": run_id, "metrics": ms, "params": ps, "tags": ts})
    return out


def oldest(runs: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The run every racer agrees on: the oldest by start time, then by run id."""
    found = list(runs)
    if not found:
        return None
    return min(found, key=lambda r: (int(r["info"].get("start_time") or 0), str(r["info"]["run_id"])))


def artifact_url(base: str, artifact_uri: str, path: str) -> str | None:
    """The proxied artifact API URL of ``path`` under a run's ``artifact_uri``
    (``mlflow-artifacts:/<exp>/<run>/artifacts`` or ``mlflow-artifacts://host/...``); ``None``
    for an artifact store the server does not proxy (the runner has no credentials for it)."""
    parts = urlsplit(artifact_uri)
    if parts.scheme != "mlflow-artifacts":
        return None
    root = parts.path.strip("/")
    return f"{base.rstrip('/')}/api/2.0/mlflow-artifacts/artifacts/{quote(root)}/{quote(path)}"


def scalars(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of an SB3 dump (MLflow takes numbers only; NaN and strings are left out)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[key] = number
    return out


def _shorten(text: str, limit: int = MAX_TRACKING_MESSAGE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- the REST client ------------------------------------------------------------------------------


def auth_headers(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Authorization from the credentials Secret's keys (token wins over username/password)."""
    token = environ.get(CREDENTIAL_ENV["token"])
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = environ.get(CREDENTIAL_ENV["username"]), environ.get(CREDENTIAL_ENV["password"])
    if user and password:
        import base64

        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


class Api(Protocol):
    """What :class:`Tracker` calls (:class:`MlflowApi`; tests pass a fake)."""

    def experiment_id(self, name: str) -> str: ...
    def runs_tagged(self, experiment_id: str, uid: str) -> list[dict[str, Any]]: ...
    def create_run(self, experiment_id: str, name: str, tags: Mapping[str, str], start_ms: int) -> dict[str, Any]: ...
    def log_batch(self, body: Mapping[str, Any]) -> None: ...
    def update_run(self, run_id: str, status: str, end_ms: int | None = None) -> None: ...
    def set_tag(self, run_id: str, key: str, value: str) -> None: ...
    def delete_run(self, run_id: str) -> None: ...
    def upload(self, url: str, path: Path) -> None: ...


class MlflowApi:
    """The few MLflow REST calls a run needs. Every error is a :class:`TrackingError`."""

    def __init__(self, base_url: str, headers: Mapping[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(headers or {})

    def call(self, method: str, endpoint: str, body: Mapping[str, Any] | None = None, **params: str) -> dict[str, Any]:
        url = f"{self.base_url}/api/2.0/mlflow/{endpoint}"
        try:
            response = self.session.request(
                method, url, json=body, params=params or None, timeout=REQUEST_TIMEOUT, allow_redirects=False
            )
        except requests.RequestException as e:
            raise TrackingError(f"{method} {endpoint}: {type(e).__name__}: {e}") from e
        return _answer(response, f"{method} {endpoint}")

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created if missing (a concurrent creator is no error)."""
        try:
            return str(self.call("GET", "experiments/get-by-name", experiment_name=name)["experiment"]["experiment_id"])
        except TrackingError as e:
            if e.code != "RESOURCE_DOES_NOT_EXIST":
                raise
        try:
            return str(self.call("POST", "experiments/create", {"name": name})["experiment_id"])
        except TrackingError as e:
            if e.code != "RESOURCE_ALREADY_EXISTS":
                raise
        return str(self.call("GET", "experiments/get-by-name", experiment_name=name)["experiment"]["experiment_id"])

    def runs_tagged(self, experiment_id: str, uid: str) -> list[dict[str, Any]]:
        body = {"experiment_ids": [experiment_id], "filter": uid_filter(uid), "run_view_type": "ACTIVE_ONLY"}
        return list(self.call("POST", "runs/search", {**body, "max_results": 100}).get("runs") or [])

    def create_run(self, experiment_id: str, name: str, tags: Mapping[str, str], start_ms: int) -> dict[str, Any]:
        body = {"experiment_id": experiment_id, "run_name": name, "start_time": start_ms, "tags": key_values(tags)}
        return dict(self.call("POST", "runs/create", body)["run"])

    def log_batch(self, body: Mapping[str, Any]) -> None:
        self.call("POST", "runs/log-batch", body)

    def update_run(self, run_id: str, status: str, end_ms: int | None = None) -> None:
        body: dict[str, Any] = {"run_id": run_id, "status": status}
        if end_ms is not None:
            body["end_time"] = end_ms
        self.call("POST", "runs/update", body)

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.call("POST", "runs/set-tag", {"run_id": run_id, "key": key, "value": value})

    def delete_run(self, run_id: str) -> None:
        self.call("POST", "runs/delete", {"run_id": run_id})

    def upload(self, url: str, path: Path) -> None:
        try:
            with path.open("rb") as data:
                response = self.session.put(url, data=data, timeout=ARTIFACT_TIMEOUT, allow_redirects=False)
        except (requests.RequestException, OSError) as e:
            raise TrackingError(f"PUT artifact {path.name}: {type(e).__name__}: {e}") from e
        _answer(response, f"PUT artifact {path.name}")


def _answer(response: requests.Response, what: str) -> dict[str, Any]:
    try:
        data = response.json() if response.content else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    if response.status_code >= 300:
        code = data.get("error_code")
        detail = data.get("message") or response.text[:200]
        raise TrackingError(f"{what}: HTTP {response.status_code} {code or ''} {detail}".strip(), code)
    return data


# --- the tracker ----------------------------------------------------------------------------------


@dataclass
class Health:
    """Whether the last round of requests got through, since when, and the last error."""

    state: TrackingState = TrackingState.ok
    since: datetime = field(default_factory=lambda: datetime.now(UTC))
    error: str | None = None
    failures: int = 0
    tried: bool = False


class Tracker:
    """One TrainingRun's MLflow run: set up, metrics sent in the background, the end logged.

    ``api``: the REST client; ``interval``: seconds between two rounds of requests; ``clock``:
    monotonic seconds for the rate limit; ``now``: wall time for the status and the points.
    """

    def __init__(
        self,
        config: MlflowRunConfig,
        params: Mapping[str, str],
        api: Api,
        *,
        interval: float = LOG_INTERVAL_SECONDS,
        clock: Clock = time.monotonic,
        now: Now = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.params = dict(params)
        self.api = api
        self.interval = interval
        self.clock = clock
        self.now = now
        self.experiment_id: str | None = None
        self.run_id: str | None = None
        self.artifact_uri: str | None = None
        self.parent_id: str | None = None
        self._created_parent: str | None = None
        self._pending: deque[Point] = deque(maxlen=MAX_PENDING_METRICS)
        self._dropped = 0
        self._seq = 0
        self._lock = threading.Lock()  # guards _pending
        self._busy = threading.Lock()  # one round of requests at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_round: float | None = None
        self.health = Health(since=now().replace(microsecond=0))
        self.requests = 0

    @classmethod
    def for_config(cls, config: MlflowRunConfig, params: Mapping[str, str]) -> Tracker:
        """A tracker with the pod's credentials (env) and the interval from the environment."""
        interval = interval_from_env(LOG_INTERVAL_ENV, LOG_INTERVAL_SECONDS)
        headers = auth_headers()
        if config.credentials and not headers:
            log.warning(
                "spec.tracking.mlflow.credentialsSecretRef gave neither a token nor a username and password "
                "(Secret keys token, or username and password): requests go without credentials"
            )
        return cls(config, params, MlflowApi(config.tracking_uri, headers), interval=interval)

    # --- what training calls (never blocks on the network) ---

    def record(self, metrics: Mapping[str, float], step: int) -> None:
        """Queue metric points at ``step``; the worker sends them."""
        stamp = int(self.now().timestamp() * 1000)
        with self._lock:
            for key, value in metrics.items():
                if len(self._pending) == self._pending.maxlen:
                    self._dropped += 1
                self._seq += 1
                self._pending.append(Point(metric_name(key), value, int(step), stamp, self._seq))

    def output(self) -> KVWriter:
        """An output format for SB3's logger that hands every dump to :meth:`record`."""
        from stable_baselines3.common.logger import KVWriter

        tracker = self

        class MlflowOutput(KVWriter):
            def write(
                self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0
            ) -> None:
                wanted = {k: v for k, v in key_values.items() if "mlflow" not in (key_excluded.get(k) or ())}
                tracker.record(scalars(wanted), step)

            def close(self) -> None:
                pass

        return MlflowOutput()

    def status(self) -> TrackingStatus | None:
        """``status.progress.tracking``; ``None`` before the first round of requests."""
        health = self.health
        if not health.tried:
            return None
        if health.state is TrackingState.ok:
            message = f"logging to MLflow run {self.run_id} of experiment {self.config.experiment_name!r}"
        else:
            message = f"{self.config.tracking_uri}: {health.error or 'requests fail'}"
        with self._lock:
            pending = len(self._pending)
        return TrackingStatus(
            state=health.state,
            since=health.since,
            message=_shorten(redact(message)),
            failed_requests=health.failures,
            pending_metrics=pending,
            experiment_id=self.experiment_id,
            run_id=self.run_id,
        )

    # --- the background worker ---

    def start(self) -> None:
        """Start the worker: the first round at once, then one per interval."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="mlflow", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while not self._stop.is_set():
            self.pump()
            self._stop.wait(self.wait_seconds())

    def wait_seconds(self) -> float:
        """Seconds until the next round is due."""
        if self._last_round is None:
            return 0.0
        return max(0.0, self._last_round + self.interval - self.clock())

    def pump(self, *, force: bool = False) -> bool:
        """One round if it is due (or ``force``): set up the run if needed, else send one batch.
        Returns whether a round ran. Never raises: a failure is recorded in :attr:`health`."""
        if not force and self.wait_seconds() > 0:
            return False
        with self._busy:
            self._last_round = self.clock()
            try:
                if self.run_id is None:
                    self._set_up()
                else:
                    self._send(limit=MAX_BATCH_METRICS)
            except Exception as e:  # noqa: BLE001 - tracking never fails training
                self._failed(e)
                return True
            self._ok()
        return True

    def _ok(self) -> None:
        if self.health.state is not TrackingState.ok:
            log.info("MLflow tracking server %s answers again", self.config.tracking_uri)
            self.health = Health(since=self.now().replace(microsecond=0), tried=True)
        self.health.tried = True
        self.health.failures = 0
        self.health.error = None

    def _failed(self, error: Exception) -> None:
        text = str(error) if isinstance(error, TrackingError) else f"{type(error).__name__}: {error}"
        if self.health.state is not TrackingState.failing:
            log.warning("MLflow tracking fails (training goes on): %s", redact(text))
            self.health = Health(TrackingState.failing, self.now().replace(microsecond=0), text, 0, True)
        self.health.tried = True
        self.health.error = text
        self.health.failures += 1

    # --- requests ---

    def _set_up(self) -> None:
        config, api = self.config, self.api
        experiment_id = api.experiment_id(config.experiment_name)
        self.experiment_id = experiment_id
        if config.parent is not None and self.parent_id is None:
            self.parent_id = self._parent(experiment_id, config.parent)
        tags = identity_tags(config.run)
        if self.parent_id is not None:
            tags[PARENT_TAG] = self.parent_id
        found = oldest(api.runs_tagged(experiment_id, config.run.uid))
        if found is None:
            run = api.create_run(experiment_id, config.run.name, tags, self._ms())
            log.info("MLflow run %s created in experiment %r", run["info"]["run_id"], config.experiment_name)
        else:
            run = dict(found)
            log.info("continuing MLflow run %s of experiment %r", run["info"]["run_id"], config.experiment_name)
            if run["info"].get("status") != "RUNNING":
                api.update_run(run["info"]["run_id"], "RUNNING")
        run_id = str(run["info"]["run_id"])
        logged = {p.get("key") for p in (run.get("data") or {}).get("params") or []}
        params = {k: v for k, v in self.params.items() if k not in logged}  # a param is written once
        for body in batches(run_id, params=params, tags=tags):
            api.log_batch(body)
        self.run_id = run_id
        self.artifact_uri = str(run["info"].get("artifact_uri") or "")

    def _parent(self, experiment_id: str, parent: RunIdentity) -> str:
        """The Experiment's parent run: the oldest tagged with its uid, created if there is none; a
        parent this trial created and that lost the race is deleted."""
        found = oldest(self.api.runs_tagged(experiment_id, parent.uid))
        if found is None:
            created = self.api.create_run(experiment_id, parent.name, identity_tags(parent), self._ms())
            self._created_parent = str(created["info"]["run_id"])
            found = oldest(self.api.runs_tagged(experiment_id, parent.uid)) or created
        chosen = str(found["info"]["run_id"])
        if self._created_parent is not None and self._created_parent != chosen:
            self.api.delete_run(self._created_parent)
            self._created_parent = None
        return chosen

    def _send(self, limit: int | None = None) -> None:
        """Send queued points (at most ``limit``); they leave the queue only once sent."""
        assert self.run_id is not None
        with self._lock:
            points = list(self._pending)[: limit or None]
        if not points:
            return
        try:
            for body in batches(self.run_id, points):
                self.api.log_batch(body)
        except TrackingError as e:
            if e.code != "INVALID_PARAMETER_VALUE":
                raise
            # Refused for what it holds, not for want of an answer: sending it again would fail the
            # same way and hold up every later point, so it is dropped (and the error reported).
            log.warning("MLflow refused %d metric points, dropped: %s", len(points), e)
            self._forget(points[-1].seq)
            raise
        self._forget(points[-1].seq)

    def _forget(self, last: int) -> None:
        """Take the points up to sequence number ``last`` off the queue."""
        with self._lock:
            while self._pending and self._pending[0].seq <= last:
                self._pending.popleft()

    def _ms(self) -> int:
        return int(self.now().timestamp() * 1000)

    # --- the end ---

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the worker (waiting at most ``timeout`` for a round in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def finish(
        self,
        status: str | None,
        *,
        metrics: Mapping[str, float] | None = None,
        step: int = 0,
        artifacts: Mapping[str, Path] | None = None,
        timeout: float = 60.0,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> bool:
        """The end of this attempt: stop the worker, send what is queued (and ``metrics`` at ``step``),
        put ``artifacts`` under ``model/`` and set the run's ``status`` (FINISHED, FAILED; ``None``:
        leave it RUNNING, the run resumes). Bounded by ``timeout``, and cut short between two requests
        once ``should_stop`` says so (SIGTERM: the pod's grace period is short); returns whether all
        of it got through; never raises."""
        deadline = self.clock() + timeout
        self.stop(min(timeout, REQUEST_TIMEOUT[0] + REQUEST_TIMEOUT[1]))
        if metrics:
            self.record(metrics, step)
        if not self._busy.acquire(timeout=max(0.0, deadline - self.clock())):
            return False
        try:
            if self.run_id is None:
                self._set_up()
            while self._pending and self.clock() < deadline and not should_stop():
                self._send(limit=MAX_BATCH_METRICS)
            for name, path in (artifacts or {}).items():
                if self.clock() >= deadline or should_stop():
                    raise TrackingError(f"no time left to upload {name}")
                self._upload(name, path)
            if self.parent_id is not None and self.config.parent is not None:
                self._check_parent()
            if status and self.run_id is not None:
                self.api.update_run(self.run_id, status, self._ms())
        except Exception as e:  # noqa: BLE001 - tracking never fails training
            self._failed(e)
            return False
        finally:
            self._busy.release()
        self._ok()
        return not self._pending

    def _upload(self, name: str, path: Path) -> None:
        url = artifact_url(self.config.tracking_uri, self.artifact_uri or "", f"{MODEL_ARTIFACT_PATH}/{name}")
        if url is None:
            log.warning(
                "MLflow run %s stores artifacts at %s, which the server does not proxy (mlflow server "
                "--serve-artifacts): the model is not logged there (it is in the run's S3 folder)",
                self.run_id,
                self.artifact_uri,
            )
            return
        self.api.upload(url, path)

    def _check_parent(self) -> None:
        """Settle on the parent every trial agrees on by now (another trial may have won a race)."""
        assert self.config.parent is not None and self.experiment_id is not None and self.run_id is not None
        found = oldest(self.api.runs_tagged(self.experiment_id, self.config.parent.uid))
        if found is None:
            return
        chosen = str(found["info"]["run_id"])
        if chosen != self.parent_id:
            self.parent_id = chosen
            self.api.set_tag(self.run_id, PARENT_TAG, chosen)
        if self._created_parent is not None and self._created_parent != chosen:
            # This trial's parent looked oldest when it was created; a racer's turned out older
            # (pod clocks differ). The trials on it re-point as they end, as this one just did.
            self.api.delete_run(self._created_parent)
            self._created_parent = None
