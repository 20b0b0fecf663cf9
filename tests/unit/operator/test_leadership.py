"""Leader election on a Lease: the pure decision, rounds against an in-memory API server, the
loops (renew until lost, wait for leadership), the settings,
and how main.py orders it among kopf's startup handlers."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import threading
import time
from typing import Any

import kopf
import pytest

from kubegym_operator import leadership
from kubegym_operator.leadership import (
    Action,
    ConflictError,
    Decision,
    LeaderElector,
    Observation,
    Round,
    decide,
    micro_time,
    renew_until_lost,
    wait_for_leadership,
)
from kubegym_operator.settings import LeaderElection, SettingsError, load_leader_election

ME = "kubegym-7d9f-a"
OTHER = "kubegym-7d9f-b"
WALL = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
STAMP = micro_time(WALL)
EARLIER = "2026-03-01T11:00:00.000000Z"
NOW = 1000.0


def _lease(holder: str | None, *, duration: int = 10, transitions: int = 3, renewed: str = EARLIER) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "leaseDurationSeconds": duration,
        "acquireTime": EARLIER,
        "renewTime": renewed,
        "leaseTransitions": transitions,
    }
    if holder is not None:
        spec["holderIdentity"] = holder
    return {"metadata": {"name": "kubegym-operator", "namespace": "ops", "resourceVersion": "7"}, "spec": spec}


def _seen(lease: dict[str, Any], seconds_ago: float) -> Observation:
    return Observation(dict(lease["spec"]), NOW - seconds_ago, lease["metadata"]["resourceVersion"])


def _decide(lease: dict[str, Any] | None, observed: Observation | None = None) -> Decision:
    return decide(lease, identity=ME, duration_seconds=10, now=NOW, wall=WALL, observed=observed)


# --- the decision ------------------------------------------------------------------------------

HELD_BY_OTHER = _lease(OTHER)
LONG_LEASE = _lease(OTHER, duration=30)


@pytest.mark.parametrize(
    ("lease", "observed", "action", "transitions", "acquired"),
    [
        pytest.param(None, None, Action.CREATE, 0, STAMP, id="absent-create"),
        pytest.param(_lease(ME), None, Action.RENEW, 3, EARLIER, id="held-by-me-renew"),
        pytest.param(HELD_BY_OTHER, None, Action.WAIT, None, None, id="held-by-other-first-seen-wait"),
        pytest.param(HELD_BY_OTHER, _seen(HELD_BY_OTHER, 5), Action.WAIT, None, None, id="held-by-other-fresh-wait"),
        pytest.param(
            HELD_BY_OTHER,
            _seen(HELD_BY_OTHER, 10.5),
            Action.TAKE_OVER,
            4,
            STAMP,
            id="unchanged-past-duration-take-over",
        ),
        pytest.param(
            HELD_BY_OTHER,
            _seen(_lease(OTHER, renewed="2026-03-01T10:59:58.000000Z"), 60),
            Action.WAIT,
            None,
            None,
            id="renewed-since-seen-wait",
        ),
        pytest.param(
            HELD_BY_OTHER,
            Observation(dict(HELD_BY_OTHER["spec"]), NOW - 60, "6"),
            Action.WAIT,
            None,
            None,
            id="rewritten-same-spec-wait",
        ),
        pytest.param(LONG_LEASE, _seen(LONG_LEASE, 20), Action.WAIT, None, None, id="holders-own-duration-counts"),
        pytest.param(_lease("", duration=1), None, Action.TAKE_OVER, 4, STAMP, id="released-acquire"),
        pytest.param(_lease(None), None, Action.TAKE_OVER, 4, STAMP, id="no-holder-acquire"),
    ],
)
def test_decision(
    lease: dict[str, Any] | None,
    observed: Observation | None,
    action: Action,
    transitions: int | None,
    acquired: str | None,
) -> None:
    decision = _decide(lease, observed)
    assert decision.action is action
    if action is Action.WAIT:
        assert decision.spec is None
        assert decision.holder == OTHER
        return
    assert decision.spec == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 10,
        "acquireTime": acquired,
        "renewTime": STAMP,
        "leaseTransitions": transitions,
    }


def test_expiry_counts_from_the_local_observation_never_from_renew_time() -> None:
    """A renewTime an hour old (another machine's clock) does not make a Lease expired: it
    expires only after this replica saw it unchanged for the duration."""
    first = _decide(HELD_BY_OTHER)
    assert first.action is Action.WAIT and first.observation == Observation(HELD_BY_OTHER["spec"], NOW, "7")
    later = decide(HELD_BY_OTHER, identity=ME, duration_seconds=10, now=NOW + 9, wall=WALL, observed=first.observation)
    assert later.action is Action.WAIT and later.observation == first.observation
    expired = decide(
        HELD_BY_OTHER, identity=ME, duration_seconds=10, now=NOW + 10, wall=WALL, observed=first.observation
    )
    assert expired.action is Action.TAKE_OVER and expired.holder == OTHER


def test_release_gives_the_lease_up_and_keeps_the_transitions() -> None:
    assert leadership.released(_lease(ME, transitions=5), WALL) == {
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "acquireTime": STAMP,
        "renewTime": STAMP,
        "leaseTransitions": 5,
    }


# --- rounds against an in-memory API server -----------------------------------------------------


class FakeLeases:
    """Leases with resourceVersions: a replace with a stale one, or a second create, is a 409."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.fail: Exception | None = None
        self.lock = threading.Lock()
        self.writes: list[dict[str, Any]] = []

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._check()
        with self.lock:
            obj = self.objects.get((namespace, name))
            return copy.deepcopy(obj) if obj else None

    def _store(self, key: tuple[str, str], body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj = copy.deepcopy(body)
        obj["metadata"] = {**obj["metadata"], "resourceVersion": str(self.version)}
        self.objects[key] = obj
        self.writes.append(copy.deepcopy(obj))
        return copy.deepcopy(obj)

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check()
        with self.lock:
            key = (namespace, body["metadata"]["name"])
            if key in self.objects:
                raise ConflictError("already exists")
            return self._store(key, body)

    def replace(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check()
        with self.lock:
            current = self.objects[(namespace, name)]
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise ConflictError("the object has been modified")
            return self._store((namespace, name), body)

    def spec(self) -> dict[str, Any]:
        (obj,) = self.objects.values()
        spec: dict[str, Any] = obj["spec"]
        return spec


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _config(identity: str, **kw: Any) -> LeaderElection:
    return LeaderElection(enabled=True, namespace="ops", identity=identity, **kw)


def _elector(identity: str, leases: FakeLeases, clock: FakeClock, **kw: Any) -> LeaderElector:
    return LeaderElector(_config(identity, **kw), leases, clock=clock, wall=lambda: WALL)


def test_one_replica_leads_the_other_waits_then_takes_over_when_renewals_stop() -> None:
    leases, clock = FakeLeases(), FakeClock()
    a, b = _elector("a", leases, clock), _elector("b", leases, clock)
    first = a.try_acquire_or_renew()
    assert (first.leader, first.action, leadership.took_over_from(first)) == (
        True,
        Action.CREATE,
        "nobody: created the lease",
    )
    assert b.try_acquire_or_renew() == Round(False, "a", "a", Action.WAIT)
    for _ in range(10):  # a renews every 2 s: b never sees the Lease unchanged for 10 s
        clock.t += 2
        assert a.try_acquire_or_renew(renew_only=True).action is Action.RENEW
        assert not b.try_acquire_or_renew().leader
    assert a.holds() and not b.holds()
    clock.t += 9.9  # a died: b takes over 10 s after it last saw the Lease change
    assert not b.try_acquire_or_renew().leader
    clock.t += 0.2
    took = b.try_acquire_or_renew()
    assert (took.leader, took.action, took.previous) == (True, Action.TAKE_OVER, "a")
    assert leases.spec()["holderIdentity"] == "b" and leases.spec()["leaseTransitions"] == 1
    # a, back (it was only frozen), finds the Lease lost and does not take it back.
    lost = a.try_acquire_or_renew(renew_only=True)
    assert (lost.leader, lost.holder, lost.error) == (False, "b", None)


def test_a_conflict_on_update_is_retried_at_the_next_round() -> None:
    """Two standbys read the expired Lease at once; the first replace wins, the second gets
    409 and, at its next round, waits for the new holder."""
    leases, clock = FakeLeases(), FakeClock()
    assert _elector("a", leases, clock).try_acquire_or_renew().leader
    b, c = _elector("b", leases, clock), _elector("c", leases, clock)
    assert not b.try_acquire_or_renew().leader and not c.try_acquire_or_renew().leader
    clock.t += 11
    stale = leases.get("ops", "kubegym-operator")
    assert b.try_acquire_or_renew().leader
    original_get = leases.get
    leases.get = lambda namespace, name: stale  # type: ignore[method-assign]  # c read before b wrote
    conflict = c.try_acquire_or_renew()
    assert not conflict.leader and conflict.error is not None and conflict.error.startswith("conflict")
    leases.get = original_get  # type: ignore[method-assign]
    retry = c.try_acquire_or_renew()
    assert (retry.leader, retry.holder, retry.action) == (False, "b", Action.WAIT)


def test_racing_creates_one_wins() -> None:
    leases, clock = FakeLeases(), FakeClock()
    a, b = _elector("a", leases, clock), _elector("b", leases, clock)
    original_get = leases.get
    leases.get = lambda namespace, name: None  # type: ignore[method-assign]  # both saw no Lease
    assert a.try_acquire_or_renew().leader
    lost = b.try_acquire_or_renew()
    assert not lost.leader and lost.error is not None and "conflict" in lost.error
    leases.get = original_get  # type: ignore[method-assign]
    assert b.try_acquire_or_renew().action is Action.WAIT


def test_api_errors_fail_the_round_and_leadership_lapses_after_the_deadline() -> None:
    leases, clock = FakeLeases(), FakeClock()
    a = _elector("a", leases, clock)
    assert a.try_acquire_or_renew().leader
    leases.fail = OSError("connection refused")
    clock.t += 2
    failed = a.try_acquire_or_renew(renew_only=True)
    assert (failed.leader, failed.error) == (False, "OSError: connection refused")
    assert a.holds()
    clock.t += 6.5  # 8.5 s since the last renewal: past the 8 s renew deadline
    assert not a.holds()


def test_release_lets_a_standby_take_over_at_its_next_round() -> None:
    leases, clock = FakeLeases(), FakeClock()
    a, b = _elector("a", leases, clock), _elector("b", leases, clock)
    assert a.try_acquire_or_renew().leader
    assert not b.try_acquire_or_renew().leader
    assert a.release()
    assert leases.spec()["holderIdentity"] == "" and leases.spec()["leaseDurationSeconds"] == 1
    assert not a.holds() and not a.release()
    took = b.try_acquire_or_renew()  # no waiting: the Lease has no holder
    assert took.leader and leadership.took_over_from(took) == "nobody: the lease was free"
    assert not a.release(), "a replica that does not hold the Lease never touches it"
    assert leases.spec()["holderIdentity"] == "b"


# --- loops ---------------------------------------------------------------------------------------

FAST = {"lease_duration_seconds": 1, "renew_deadline_seconds": 0.4, "retry_period_seconds": 0.05}


def _run_renewals(elector: LeaderElector) -> tuple[threading.Event, list[str], threading.Thread]:
    stop, lost = threading.Event(), list[str]()
    thread = threading.Thread(target=renew_until_lost, args=(elector, stop, lost.append), kwargs={"tick": 0.02})
    thread.start()
    return stop, lost, thread


def test_the_leader_renews_until_stopped() -> None:
    leases = FakeLeases()
    a = LeaderElector(_config("a", **FAST), leases)
    assert a.try_acquire_or_renew().leader
    stop, lost, thread = _run_renewals(a)
    time.sleep(0.5)
    stop.set()
    thread.join(2)
    assert lost == [] and len(leases.writes) >= 5 and a.holds()


def test_the_leader_gives_up_after_the_renew_deadline_when_the_api_server_is_gone() -> None:
    leases = FakeLeases()
    a = LeaderElector(_config("a", **FAST), leases)
    assert a.try_acquire_or_renew().leader
    leases.fail = OSError("connection refused")
    started = time.monotonic()
    stop, lost, thread = _run_renewals(a)
    thread.join(3)
    assert len(lost) == 1 and "renew deadline of 0.4s" in lost[0], lost
    assert time.monotonic() - started < 1.0, "it must stop before the Lease can expire for the standbys"
    stop.set()


def test_the_leader_gives_up_at_once_when_another_holds_the_lease() -> None:
    leases = FakeLeases()
    a = LeaderElector(_config("a", **FAST), leases)
    assert a.try_acquire_or_renew().leader
    leases.objects[("ops", "kubegym-operator")]["spec"]["holderIdentity"] = "b"
    stop, lost, thread = _run_renewals(a)
    thread.join(2)
    assert lost == ["held by b now"]
    stop.set()


def test_a_standby_waits_and_leads_once_the_lease_is_released(caplog: pytest.LogCaptureFixture) -> None:
    leases = FakeLeases()
    holder = LeaderElector(_config("op-a", **FAST), leases)
    assert holder.try_acquire_or_renew().leader
    standby = LeaderElector(_config("op-b", **FAST), leases)

    async def scenario() -> tuple[Round, dict[str, Any]]:
        task = asyncio.create_task(wait_for_leadership(standby))
        while not any("waiting for leadership" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.02)
        seen = standby.status()
        for _ in range(5):  # the holder keeps renewing: the standby keeps waiting
            await asyncio.to_thread(holder.try_acquire_or_renew, renew_only=True)
            await asyncio.sleep(0.1)
        assert not task.done()
        await asyncio.to_thread(holder.release)
        return await asyncio.wait_for(task, 5), seen

    with caplog.at_level(logging.INFO, logger="kubegym.leadership"):
        result, seen = asyncio.run(scenario())
    assert seen == {
        "lease": "ops/kubegym-operator",
        "identity": "op-b",
        "leader": False,
        "holder": "op-a",
        "renewedSecondsAgo": None,
    }
    assert result.leader and standby.holds()
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("waiting for leadership (lease ops/kubegym-operator held by op-a)") == 1
    assert "became the leader (lease ops/kubegym-operator, took over from nobody: the lease was free)" in messages


def test_a_standby_cancelled_mid_round_gives_back_what_that_round_took() -> None:
    leases = FakeLeases()
    standby = LeaderElector(_config("op-b", **FAST), leases)
    entered, proceed = threading.Event(), threading.Event()
    original_get = leases.get

    def slow_get(namespace: str, name: str) -> dict[str, Any] | None:
        entered.set()
        proceed.wait(5)
        return original_get(namespace, name)

    leases.get = slow_get  # type: ignore[method-assign]

    async def scenario() -> None:
        task = asyncio.create_task(wait_for_leadership(standby))
        await asyncio.to_thread(entered.wait, 5)
        task.cancel()
        proceed.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert leases.spec()["holderIdentity"] == ""  # created by the round, then released
    assert not standby.holds()


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, {"enabled": False, "namespace": "default", "identity": "host_42"}, id="outside-a-pod-off"),
        pytest.param(
            {"POD_NAMESPACE": "kubegym-system", "POD_NAME": "kubegym-5f7-x2"},
            {"enabled": True, "namespace": "kubegym-system", "identity": "kubegym-5f7-x2"},
            id="in-a-pod-on",
        ),
        pytest.param(
            {"POD_NAMESPACE": "kubegym-system", "KUBEGYM_LEADER_ELECTION": "false"},
            {"enabled": False, "namespace": "kubegym-system", "identity": "host_42"},
            id="switched-off",
        ),
        pytest.param(
            {"KUBEGYM_LEADER_ELECTION": "true", "KUBEGYM_LEADER_ELECTION_NAMESPACE": "ops"},
            {"enabled": True, "namespace": "ops"},
            id="switched-on-outside-a-pod",
        ),
        pytest.param(
            {"POD_NAMESPACE": "kubegym-system", "KUBEGYM_LEADER_ELECTION_NAMESPACE": "ops"},
            {"namespace": "kubegym-system"},
            id="pod-namespace-wins",
        ),
        pytest.param(
            {
                "KUBEGYM_LEASE_NAME": "kubegym-operator-b",
                "KUBEGYM_LEASE_DURATION_SECONDS": "30",
                "KUBEGYM_LEASE_RENEW_DEADLINE_SECONDS": "20",
                "KUBEGYM_LEASE_RETRY_PERIOD_SECONDS": "0.5",
            },
            {
                "lease_name": "kubegym-operator-b",
                "lease_duration_seconds": 30,
                "renew_deadline_seconds": 20.0,
                "retry_period_seconds": 0.5,
            },
            id="timings",
        ),
        pytest.param(
            {},
            {
                "lease_name": "kubegym-operator",
                "lease_duration_seconds": 10,
                "renew_deadline_seconds": 8.0,
                "retry_period_seconds": 2.0,
            },
            id="default-timings",
        ),
    ],
)
def test_leader_election_settings(env: dict[str, str], expected: dict[str, Any]) -> None:
    config = load_leader_election(env, hostname="host", pid=42)
    assert {k: getattr(config, k) for k in expected} == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KUBEGYM_LEADER_ELECTION": "maybe"}, "KUBEGYM_LEADER_ELECTION:"),
        ({"KUBEGYM_LEASE_DURATION_SECONDS": "0"}, "KUBEGYM_LEASE_DURATION_SECONDS:"),
        ({"KUBEGYM_LEASE_RETRY_PERIOD_SECONDS": "soon"}, "KUBEGYM_LEASE_RETRY_PERIOD_SECONDS:"),
        ({"KUBEGYM_LEASE_DURATION_SECONDS": "5"}, "lease duration > renew deadline > retry period, got 5 / 8 / 2"),
        ({"KUBEGYM_LEASE_NAME": "Kubegym_Operator"}, "KUBEGYM_LEASE_NAME:"),
        ({"POD_NAMESPACE": "Kube System"}, "POD_NAMESPACE:"),
    ],
)
def test_bad_leader_election_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match="invalid leader-election settings") as err:
        load_leader_election(env, hostname="host", pid=42)
    assert message in str(err.value)


# --- wiring into kopf --------------------------------------------------------------------------


def test_startup_waits_for_leadership_before_the_resync_and_cleanup_releases_last() -> None:
    """kopf runs startup handlers one by one in registration order, and watches nothing before
    they all returned; cleanup handlers run after the watches stopped."""
    from kopf._core.intents.causes import Activity

    import kubegym_operator.main  # noqa: F401 - registers the handlers

    activities = kopf.get_default_registry()._activities
    startup = [h.id for h in activities.get_handlers(activity=Activity.STARTUP)]
    assert startup == ["configure", "lead", "start_resync"]
    cleanup = [h.id for h in activities.get_handlers(activity=Activity.CLEANUP)]
    assert cleanup == ["stop_resync", "release_leadership"]
    assert [h.id for h in activities.get_handlers(activity=Activity.PROBE)] == ["leadership"]
