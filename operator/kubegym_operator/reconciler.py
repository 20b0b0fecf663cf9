"""One reconcile for every kind that owns a Job: TrainingRun and Benchmark, and the create and stop
steps of an Experiment's report Job.

The kinds differ in a few answers, which an adapter per kind gives (:class:`JobOwner`, after
Kueue's GenericJob): the Job's name; the Job to create and the identity (ServiceAccount, Role,
RoleBinding) its pod runs as, or why not yet; how a live Job follows an edit of its owner (a
patch, or a new Job); the owner's status from (owner, Job, pods, now); and whether that verdict
depends on the clock. :func:`reconcile` is the one sequence they share:

1. one reconcile at a time per object (:class:`ReconcileGate`: a request that arrives while one
   runs is folded into one more pass of it, so no worker thread waits for another);
2. read the owner, its Job and the Job's pods through the :class:`~kubegym_operator.clusterapi.
   ClusterAPI` it is handed (on the operator, the watch-fed view: no GET, no LIST);
3. act on what it read: create the Job (its identity first, and its pod's own storage
   credentials when the operator mints them: :mod:`kubegym_operator.credentials`), patch it,
   refresh its pod's credentials when a third of their lifetime is left, delete it to have it
   recreated, stop it (the owner failed for good), fail the owner (a spec that cannot work), or
   nothing (a finished owner never gets a Job again);
4. add what the owner's pods cost (:mod:`kubegym_operator.builders.cost`, the same rules for every kind);
5. write the status only when it changed — the changed top-level fields in one merge patch, the
   transition's Events first.

Level-triggered: whatever event woke it, a reconcile acts on what it reads, so a missed or
repeated event costs nothing. A 403 NamespaceTerminating ends it quietly: the namespace's
deletion takes the owner and everything it owns. Statuses stay the builders' :class:`~kubegym_
operator.builders.status.StatusUpdate` until :func:`write_status` compares and writes them.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from kubegym_api.status import TERMINAL_PHASES
from kubegym_operator import credentials, metrics
from kubegym_operator.apierrors import ApiError
from kubegym_operator.builders.cost import cost_status
from kubegym_operator.builders.credentials import StorageAccess, refresh_due
from kubegym_operator.builders.job import JobUpdate, RenderError
from kubegym_operator.builders.status import Event, StatusUpdate
from kubegym_operator.clusterapi import ClusterAPI
from kubegym_operator.credentials import Issuer
from kubegym_operator.kubeapi import Obj
from kubegym_operator.sts import StsError
from kubegym_operator.watched import Kind

log = logging.getLogger("kubegym.reconciler")

C = TypeVar("C")
R = TypeVar("R")

#: Returns the current time (timezone-aware); tests pass a fixed one.
Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """The current time in UTC."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class JobPlan(Generic[C]):
    """What an owner without a Job gets: ``job`` to create after ``identity`` (the ServiceAccount,
    Role and RoleBinding its pod runs as: a pod whose ServiceAccount is missing is never created),
    or ``job=None`` to wait. ``context`` is the adapter's note for :meth:`JobOwner.status` (a
    Benchmark's model resolution). ``storage`` is what the pod may touch in S3 when the operator
    mints its credentials (None: they come by reference)."""

    job: Obj | None
    identity: tuple[Obj, ...] = ()
    context: C | None = None
    storage: StorageAccess | None = None


class JobOwner(Protocol[C]):
    """What differs between the kinds that own a Job; ``C`` is the type of :attr:`JobPlan.context`."""

    @property
    def kind(self) -> Kind:
        """The owner's kind."""
        ...

    def job_name(self, owner: Obj) -> str:
        """Name of the owner's Job (deterministic, so a restarted operator finds it)."""
        ...

    def plan_job(self, api: ClusterAPI, owner: Obj) -> JobPlan[C]:
        """The Job to create for an unfinished owner that has none (reading what else it needs
        through ``api``); raises :class:`~kubegym_operator.builders.job.RenderError` when the owner
        cannot work as specified (it fails with that reason)."""
        ...

    def plan_update(self, owner: Obj, job: Obj) -> JobUpdate:
        """How the live ``job`` follows the owner's mutable fields: a JSON Patch, or recreate."""
        ...

    def storage_access(self, api: ClusterAPI, owner: Obj, job: Obj) -> StorageAccess | None:
        """What the live ``job``'s pod may touch in S3, for a refresh of its minted credentials
        (the same as :attr:`JobPlan.storage` when it was created); raises RenderError when it
        cannot be told any more."""
        ...

    def status(
        self, owner: Obj, job: Obj | None, pods: Sequence[Obj], *, now: dt.datetime, plan: JobPlan[C] | None
    ) -> StatusUpdate:
        """The owner's operator-owned status from its Job and the Job's pods; ``plan`` is this
        reconcile's :meth:`plan_job` answer, None when it did not plan (the Job existed)."""
        ...

    def failed(self, owner: Obj, reason: str, message: str, *, now: dt.datetime) -> StatusUpdate:
        """The status of an owner that fails before it has a Job."""
        ...

    def settled(self, namespace: str, name: str) -> None:
        """The owner has its Job, is finished or gone: drop what the adapter tracked while it waited."""
        ...

    def clock_dependent(self, api: ClusterAPI, owner: Obj) -> bool:
        """Whether the owner's verdict can change with time alone (a grace period runs), so the
        periodic resync must reconcile it."""
        ...


# --- one reconcile at a time per object --------------------------------------------------------


class ReconcileGate:
    """At most one reconcile per object at a time, and a record of the ones that failed.

    A request for an object that is being reconciled returns at once and makes the running
    reconcile do one more pass when it ends (level-triggered, one pass sees every change that
    woke the folded requests). So bursts — a run's status write, its Job's and its pod's events
    together, or an Experiment's many runs — cost one or two passes and never park kopf's
    executor threads on a lock; concurrency stays bounded by those threads.

    kopf does not retry an ``on.event`` handler that raised: :meth:`failed` names the objects whose
    last reconcile raised, for the periodic resync to try again.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        #: Objects being reconciled → whether another pass was asked for meanwhile.
        self._running: dict[Hashable, bool] = {}
        self._failed: set[Hashable] = set()

    def run(self, key: Hashable, reconcile_once: Callable[[], R]) -> R | None:
        """``reconcile_once()`` for the object ``key``, again while requests arrive during it; its
        last result, or None when the object was being reconciled already (folded in)."""
        with self._guard:
            if key in self._running:
                self._running[key] = True
                return None
            self._running[key] = False
        try:
            while True:
                result = reconcile_once()
                with self._guard:
                    if not self._running[key]:
                        del self._running[key]
                        self._failed.discard(key)
                        return result
                    self._running[key] = False
        except BaseException:
            with self._guard:
                self._running.pop(key, None)
                self._failed.add(key)
            raise

    def failed(self) -> set[Hashable]:
        """Keys whose last reconcile raised."""
        with self._guard:
            return set(self._failed)


#: The operator's gate, shared by every kind (keys are (kind, namespace, name)).
GATE = ReconcileGate()


# --- the sequence ---------------------------------------------------------------------------


def reconcile(
    adapter: JobOwner[Any],
    api: ClusterAPI,
    namespace: str,
    name: str,
    now: Clock = utc_now,
    gate: ReconcileGate = GATE,
    issuer: Issuer | None = None,
) -> Obj | None:
    """Bring the ``adapter.kind`` object ``namespace/name`` and its Job in line with each other.

    ``now`` is the clock of the verdicts (grace periods, transition times, credentials), ``gate``
    the one-at-a-time gate, ``issuer`` what mints a pod's storage credentials (None: the operator
    mints none). Returns the status fields written: None when nothing changed, the object is
    gone, or another reconcile of it is running (and will make one more pass).
    """
    kind = adapter.kind

    def once() -> Obj | None:
        with metrics.observe_reconcile(kind):
            try:
                return _converge(adapter, api, namespace, name, now, issuer)
            except ApiError as e:
                if namespace_terminating(e):
                    log.info("%s %s/%s: namespace is being deleted; nothing to reconcile", kind, namespace, name)
                    return None
                raise

    return gate.run((kind, namespace, name), once)


def _converge(
    adapter: JobOwner[Any], api: ClusterAPI, namespace: str, name: str, now: Clock, issuer: Issuer | None
) -> Obj | None:
    kind = adapter.kind
    owner = api.get(kind, namespace, name)
    if owner is None or deleting(owner):
        adapter.settled(namespace, name)
        return None
    job = api.get(Kind.JOB, namespace, adapter.job_name(owner))
    finished = is_terminal(owner)
    plan: JobPlan[Any] | None = None
    if job is None and not finished:
        try:
            plan = adapter.plan_job(api, owner)
        except RenderError as e:
            adapter.settled(namespace, name)
            return write_status(api, kind, owner, adapter.failed(owner, e.reason, e.message, now=now()))
        if plan.job is not None and not _still_there(api, owner):
            adapter.settled(namespace, name)
            return None
        if plan.job is not None:
            job = create_job(api, owner, plan.job, plan.identity, storage=plan.storage, issuer=issuer, now=now)
            metrics.job_created(kind, owner)
    else:
        adapter.settled(namespace, name)
        if job is not None and not finished and not deleting(job):
            job = _follow_edits(adapter, api, owner, job)
        live = job
        if live is not None and not finished and not deleting(live) and refresh_due(live, now()):
            job = refresh_credentials(api, owner, live, lambda: adapter.storage_access(api, owner, live), issuer, now)
    pods = api.pods_of_job(namespace, job["metadata"]["name"]) if job is not None else []
    update = adapter.status(owner, job, pods, now=now(), plan=plan)
    cost = cost_status(owner.get("status") or {}, pods, now())
    if cost is not None:
        update.status["cost"] = cost
    metrics.job_started(kind, job, owner.get("status") or {}, update.status)
    if update.stop_job and job is not None and not deleting(job):
        log.info("%s %s/%s failed for good; stopping its Job", kind, namespace, name)
        stop_job(api, job)
    return write_status(api, kind, owner, update)


def _still_there(api: ClusterAPI, owner: Obj) -> bool:
    """Whether an owner whose Job is missing still exists, and is not being deleted.

    An owner with a status has had its Job; that Job missing most often means the owner was just
    deleted: the garbage collector deletes the Job, and the Job's DELETED event can reach the
    operator before the owner's own, while the view still holds the owner. Creating the Job then
    would mint credentials and start a pod for a deleted run (seen for 3 of 2,000 runs deleted at
    once). So that case — rare: a deletion, a Job recreated after an edit, a Job a user deleted —
    asks the API server (one GET); an owner without a status yet (its first Job) does not.
    """
    if not (owner.get("status") or {}).get("phase"):
        return True
    meta = owner["metadata"]
    live = api.read(Kind(owner["kind"]), meta["namespace"], meta["name"])
    if live is None or deleting(live) or (live.get("metadata") or {}).get("uid") != meta.get("uid"):
        log.info(
            "%s %s/%s is gone or going; its Job is not created again", owner["kind"], meta["namespace"], meta["name"]
        )
        return False
    return True


def _follow_edits(adapter: JobOwner[Any], api: ClusterAPI, owner: Obj, job: Obj) -> Obj:
    """The live Job after the owner's edits: patched, or being deleted to be created anew (the next
    reconcile after its DELETED event creates it from the new spec)."""
    update = adapter.plan_update(owner, job)
    meta = job["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if update.recreate:
        log.info(
            "%s/%s: Job %s cannot take the edit in place; recreating it", namespace, owner["metadata"]["name"], name
        )
        api.delete(Kind.JOB, namespace, name, propagation="Foreground")
        return api.get(Kind.JOB, namespace, name) or job
    if update.patch:
        return api.json_patch(Kind.JOB, namespace, name, update.patch)
    return job


# --- the steps, shared with the Experiment's report Job ----------------------------------------


def create_job(
    api: ClusterAPI,
    owner: Obj,
    job: Obj,
    identity: Iterable[Obj] = (),
    *,
    storage: StorageAccess | None = None,
    issuer: Issuer | None = None,
    now: Clock = utc_now,
) -> Obj:
    """Create ``identity`` (the pod's ServiceAccount, Role, RoleBinding), then — when the operator
    mints the pod's credentials for ``storage`` — the pod's credentials Secret (through
    ``issuer``; the clock ``now`` dates them), then ``job``; returns the Job as the API server has
    it (an existing one unchanged). An STS failure raises :class:`~kubegym_operator.sts.StsError`
    before the Job exists, after a Warning Event on the owner: the resync tries again."""
    for manifest in identity:
        api.create(manifest)
    if storage is not None:
        if issuer is None:
            raise RuntimeError("the Job needs minted storage credentials but the operator has no issuer")
        try:
            job = credentials.issue(api, issuer, job, storage, now())
        except StsError as e:
            api.post_event(owner, "Warning", "StorageCredentialsFailed", f"cannot mint storage credentials: {e}")
            raise
    created = api.create(job)
    meta = owner["metadata"]
    log.info("%s %s/%s: Job %s created", owner.get("kind"), meta["namespace"], meta["name"], job["metadata"]["name"])
    return created


def refresh_credentials(
    api: ClusterAPI,
    owner: Obj,
    job: Obj,
    storage: Callable[[], StorageAccess | None],
    issuer: Issuer | None,
    now: Clock = utc_now,
) -> Obj:
    """Mint new credentials for the live ``job``'s pod (it is due: :func:`~kubegym_operator.
    builders.credentials.refresh_due`), with the access ``storage()`` tells; returns the Job.

    Never raises for the refresh itself: a failure (STS down, an access that cannot be told any
    more) is a Warning Event on the owner and a log line, and the Job stays due, so the next
    resync (every 30 s) tries again while the old credentials still hold.
    """
    meta = job["metadata"]
    if issuer is None:
        log.error(
            "%s/%s: its pod's storage credentials are due but the operator mints none", meta["namespace"], meta["name"]
        )
        return job
    try:
        access = storage()
        if access is None:
            return job
        refreshed = credentials.refresh(api, issuer, job, access, now())
    except (StsError, RenderError) as e:
        log.warning("%s/%s: storage credentials not refreshed: %s", meta["namespace"], meta["name"], e)
        api.post_event(owner, "Warning", "StorageCredentialsNotRefreshed", f"storage credentials not refreshed: {e}")
        return job
    api.post_event(
        owner, "Normal", "StorageCredentialsRefreshed", f"storage credentials of Job {meta['name']} refreshed"
    )
    return refreshed


def stop_job(api: ClusterAPI, job: Mapping[str, Any]) -> None:
    """Delete a Job that must not run on (its pods go with it, in the background)."""
    meta = job["metadata"]
    api.delete(Kind.JOB, meta["namespace"], meta["name"])


def write_status(
    api: ClusterAPI, kind: str, owner: Obj, update: StatusUpdate | Obj, events: Iterable[Event] = ()
) -> Obj | None:
    """Post the transition's Events, then merge-patch only the status fields that changed.

    ``update`` is a builder's :class:`StatusUpdate` (its Events included) or a status mapping with
    its ``events``; Warning Events are counted in ``kubegym_errors_total`` under ``kind``. Returns
    the fields written, or None when nothing changed (a no-op reconcile writes nothing) or the
    owner was deleted after it was read (404: not an error, nothing is left to write to).
    """
    if isinstance(update, StatusUpdate):
        status: Mapping[str, Any] = update.status
        events = [*update.events, *events]
    else:
        status = update
    previous = owner.get("status") or {}
    changed = {key: value for key, value in status.items() if previous.get(key) != value}
    for event in events:
        metrics.count_event(kind, event)
        api.post_event(owner, event.type, event.reason, event.message)
    if not changed:
        return None
    try:
        api.merge_patch_status(owner, {key: replacing(previous.get(key), value) for key, value in changed.items()})
    except ApiError as e:
        if e.status != 404:
            raise
        # Deleted after this reconcile read it (the view lags the API server): nothing to write.
        meta = owner.get("metadata") or {}
        log.info("%s %s/%s was deleted meanwhile; status not written", kind, meta.get("namespace"), meta.get("name"))
        return None
    return changed


def replacing(before: Any, after: Any) -> Any:
    """The JSON merge patch that turns ``before`` into ``after``: ``after`` itself, with ``None``
    (delete) for every key of a nested object that ``after`` no longer has — a merge patch keeps
    the keys it does not mention, so a field a status stops carrying (``cost.asOf`` once no pod
    runs) would otherwise stay forever, and the next reconcile would find a difference again."""
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return after
    patch = {key: replacing(before.get(key), value) for key, value in after.items()}
    patch.update({key: None for key in before if key not in after})
    return patch


# --- small predicates -----------------------------------------------------------------------


def is_terminal(obj: Mapping[str, Any]) -> bool:
    """The object succeeded or failed: final, it never gets a new Job."""
    return (obj.get("status") or {}).get("phase") in TERMINAL_PHASES


def deleting(obj: Mapping[str, Any]) -> bool:
    """The object has a deletionTimestamp (it goes once its finalizers or dependents are done)."""
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def namespace_terminating(error: ApiError) -> bool:
    """The API server refused to create in a namespace that is being deleted."""
    return error.status == 403 and "NamespaceTerminating" in str(error.body or "")


# --- the periodic resync ----------------------------------------------------------------------


def needs_resync(adapter: JobOwner[Any], api: ClusterAPI, owner: Obj, now: dt.datetime) -> bool:
    """Whether the periodic resync must reconcile the unfinished ``owner``: its verdict depends on
    the clock (:meth:`JobOwner.clock_dependent`), or its pod's credentials are due for a refresh."""
    if adapter.clock_dependent(api, owner):
        return True
    meta = owner["metadata"]
    job = api.get(Kind.JOB, meta["namespace"], adapter.job_name(owner))
    return job is not None and not deleting(job) and refresh_due(job, now)


def due_for_resync(
    kind: Kind,
    api: ClusterAPI,
    clock_dependent: Callable[[ClusterAPI, Obj], bool],
    gate: ReconcileGate = GATE,
) -> list[tuple[str, str]]:
    """(namespace, name) of the ``kind`` objects the periodic resync must reconcile: the unfinished
    ones whose verdict depends on the clock, and every one whose last reconcile failed.

    It walks the watched objects (``api.objects``, no LIST) and asks ``clock_dependent``; the rest
    reconcile on their own events.
    """
    failed = {(key[1], key[2]) for key in gate.failed() if isinstance(key, tuple) and key[0] == kind}
    due: list[tuple[str, str]] = []
    for obj in api.objects(kind):
        meta = obj["metadata"]
        key = (str(meta["namespace"]), str(meta["name"]))
        if key in failed or (not is_terminal(obj) and clock_dependent(api, obj)):
            due.append(key)
            failed.discard(key)
    return due + sorted(failed)  # failed and since gone: one more reconcile clears them
