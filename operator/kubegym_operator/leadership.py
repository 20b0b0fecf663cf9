"""Leader election on a ``coordination.k8s.io/v1`` Lease: several operator replicas run, one reconciles.

Why a Lease and not kopf's peering: kopf's peering is built to let one operator (a developer's)
pause another, not for hot standbys. Operators of equal priority — every replica of one
Deployment — all freeze when they see each other, so two replicas would both stop reconciling,
and peering needs CRDs of its own (``KopfPeering``/``ClusterKopfPeering``) installed and
writable. A Lease is what client-go's ``leaderelection``, controller-runtime managers and
kube-controller-manager itself use: one object in the operator's namespace, RBAC on ``leases``
(get, create, update) there and nowhere else, and semantics that ``kubectl get lease`` shows.

The semantics are client-go's (``LeaseLock`` + ``LeaderElector``):

* the Lease's spec is the record: ``holderIdentity``, ``leaseDurationSeconds``,
  ``acquireTime``, ``renewTime``, ``leaseTransitions``;
* a replica acquires the Lease when it is absent (create), released (empty holder), or expired:
  unchanged, by this replica's *own* clock, for ``leaseDurationSeconds`` since it last saw it
  change. No two machines' clocks are compared (``renewTime`` is informative);
* the holder renews every retry period by replacing the Lease with the ``resourceVersion`` it
  read: of two replicas racing for it, one gets 409 ConflictError and tries again at its next retry;
* the holder that could not renew for the renew deadline (shorter than the lease duration, so it
  stops before a standby may take over) or that finds another holder has lost the Lease, and
  the process exits — like a controller-runtime manager, a replica that lost the Lease never
  keeps reconciling; its pod restarts as a standby;
* on a clean shutdown the holder releases the Lease (empty holder, ``leaseDurationSeconds: 1``)
  so that a standby takes over at its next retry instead of after the lease duration.

:func:`decide` is the whole decision and pure; :class:`LeaderElector` wraps one round of I/O
around it; :func:`wait_for_leadership` (kopf startup, asyncio) and :func:`renew_until_lost`
(a thread) loop over rounds. ``kubegym_operator.main`` wires them into kopf's startup, probe and
cleanup handlers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import enum
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kubegym_operator import kubeapi
from kubegym_operator.apierrors import ApiError
from kubegym_operator.settings import LeaderElection

log = logging.getLogger("kubegym.leadership")

Obj = dict[str, Any]
Clock = Callable[[], float]
WallClock = Callable[[], dt.datetime]


# --- the decision (pure) -----------------------------------------------------------------------


class Action(enum.Enum):
    #: No Lease: create it, held by this replica.
    CREATE = "create"
    #: Held by this replica: replace it with a new renewTime.
    RENEW = "renew"
    #: Released or expired: replace it, held by this replica, leaseTransitions + 1.
    TAKE_OVER = "take-over"
    #: Held by another replica that changed it less than its leaseDurationSeconds ago.
    WAIT = "wait"


@dataclass(frozen=True)
class Observation:
    """The Lease as this replica last saw it change, and when (its monotonic clock).

    A change is a new spec or a new resourceVersion (every write makes one, even a renewal
    that happens to write the same renewTime).
    """

    spec: Mapping[str, Any]
    at: float
    version: str = ""


@dataclass(frozen=True)
class Decision:
    action: Action
    #: The spec to write; None with WAIT.
    spec: Obj | None
    #: What to remember of the Lease for the next round (None when there was no Lease).
    observation: Observation | None
    #: The holder before this decision; "" when the Lease is absent or released.
    holder: str


def micro_time(t: dt.datetime) -> str:
    """A ``metav1.MicroTime``: RFC 3339 in UTC with microseconds."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decide(
    lease: Obj | None,
    *,
    identity: str,
    duration_seconds: int,
    now: float,
    wall: dt.datetime,
    observed: Observation | None,
) -> Decision:
    """What this replica does with the Lease it just read (None: there is none).

    ``now`` is the local monotonic clock, ``wall`` the time written into the record, ``observed``
    what the previous round remembered: expiry counts from when the spec last changed as seen
    here, never from the ``renewTime`` another machine wrote.
    """
    stamp = micro_time(wall)
    if lease is None:
        spec = _record(identity, duration_seconds, acquired=stamp, renewed=stamp, transitions=0)
        return Decision(Action.CREATE, spec, None, "")
    current: Obj = dict(lease.get("spec") or {})
    version = str((lease.get("metadata") or {}).get("resourceVersion") or "")
    unchanged = observed is not None and observed.spec == current and observed.version == version
    observation = observed if unchanged and observed is not None else Observation(current, now, version)
    holder = str(current.get("holderIdentity") or "")
    transitions = int(current.get("leaseTransitions") or 0)
    if holder == identity:
        acquired = str(current.get("acquireTime") or stamp)
        spec = _record(identity, duration_seconds, acquired=acquired, renewed=stamp, transitions=transitions)
        return Decision(Action.RENEW, spec, observation, holder)
    held_for = int(current.get("leaseDurationSeconds") or duration_seconds)
    if holder and now < observation.at + held_for:
        return Decision(Action.WAIT, None, observation, holder)
    spec = _record(identity, duration_seconds, acquired=stamp, renewed=stamp, transitions=transitions + 1)
    return Decision(Action.TAKE_OVER, spec, observation, holder)


def released(lease: Obj, wall: dt.datetime) -> Obj:
    """The spec that gives the Lease up (client-go's release): no holder, expired in one second."""
    transitions = int((lease.get("spec") or {}).get("leaseTransitions") or 0)
    stamp = micro_time(wall)
    return _record("", 1, acquired=stamp, renewed=stamp, transitions=transitions)


def _record(identity: str, duration: int, *, acquired: str, renewed: str, transitions: int) -> Obj:
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": duration,
        "acquireTime": acquired,
        "renewTime": renewed,
        "leaseTransitions": transitions,
    }


# --- I/O: the Lease through the API server -------------------------------------------------------


class ConflictError(Exception):
    """409: another replica wrote (or created) the Lease since it was read."""


class Leases(Protocol):
    def get(self, namespace: str, name: str) -> Obj | None: ...

    def create(self, namespace: str, body: Obj) -> Obj: ...

    def replace(self, namespace: str, name: str, body: Obj) -> Obj: ...


class KubeLeases:
    """:class:`Leases` through the operator's API client, with a short timeout per request: a
    round has to finish well inside the renew deadline, whatever the API server does."""

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout = timeout_seconds

    @classmethod
    def for_config(cls, config: LeaderElection) -> KubeLeases:
        """A third of the renew deadline per request: a round (a read and a write) leaves time
        for another before the deadline."""
        return cls(max(1.0, config.renew_deadline_seconds / 3))

    def _call(self, method: str, path: str, body: Obj | None = None) -> Obj:
        try:
            return kubeapi.request(method, path, body, timeout=self.timeout)[1]
        except ApiError as e:
            if e.status == 409:
                raise ConflictError(f"{method} {path}: {e.reason}") from e
            raise

    @staticmethod
    def _collection(namespace: str) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"

    def get(self, namespace: str, name: str) -> Obj | None:
        try:
            return self._call("GET", f"{self._collection(namespace)}/{name}")
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def create(self, namespace: str, body: Obj) -> Obj:
        return self._call("POST", self._collection(namespace), body)

    def replace(self, namespace: str, name: str, body: Obj) -> Obj:
        return self._call("PUT", f"{self._collection(namespace)}/{name}", body)


@dataclass(frozen=True)
class Round:
    """The outcome of one try to acquire or renew."""

    #: This round acquired or renewed the Lease.
    leader: bool
    #: Who holds the Lease as far as this round knows ("" nobody, or unknown after an error).
    holder: str
    #: The holder before this round wrote ("" absent or released).
    previous: str
    action: Action | None = None
    #: Why the round failed (a conflict, an API error); None when it read the Lease.
    error: str | None = None


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaderElector:
    """Rounds of read → :func:`decide` → write on one Lease, and what they leave known."""

    def __init__(
        self,
        config: LeaderElection,
        leases: Leases,
        clock: Clock = time.monotonic,
        wall: WallClock = _utcnow,
    ) -> None:
        self.config = config
        self.leases = leases
        self.clock = clock
        self.wall = wall
        self.observed: Observation | None = None
        #: Local monotonic time at the start of the last round that acquired or renewed.
        self.renewed_at: float | None = None
        #: The holder the last successful read showed.
        self.holder = ""
        self._lock = threading.Lock()

    @property
    def lease_ref(self) -> str:
        return f"{self.config.namespace}/{self.config.lease_name}"

    @property
    def identity(self) -> str:
        return self.config.identity

    def holds(self) -> bool:
        """This replica holds the Lease and renewed it within the renew deadline."""
        renewed = self.renewed_at
        return renewed is not None and self.clock() - renewed <= self.config.renew_deadline_seconds

    def try_acquire_or_renew(self, *, renew_only: bool = False) -> Round:
        """One round. With ``renew_only`` (the holder's renewals) a Lease that turns out to be
        someone else's is not taken back, even when expired: it was lost."""
        with self._lock:
            cfg = self.config
            started = self.clock()
            try:
                lease = self.leases.get(cfg.namespace, cfg.lease_name)
                decision = decide(
                    lease,
                    identity=cfg.identity,
                    duration_seconds=cfg.lease_duration_seconds,
                    now=started,
                    wall=self.wall(),
                    observed=self.observed,
                )
                self.observed = decision.observation
                self.holder = decision.holder
                if decision.spec is None or (renew_only and decision.action is Action.TAKE_OVER):
                    return Round(False, decision.holder, decision.holder, decision.action)
                if lease is None:
                    body: Obj = {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": cfg.lease_name, "namespace": cfg.namespace},
                        "spec": decision.spec,
                    }
                    written = self.leases.create(cfg.namespace, body)
                else:
                    body = {**lease, "spec": decision.spec}
                    written = self.leases.replace(cfg.namespace, cfg.lease_name, body)
            except ConflictError as e:
                return Round(False, self.holder, self.holder, error=f"conflict: {e}")
            except Exception as e:  # noqa: BLE001 - any failed round is retried; the deadline decides
                return Round(False, self.holder, self.holder, error=f"{type(e).__name__}: {e}")
            self.observed = Observation(
                dict(written.get("spec") or decision.spec),
                self.clock(),
                str((written.get("metadata") or {}).get("resourceVersion") or ""),
            )
            self.renewed_at = started
            self.holder = cfg.identity
            return Round(True, cfg.identity, decision.holder, decision.action)

    def release(self) -> bool:
        """Give the Lease up if this replica holds it; True when it was released."""
        with self._lock:
            if self.renewed_at is None:
                return False
            self.renewed_at = None
            cfg = self.config
            try:
                lease = self.leases.get(cfg.namespace, cfg.lease_name)
                if lease is None or (lease.get("spec") or {}).get("holderIdentity") != cfg.identity:
                    return False
                self.leases.replace(cfg.namespace, cfg.lease_name, {**lease, "spec": released(lease, self.wall())})
            except Exception as e:  # noqa: BLE001 - a standby then takes over when the Lease expires
                log.warning(
                    "could not release the lease %s (%s); a standby takes over when it expires", self.lease_ref, e
                )
                return False
            self.holder = ""
            log.info("released the lease %s", self.lease_ref)
            return True

    def status(self) -> Obj:
        """For the liveness endpoint's JSON (kopf's probe on the leader, the standby's own server)."""
        renewed = self.renewed_at
        return {
            "lease": self.lease_ref,
            "identity": self.identity,
            "leader": self.holds(),
            "holder": self.holder,
            "renewedSecondsAgo": None if renewed is None else round(self.clock() - renewed, 1),
        }


# --- loops -------------------------------------------------------------------------------------


def took_over_from(result: Round) -> str:
    if result.previous:
        return result.previous
    return "nobody: created the lease" if result.action is Action.CREATE else "nobody: the lease was free"


async def wait_for_leadership(elector: LeaderElector) -> Round:
    """Retry every retry period until this replica holds the Lease, logging who holds it.

    Runs as a task on kopf's loop while the standby's watches keep its view warm (see
    ``kubegym_operator.main.lead``); cancelled at shutdown, it gives back what a round in flight
    may have taken.
    """
    waiting_for: str | None = None
    last_error: str | None = None
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lease") as pool:
        while True:
            attempt = pool.submit(elector.try_acquire_or_renew)
            try:
                result = await asyncio.wrap_future(attempt)
            except asyncio.CancelledError:
                # Shut down while standing by: a round still in flight may take the Lease,
                # which must then be given back at once rather than left to expire.
                concurrent.futures.wait([attempt], timeout=elector.config.renew_deadline_seconds)
                elector.release()
                raise
            if result.leader:
                log.info("became the leader (lease %s, took over from %s)", elector.lease_ref, took_over_from(result))
                return result
            if result.error is not None:
                if result.error != last_error:
                    log.warning("could not acquire the lease %s: %s; retrying", elector.lease_ref, result.error)
                last_error = result.error
            elif result.holder != waiting_for:
                waiting_for = result.holder
                log.info("waiting for leadership (lease %s held by %s)", elector.lease_ref, result.holder)
            await asyncio.sleep(elector.config.retry_period_seconds)


def renew_until_lost(
    elector: LeaderElector, stop: threading.Event, on_lost: Callable[[str], None], tick: float = 0.5
) -> None:
    """Renew every retry period until ``stop`` is set or the Lease is lost; then ``on_lost(why)``.

    Lost means: a read shows another holder, or no round renewed for the renew deadline. A
    watchdog thread checks the deadline every ``tick`` seconds, so a request that hangs until
    its timeout cannot keep this replica reconciling past it.
    """
    cfg = elector.config
    lost = threading.Event()
    guard = threading.Lock()

    def lose(reason: str) -> None:
        with guard:
            if lost.is_set() or stop.is_set():
                return
            lost.set()
        on_lost(reason)

    def watchdog() -> None:
        while not stop.wait(tick) and not lost.is_set():
            renewed = elector.renewed_at
            if renewed is None or elector.clock() - renewed > cfg.renew_deadline_seconds:
                ago = "never" if renewed is None else f"{elector.clock() - renewed:.1f}s ago"
                lose(f"not renewed within the renew deadline of {cfg.renew_deadline_seconds:g}s (last renewed {ago})")

    threading.Thread(target=watchdog, name="lease-watchdog", daemon=True).start()
    last_error: str | None = None
    while not stop.wait(cfg.retry_period_seconds) and not lost.is_set():
        result = elector.try_acquire_or_renew(renew_only=True)
        if result.leader:
            last_error = None
            continue
        if result.error is None:
            lose(f"held by {result.holder or 'nobody'} now")
            return
        if result.error != last_error:
            log.warning("could not renew the lease %s: %s; retrying", elector.lease_ref, result.error)
        last_error = result.error


def exit_process(elector: LeaderElector) -> Callable[[str], None]:
    """The production ``on_lost``: log, then end the process at once, whatever kopf is doing."""

    def on_lost(reason: str) -> None:
        log.error(
            "lost leadership (lease %s: %s); exiting so that only the leader reconciles", elector.lease_ref, reason
        )
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(1)

    return on_lost


@dataclass
class Leadership:
    """The held Lease of a running operator: the elector and its renewing thread."""

    elector: LeaderElector
    stop: threading.Event
    thread: threading.Thread

    @classmethod
    def start(cls, elector: LeaderElector, on_lost: Callable[[str], None] | None = None) -> Leadership:
        stop = threading.Event()
        thread = threading.Thread(
            target=renew_until_lost,
            args=(elector, stop, on_lost or exit_process(elector)),
            name="lease-renew",
            daemon=True,
        )
        thread.start()
        return cls(elector, stop, thread)

    def release(self) -> bool:
        """Stop renewing and give the Lease up (a clean shutdown)."""
        self.stop.set()
        self.thread.join(timeout=self.elector.config.renew_deadline_seconds)
        return self.elector.release()
