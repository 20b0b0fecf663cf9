"""The runner's MLflow logging without a server: the REST bodies, batching within MLflow's limits, the
rate limit under an injectable clock, one run per TrainingRun found again by uid, the parent run of an
Experiment's trials, and failures that never escape (they become ``status.progress.tracking``). The
real server is exercised by tests/integration/researcher/test_mlflow.py."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kubegym_api.tracking import MlflowRunConfig, RunIdentity
from kubegym_runner import tracking
from kubegym_runner.tracking import (
    MAX_PARAM_VALUE,
    Point,
    Tracker,
    TrackingError,
    artifact_url,
    auth_headers,
    batches,
    oldest,
    run_params,
    scalars,
    stringify,
    uid_filter,
)

RUN = RunIdentity(kind="TrainingRun", namespace="research", name="cartpole", uid="uid-run")
EXPERIMENT = RunIdentity(kind="Experiment", namespace="research", name="study", uid="uid-exp")


def config(parent: RunIdentity | None = None) -> MlflowRunConfig:
    return MlflowRunConfig(
        tracking_uri="http://mlflow:5000", experiment_name="research/cartpole", run=RUN, parent=parent
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("MlpPolicy", "MlpPolicy"),
        (0.0003, "0.0003"),
        (64, "64"),
        (True, "true"),
        ({"net_arch": [64, 64]}, '{"net_arch":[64,64]}'),
        (None, "null"),
        (Path, "pathlib.Path"),  # a class by name
        ({"activation_fn": Path}, '{"activation_fn":"pathlib.Path"}'),
        (stringify, "kubegym_runner.tracking.stringify"),  # a schedule: the same in every attempt
        (object(), "<object object>"),  # no address: it would differ in every attempt
    ],
)
def test_param_values_are_strings(value: Any, text: str) -> None:
    assert stringify(value) == text


@pytest.mark.parametrize(
    ("key", "name"),
    [("rollout/ep_rew_mean", "rollout/ep_rew_mean"), ("custom/loss (x)", "custom/loss _x_"), ("a:b", "a_b")],
)
def test_metric_names_are_what_mlflow_accepts(key: str, name: str) -> None:
    assert tracking.metric_name(key) == name


def test_a_long_param_value_is_cut_to_mlflows_limit() -> None:
    long = stringify("x" * 10_000)
    assert len(long) == MAX_PARAM_VALUE and long.endswith("…")


def test_run_params_name_what_trains_and_every_hyperparameter() -> None:
    got = run_params(
        algorithm="PPO",
        env_id="CartPole-v1",
        seed=3,
        total_timesteps=4096,
        n_envs=2,
        hyperparameters={"gamma": 0.98, "policy": "MlpPolicy", "seed": 99},
    )
    assert got == {
        "algorithm": "PPO",
        "env_id": "CartPole-v1",
        "seed": "3",  # the run's, never shadowed by a hyperparameter of the same name
        "total_timesteps": "4096",
        "n_envs": "2",
        "gamma": "0.98",
        "policy": "MlpPolicy",
    }


@pytest.mark.parametrize(
    ("metrics", "params", "tags", "shapes"),
    [
        (0, 0, 0, []),
        (3, 2, 1, [(3, 2, 1)]),
        (2500, 0, 0, [(1000, 0, 0), (1000, 0, 0), (500, 0, 0)]),
        (1000, 150, 4, [(896, 100, 4), (104, 50, 0)]),  # 1000 entities a request in all
        (0, 250, 0, [(0, 100, 0), (0, 100, 0), (0, 50, 0)]),
    ],
)
def test_log_batch_bodies_respect_mlflows_limits(
    metrics: int, params: int, tags: int, shapes: list[tuple[int, int, int]]
) -> None:
    points = [Point("m", float(i), i, 1000 + i) for i in range(metrics)]
    bodies = batches("run-1", points, {f"p{i}": "v" for i in range(params)}, {f"t{i}": "v" for i in range(tags)})
    assert [(len(b["metrics"]), len(b["params"]), len(b["tags"])) for b in bodies] == shapes
    assert all(b["run_id"] == "run-1" for b in bodies)
    sent = [m for b in bodies for m in b["metrics"]]
    assert [m["step"] for m in sent] == list(range(metrics))  # in order, none lost
    if sent:
        assert sent[0] == {"key": "m", "value": 0.0, "timestamp": 1000, "step": 0}


def test_the_uid_filter_quotes_the_tag_name_and_escapes_the_value() -> None:
    assert uid_filter("abc") == "tags.`kubegym.uid` = 'abc'"
    assert uid_filter("a'b") == "tags.`kubegym.uid` = 'a\\'b'"


def test_every_racer_agrees_on_the_oldest_run() -> None:
    runs = [
        {"info": {"run_id": "b", "start_time": 5}},
        {"info": {"run_id": "c", "start_time": 4}},
        {"info": {"run_id": "a", "start_time": 4}},
    ]
    assert oldest(runs) == runs[2] and oldest(reversed(runs)) == runs[2] and oldest([]) is None


@pytest.mark.parametrize(
    ("uri", "url"),
    [
        (
            "mlflow-artifacts:/1/abc/artifacts",
            "http://m:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/model.zip",
        ),
        (
            "mlflow-artifacts://m:5000/1/abc/artifacts",
            "http://m:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/model.zip",
        ),
        ("s3://bucket/1/abc/artifacts", None),  # not proxied: the runner has no credentials for it
        ("", None),
    ],
)
def test_artifacts_go_through_the_proxied_artifact_api(uri: str, url: str | None) -> None:
    assert artifact_url("http://m:5000/", uri, "model/model.zip") == url


def test_only_finite_numbers_are_metrics() -> None:
    assert scalars({"a": 1, "b": 2.5, "c": float("nan"), "d": "text", "e": True, "f": float("inf")}) == {
        "a": 1.0,
        "b": 2.5,
    }


@pytest.mark.parametrize(
    ("env", "header"),
    [
        ({}, None),
        ({"MLFLOW_TRACKING_TOKEN": "t0k"}, "Bearer t0k"),
        ({"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"}, "Basic dTpw"),
        ({"MLFLOW_TRACKING_USERNAME": "u"}, None),  # a username alone is no credential
        ({"MLFLOW_TRACKING_TOKEN": "t", "MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"}, "Bearer t"),
    ],
)
def test_credentials_come_from_the_secrets_keys(env: dict[str, str], header: str | None) -> None:
    assert auth_headers(env).get("Authorization") == header


# --- the tracker, against a fake REST API ----------------------------------------------------------


class FakeApi:
    """MLflow's state as far as the tracker sees it; ``down`` makes every call fail."""

    def __init__(self) -> None:
        self.down = False
        self.calls: list[str] = []
        self.runs: dict[str, dict[str, Any]] = {}
        self.batches: list[Mapping[str, Any]] = []
        self.uploads: list[str] = []
        self.deleted: list[str] = []
        self.tags: dict[tuple[str, str], str] = {}
        self._next = 0

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if self.down:
            raise TrackingError(f"{what}: ConnectionError: refused")

    def experiment_id(self, name: str) -> str:
        self._call("experiment")
        return "7"

    def runs_tagged(self, experiment_id: str, uid: str) -> list[dict[str, Any]]:
        self._call("search")
        return [r for r in self.runs.values() if r["uid"] == uid and r["info"]["run_id"] not in self.deleted]

    def create_run(self, experiment_id: str, name: str, tags: Mapping[str, str], start_ms: int) -> dict[str, Any]:
        self._call("create")
        self._next += 1
        run_id = f"r{self._next}"
        run = {
            "uid": tags["kubegym.uid"],
            "tags": dict(tags),
            "info": {
                "run_id": run_id,
                "start_time": start_ms,
                "status": "RUNNING",
                "artifact_uri": f"mlflow-artifacts:/7/{run_id}/artifacts",
            },
        }
        self.runs[run_id] = run
        return run

    def log_batch(self, body: Mapping[str, Any]) -> None:
        self._call("log-batch")
        if any(m["key"] == "refused" for m in body["metrics"]):
            raise TrackingError("log-batch: HTTP 400 INVALID_PARAMETER_VALUE", "INVALID_PARAMETER_VALUE")
        self.batches.append(body)
        data = self.runs[body["run_id"]].setdefault("data", {"params": []})
        data["params"].extend(body["params"])

    def update_run(self, run_id: str, status: str, end_ms: int | None = None) -> None:
        self._call(f"update {status}")
        self.runs[run_id]["info"]["status"] = status

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self._call("set-tag")
        self.tags[(run_id, key)] = value

    def delete_run(self, run_id: str) -> None:
        self._call("delete")
        self.deleted.append(run_id)

    def upload(self, url: str, path: Path) -> None:
        self._call("upload")
        self.uploads.append(url)

    def points(self) -> list[tuple[str, float, int]]:
        return [(m["key"], m["value"], m["step"]) for b in self.batches for m in b["metrics"]]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(api: FakeApi, clock: Clock, parent: RunIdentity | None = None, interval: float = 10.0) -> Tracker:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Tracker(
        config(parent),
        {"algorithm": "PPO"},
        api,
        interval=interval,
        clock=clock,
        now=lambda: now,
    )


def test_the_first_round_sets_up_the_run_and_later_ones_send_metrics_at_most_once_per_interval() -> None:
    api, clock = FakeApi(), Clock()
    t = make(api, clock)
    assert t.status() is None  # nothing tried yet: no condition either
    t.record({"rollout/ep_rew_mean": 10.0}, 2048)
    assert t.pump()
    assert api.calls == ["experiment", "search", "create", "log-batch"]
    assert api.batches[0]["params"] == [{"key": "algorithm", "value": "PPO"}]
    assert {t["key"]: t["value"] for t in api.batches[0]["tags"]} == {
        "kubegym.namespace": "research",
        "kubegym.name": "cartpole",
        "kubegym.uid": "uid-run",
        "kubegym.kind": "TrainingRun",
    }
    t.record({"rollout/ep_rew_mean": 20.0, "time/fps": 500.0}, 4096)
    clock.t += 9.9
    assert not t.pump()  # rate limited: nothing sent
    assert t.wait_seconds() == pytest.approx(0.1)
    clock.t += 0.1
    assert t.pump()
    assert api.points() == [
        ("rollout/ep_rew_mean", 10.0, 2048),
        ("rollout/ep_rew_mean", 20.0, 4096),
        ("time/fps", 500.0, 4096),
    ]
    status = t.status()
    assert status is not None and status.state == "ok" and status.run_id == "r1" and status.pending_metrics == 0


def test_a_restarted_attempt_continues_the_run_of_its_uid() -> None:
    api, clock = FakeApi(), Clock()
    first = make(api, clock)
    first.pump()
    first.finish("FAILED")
    assert api.runs["r1"]["info"]["status"] == "FAILED"
    second = make(api, clock)
    second.pump()
    assert second.run_id == "r1" and list(api.runs) == ["r1"]  # found by uid, not created again
    assert api.runs["r1"]["info"]["status"] == "RUNNING"  # reopened
    assert api.batches[-1]["params"] == []  # logged by the first attempt: MLflow writes a param once


def test_points_mlflow_refuses_are_dropped_so_later_ones_get_through() -> None:
    api, clock = FakeApi(), Clock()
    t = make(api, clock)
    t.pump()
    t.record({"refused": 1.0}, 1)
    clock.t += 10
    t.pump()
    assert t.status().state == "failing" and not t._pending  # type: ignore[union-attr]
    t.record({"m": 2.0}, 2)
    clock.t += 10
    t.pump()
    assert t.status().state == "ok" and api.points() == [("m", 2.0, 2)]  # type: ignore[union-attr]


def test_an_unreachable_server_fails_nothing_and_keeps_the_points_until_it_answers() -> None:
    api, clock = FakeApi(), Clock()
    api.down = True
    t = make(api, clock)
    t.record({"rollout/ep_rew_mean": 1.0}, 10)
    assert t.pump()  # no exception
    status = t.status()
    assert status is not None and status.state == "failing" and status.failed_requests == 1
    assert "http://mlflow:5000" in status.message and "refused" in status.message
    assert status.pending_metrics == 1
    clock.t += 10
    t.pump()
    assert t.status().failed_requests == 2  # type: ignore[union-attr]
    api.down = False
    clock.t += 10
    t.pump()  # set up
    clock.t += 10
    t.pump()  # and the waiting point
    status = t.status()
    assert status is not None and status.state == "ok" and status.failed_requests == 0
    assert api.points() == [("rollout/ep_rew_mean", 1.0, 10)]


def test_the_end_sends_everything_uploads_the_model_and_sets_the_status(tmp_path: Path) -> None:
    api, clock = FakeApi(), Clock()
    t = make(api, clock)
    t.pump()
    t.record({"rollout/ep_rew_mean": 5.0}, 100)
    model = tmp_path / "model.zip"
    model.write_bytes(b"zip")
    assert t.finish("FINISHED", metrics={"eval/mean_reward": 9.0}, step=100, artifacts={"model.zip": model})
    assert api.points()[-2:] == [("rollout/ep_rew_mean", 5.0, 100), ("eval/mean_reward", 9.0, 100)]
    assert api.uploads == ["http://mlflow:5000/api/2.0/mlflow-artifacts/artifacts/7/r1/artifacts/model/model.zip"]
    assert api.runs["r1"]["info"]["status"] == "FINISHED"


def test_the_end_with_the_server_down_returns_false_and_never_raises() -> None:
    api, clock = FakeApi(), Clock()
    api.down = True
    t = make(api, clock)
    assert not t.finish("FINISHED", metrics={"eval/mean_reward": 1.0}, step=5)
    assert t.status().state == "failing"  # type: ignore[union-attr]


def test_the_queue_is_bounded_and_the_oldest_points_go_first(monkeypatch: pytest.MonkeyPatch) -> None:
    api, clock = FakeApi(), Clock()
    t = make(api, clock)
    t._pending = type(t._pending)(maxlen=3)
    for step in range(5):
        t.record({"m": float(step)}, step)
    assert [p.step for p in t._pending] == [2, 3, 4] and t._dropped == 2


def test_trials_share_one_parent_run_and_a_racer_deletes_the_one_it_lost_with() -> None:
    api, clock = FakeApi(), Clock()
    a = make(api, clock, parent=EXPERIMENT)
    a.pump()
    assert a.parent_id == "r1" and api.runs["r1"]["tags"]["kubegym.kind"] == "Experiment"
    assert api.runs["r2"]["tags"]["mlflow.parentRunId"] == "r1"
    # A second trial that lost the race: it created a parent before it saw the first one.
    late = api.create_run("7", "study", {"kubegym.uid": "uid-exp"}, start_ms=10**15)
    b = make(api, clock, parent=EXPERIMENT)
    b.config = b.config.model_copy(update={"run": RUN.model_copy(update={"uid": "uid-run-2"})})
    b._created_parent = late["info"]["run_id"]
    b.pump()
    assert b.parent_id == "r1" and api.deleted == [late["info"]["run_id"]]


def test_a_trial_repoints_its_parent_tag_when_it_finishes_if_an_older_parent_won() -> None:
    api, clock = FakeApi(), Clock()
    t = make(api, clock, parent=EXPERIMENT)
    t.pump()
    assert t.parent_id == "r1"
    api.runs["r0"] = {"uid": "uid-exp", "tags": {}, "info": {"run_id": "r0", "start_time": 0, "status": "RUNNING"}}
    assert t.finish("FINISHED")
    assert api.tags == {("r2", "mlflow.parentRunId"): "r0"}


def test_sb3_dumps_reach_the_queue_through_the_logger_output() -> None:
    api, clock = FakeApi(), Clock()
    t = make(api, clock)
    output = t.output()
    output.write({"rollout/ep_rew_mean": 3.0, "time/fps": 7, "note": "text"}, {"time/fps": ("mlflow",)}, step=64)
    assert [(p.key, p.value, p.step) for p in t._pending] == [("rollout/ep_rew_mean", 3.0, 64)]


def test_the_log_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tracking.LOG_INTERVAL_ENV, "2.5")
    assert Tracker.for_config(config(), {}).interval == 2.5
    monkeypatch.setenv(tracking.LOG_INTERVAL_ENV, "nonsense")
    assert Tracker.for_config(config(), {}).interval == tracking.LOG_INTERVAL_SECONDS


def test_points_recorded_while_a_batch_is_in_flight_stay_queued() -> None:
    api, clock = FakeApi(), Clock()
    t = make(api, clock)
    t.pump()
    t.record({"m": 1.0}, 1)
    sent_during: list[int] = []
    log_batch = api.log_batch

    def slow(body: Mapping[str, Any]) -> None:
        log_batch(body)
        t.record({"m": 2.0}, 2)  # SB3 dumps again while the request is out
        sent_during.append(len(body["metrics"]))

    api.log_batch = slow  # type: ignore[method-assign]
    clock.t += 10
    t.pump()
    assert sent_during == [1] and [(p.key, p.step) for p in t._pending] == [("m", 2)]


def test_a_parent_that_loses_the_race_after_the_fact_is_deleted_by_its_creator_at_the_end() -> None:
    api, clock = FakeApi(), Clock()
    t = make(api, clock, parent=EXPERIMENT)
    t.pump()
    assert t.parent_id == "r1" and t._created_parent == "r1"
    # A racer's parent with an older start time (its pod's clock is behind) appears.
    api.runs["r0"] = {"uid": "uid-exp", "tags": {}, "info": {"run_id": "r0", "start_time": 0, "status": "RUNNING"}}
    assert t.finish("FINISHED")
    assert api.tags == {("r2", "mlflow.parentRunId"): "r0"} and api.deleted == ["r1"]


def test_the_end_is_cut_short_between_requests_once_the_pod_is_told_to_stop(tmp_path: Path) -> None:
    api, clock = FakeApi(), Clock()
    t = make(api, clock)
    t.pump()
    model = tmp_path / "model.zip"
    model.write_bytes(b"zip")
    assert not t.finish("FINISHED", artifacts={"model.zip": model}, should_stop=lambda: True)
    assert api.uploads == [] and api.runs["r1"]["info"]["status"] == "RUNNING"
