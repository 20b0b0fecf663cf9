"""The live API — watch-fed reads, HTTP writes — as the operator runs it, over a fake API server:
what reaches the API server per reconcile, and the write-through overlay that spares a second
POST when the watch has not yet delivered what the operator just created.

Before the watch-fed view, every reconcile of a run made 3 reads (GET run, GET Job, LIST pods),
a no-op one included; the first one made 3 reads + 6 writes.
"""

from __future__ import annotations

from collections import Counter

from kubegym_operator import reconciler
from kubegym_operator.clusterapi import LiveClusterAPI
from kubegym_operator.jobowners.benchmark import BenchmarkJobs, WaitIndex
from kubegym_operator.jobowners.trainingrun import TrainingRunJobs
from kubegym_operator.kubeapi import collection_path, object_path
from kubegym_operator.reconciler import ReconcileGate
from kubegym_operator.watched import Kind
from tests.unit.operator.builders import NAMESPACE, SETTINGS, make_benchmark, make_pod, make_run, now
from tests.unit.operator.fakeapi import FakeCluster, FakeHttp, FakeWatch


def live(*objects: dict[str, object]) -> tuple[FakeCluster, FakeWatch, FakeHttp, LiveClusterAPI]:
    cluster = FakeCluster(*objects)
    watch = FakeWatch(cluster)
    watch.deliver()
    http = FakeHttp(cluster)
    return cluster, watch, http, LiveClusterAPI(watch.view, http)


def reconcile_run(api: LiveClusterAPI) -> object:
    return reconciler.reconcile(TrainingRunJobs(SETTINGS), api, NAMESPACE, "cartpole", now=now, gate=ReconcileGate())


def methods(http: FakeHttp) -> dict[str, int]:
    return dict(Counter(r.method for r in http.requests))


def test_first_reconcile_of_a_new_run_reads_nothing_from_the_api_server() -> None:
    _, _, http, api = live(make_run())
    reconcile_run(api)
    assert http.reads() == []
    assert methods(http) == {"POST": 5, "PATCH": 1}  # identity x3, Job, Event; the status


def test_a_reconcile_of_a_run_already_seen_makes_no_get_or_list() -> None:
    cluster, watch, http, api = live(make_run())
    reconcile_run(api)
    job = cluster.obj(Kind.JOB, NAMESPACE, "cartpole-train")
    assert job is not None
    cluster.add(make_pod(job, "Running", running=30))
    watch.deliver()
    http.requests.clear()
    reconcile_run(api)  # the pod runs: a status change, written
    assert http.reads() == []
    assert methods(http) == {"POST": 1, "PATCH": 1}
    http.requests.clear()
    reconcile_run(api)  # nothing new: nothing at all
    assert http.requests == []


def test_a_deleted_run_whose_jobs_deleted_event_came_first_gets_no_new_job() -> None:
    """The garbage collector deletes a deleted run's Job; that Job's DELETED event can reach the
    operator before the run's own, while the view still holds the run. No Job (nor credentials,
    nor identity) is created for it: a run that has had a Job is confirmed by one GET first."""
    cluster, watch, http, api = live(make_run())
    reconcile_run(api)
    watch.deliver()
    cluster.remove(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    cluster.remove(Kind.JOB, NAMESPACE, "cartpole-train")
    watch.deliver(Kind.JOB)  # the Job's DELETED event; the run's is late
    http.requests.clear()
    reconcile_run(api)
    assert [(r.method, r.path) for r in http.requests] == [
        ("GET", "/apis/kubegym.io/v1alpha1/namespaces/research/trainingruns/cartpole")
    ]


def test_a_job_missing_under_a_live_run_is_created_again_after_one_get() -> None:
    cluster, watch, http, api = live(make_run())
    reconcile_run(api)
    watch.deliver()
    cluster.remove(Kind.JOB, NAMESPACE, "cartpole-train")  # deleted by hand
    watch.deliver()
    http.requests.clear()
    reconcile_run(api)
    first = http.requests[0]
    assert (first.method, first.path) == ("GET", "/apis/kubegym.io/v1alpha1/namespaces/research/trainingruns/cartpole")
    assert cluster.obj(Kind.JOB, NAMESPACE, "cartpole-train") is not None


def test_the_runs_status_event_before_the_jobs_added_event_does_not_create_the_job_again() -> None:
    cluster, watch, http, api = live(make_run())
    reconcile_run(api)
    watch.deliver(Kind.TRAINING_RUN)  # our status write's MODIFIED event; the Job's ADDED is late
    http.requests.clear()
    reconcile_run(api)
    assert http.requests == []  # no POST, no 409, no GET: the create's response stands in for the Job
    watch.deliver()
    reconcile_run(api)
    assert http.requests == []
    assert len(cluster.of_kind(Kind.JOB)) == 1


def test_the_runs_own_status_write_is_read_back_before_the_watch_delivers_it() -> None:
    _, _, http, api = live(make_run())
    reconcile_run(api)  # the watch delivers nothing of it
    http.requests.clear()
    reconcile_run(api)
    assert http.requests == []  # the status patch's response is what the view reads: no second write


def test_a_waiting_benchmark_reads_its_training_run_from_the_view() -> None:
    models = [{"name": "agent", "trainingRunRef": {"name": "cartpole"}}]
    _, _, http, api = live(make_benchmark(models=models), make_run(status={"phase": "Running"}))
    adapter = BenchmarkJobs(SETTINGS, WaitIndex())
    reconciler.reconcile(adapter, api, NAMESPACE, "compare", now=now, gate=ReconcileGate())
    http.requests.clear()
    reconciler.reconcile(adapter, api, NAMESPACE, "compare", now=now, gate=ReconcileGate())
    assert http.requests == []


def test_paths_of_the_kinds_the_operator_writes() -> None:
    assert collection_path("Job", "ns") == "/apis/batch/v1/namespaces/ns/jobs"
    assert collection_path("ServiceAccount", "ns") == "/api/v1/namespaces/ns/serviceaccounts"
    assert object_path("TrainingRun", "ns", "a") == "/apis/kubegym.io/v1alpha1/namespaces/ns/trainingruns/a"
    assert object_path("RoleBinding", "ns", "a") == "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings/a"


def test_the_resync_pass_over_idle_runs_reaches_the_api_server_not_at_all() -> None:
    idle = [make_run(f"idle-{i}", status={"phase": "Running", "reason": "Training"}) for i in range(50)]
    stuck = make_run("stuck", status={"phase": "Pending", "reason": "ImagePullFailed"})
    _, _, http, api = live(*idle, stuck)
    due = reconciler.due_for_resync(Kind.TRAINING_RUN, api, TrainingRunJobs(SETTINGS).clock_dependent, ReconcileGate())
    assert due == [(NAMESPACE, "stuck")]
    assert http.requests == []
