"""The watch-fed view: reads from kopf's indexes, the operator's own writes until the watch catches
up, and nothing of an object once its DELETED event arrived."""

from __future__ import annotations

from typing import Any

from kubegym_operator.watched import DELETION_MEMORY_SECONDS, Kind, WatchedObjects, slim

Obj = dict[str, Any]


def job(name: str = "cartpole-train", *, rv: int, uid: str = "u1", **extra: Any) -> Obj:
    obj: Obj = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": str(rv)},
        "spec": {"suspend": False},
    }
    obj.update(extra)
    return obj


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def read(view: WatchedObjects, name: str = "cartpole-train") -> Obj:
    obj = view.get(Kind.JOB, "ns", name)
    assert obj is not None
    return obj


def view_with(*jobs: Obj, clock: Clock | None = None) -> tuple[WatchedObjects, dict[tuple[str, str], list[Obj]]]:
    index: dict[tuple[str, str], list[Obj]] = {}
    for j in jobs:
        index.setdefault((j["metadata"]["namespace"], j["metadata"]["name"]), []).append(j)
    return WatchedObjects({Kind.JOB: index}, clock=clock or Clock()), index


def test_reads_come_from_the_index_and_the_newest_incarnation_wins() -> None:
    old, new = job(rv=5, uid="old"), job(rv=9, uid="new")
    view, _ = view_with(old, new)
    assert view.get(Kind.JOB, "ns", "cartpole-train") == new
    assert view.get(Kind.JOB, "ns", "other") is None
    assert view.get(Kind.TRAINING_RUN, "ns", "cartpole") is None  # not attached yet: empty


def test_a_created_object_is_seen_before_its_added_event_and_the_watch_takes_over() -> None:
    view, index = view_with()
    view.wrote("Job", job(rv=10))
    assert view.get(Kind.JOB, "ns", "cartpole-train") is not None  # the POST's response
    index[("ns", "cartpole-train")] = [job(rv=10, status={"active": 1})]
    assert read(view)["status"] == {"active": 1}  # caught up: the watch's


def test_a_patch_response_wins_over_an_older_watched_copy_until_the_watch_delivers_it() -> None:
    view, index = view_with(job(rv=10))
    view.wrote("Job", job(rv=12, spec={"suspend": True}))
    assert read(view)["spec"] == {"suspend": True}
    index[("ns", "cartpole-train")] = [job(rv=11)]  # an older event: still our write
    assert read(view)["spec"] == {"suspend": True}
    index[("ns", "cartpole-train")] = [job(rv=14, spec={"suspend": True, "x": 1})]
    assert read(view)["spec"] == {"suspend": True, "x": 1}


def test_a_response_older_than_the_watched_copy_is_not_kept() -> None:
    view, _ = view_with(job(rv=20))
    view.wrote("Job", job(rv=15, spec={"suspend": True}))
    assert read(view)["metadata"]["resourceVersion"] == "20"


def test_a_slow_response_to_an_earlier_write_does_not_replace_a_later_one() -> None:
    view, _ = view_with()
    view.wrote("Job", job(rv=12, spec={"n": 2}))
    view.wrote("Job", job(rv=11, spec={"n": 1}))
    assert read(view)["spec"] == {"n": 2}


def test_deleted_event_drops_the_written_copy_and_a_late_response_cannot_revive_it() -> None:
    view, index = view_with()
    view.wrote("Job", job(rv=10))
    view.forget("Job", job(rv=13))  # the watch: ADDED, then DELETED before we looked
    assert view.get(Kind.JOB, "ns", "cartpole-train") is None
    view.wrote("Job", job(rv=10))  # the create's response, arriving after the DELETED event
    assert view.get(Kind.JOB, "ns", "cartpole-train") is None
    view.wrote("Job", job(rv=20, uid="u2"))  # a new object under the name is a different story
    assert read(view)["metadata"]["uid"] == "u2"
    assert not index


def test_deletions_are_remembered_for_a_while_only() -> None:
    clock = Clock()
    view, _ = view_with(clock=clock)
    view.forget("Job", job(rv=13))
    clock.t += DELETION_MEMORY_SECONDS + 1
    view.wrote("Job", job(rv=10))
    assert view.get(Kind.JOB, "ns", "cartpole-train") is not None


def test_a_background_delete_hides_the_object_until_the_watch_sees_it_gone_or_replaced() -> None:
    view, index = view_with(job(rv=10))
    view.deleted("Job", "ns", "cartpole-train", job(rv=10))  # the API answers with the last state
    assert view.get(Kind.JOB, "ns", "cartpole-train") is None
    index[("ns", "cartpole-train")] = [job(rv=30, uid="u2")]  # recreated under the same name
    assert read(view)["metadata"]["uid"] == "u2"


def test_a_foreground_delete_shows_the_object_being_deleted() -> None:
    view, index = view_with(job(rv=10))
    deleting = job(rv=11, metadata={"deletionTimestamp": "2026-03-01T12:00:00Z"})
    deleting["metadata"].update(name="cartpole-train", namespace="ns", uid="u1", resourceVersion="11")
    view.deleted("Job", "ns", "cartpole-train", deleting)
    assert read(view)["metadata"]["deletionTimestamp"]
    del index[("ns", "cartpole-train")]
    view.forget("Job", job(rv=12))
    assert view.get(Kind.JOB, "ns", "cartpole-train") is None


def test_writes_of_kinds_it_does_not_watch_are_ignored() -> None:
    view, _ = view_with()
    view.wrote("ServiceAccount", {"kind": "ServiceAccount", "metadata": {"name": "a", "namespace": "ns"}})
    view.deleted("Role", "ns", "a", None)
    assert view.keys(Kind.JOB) == []


def test_pods_by_job_and_objects_by_kind() -> None:
    pods = {("ns", "cartpole-train"): [{"metadata": {"name": "p1"}}, {"metadata": {"name": "p2"}}]}
    view = WatchedObjects({Kind.JOB: {("ns", "cartpole-train"): [job(rv=1)]}}, pods)
    assert [p["metadata"]["name"] for p in view.pods_of_job("ns", "cartpole-train")] == ["p1", "p2"]
    assert view.pods_of_job("ns", "other") == []
    assert [o["metadata"]["name"] for o in view.objects(Kind.JOB)] == ["cartpole-train"]


def test_attach_switches_to_kopfs_live_index() -> None:
    view = WatchedObjects()
    index: dict[tuple[str, str], list[Obj]] = {}
    view.attach(Kind.JOB, index)
    index[("ns", "cartpole-train")] = [job(rv=1)]
    assert view.get(Kind.JOB, "ns", "cartpole-train") is not None
    pods: dict[tuple[str, str], list[Obj]] = {("ns", "cartpole-train"): [{"metadata": {"name": "p"}}]}
    view.attach(Kind.POD, pods)
    assert len(view.pods_of_job("ns", "cartpole-train")) == 1


def test_slim_keeps_of_pod_specs_only_what_reconciles_read_without_touching_the_body() -> None:
    container = {
        "name": "runner",
        "image": "kubegym-runner:dev",
        "command": ["kubegym-runner", "train"],
        "env": [{"name": "KUBEGYM_CONFIG", "value": "{...}"}],
        "volumeMounts": [{"name": "storage", "mountPath": "/var/run/kubegym"}],
        "resources": {"limits": {"memory": "1Gi"}},
    }
    pod_spec = {
        "containers": [container],
        "nodeSelector": {"x": "y"},
        "tolerations": [{"key": "gpu"}],
        "priorityClassName": "high",
        "volumes": [{"name": "storage", "secret": {"secretName": "s"}}],
        "securityContext": {"runAsNonRoot": True},
        "serviceAccountName": "runner",
    }
    body: Obj = {
        "kind": "Job",
        "metadata": {"name": "j", "managedFields": [{"manager": "kopf"}], "labels": {"a": "b"}},
        "spec": {"suspend": True, "template": {"metadata": {"labels": {"c": "d"}}, "spec": pod_spec}},
        "status": {"active": 1},
    }
    slimmed = slim("Job", body)
    assert slimmed["metadata"] == {"name": "j", "labels": {"a": "b"}}
    assert slimmed["status"] == {"active": 1} and slimmed["spec"]["suspend"] is True
    kept = {
        "containers": [{"name": "runner", "resources": {"limits": {"memory": "1Gi"}}}],
        "nodeSelector": {"x": "y"},
        "tolerations": [{"key": "gpu"}],
        "priorityClassName": "high",
        "volumes": [{"name": "storage"}],
    }
    assert slimmed["spec"]["template"] == {"metadata": {"labels": {"c": "d"}}, "spec": kept}
    assert body["spec"]["template"]["spec"]["containers"][0]["env"]  # the original is untouched
    slimmed["spec"]["template"]["spec"]["nodeSelector"]["x"] = "z"
    assert pod_spec["nodeSelector"] == {"x": "y"}  # nor shared
    pod = slim("Pod", {"kind": "Pod", "metadata": {}, "spec": {**pod_spec, "nodeName": "local"}})
    assert pod["spec"] == {**kept, "nodeName": "local"}
    run = slim("TrainingRun", {"kind": "TrainingRun", "metadata": {}, "spec": {"env": 1}})
    assert run["spec"] == {"env": 1}
