"""The bad-input corpus (:mod:`.cases`) against the real local cluster and a real operator process.

Apply-time cases run one by one: each is one ``kubectl apply`` that the API server (or kubectl)
refuses in well under a second. Every other case is applied at once into one namespace and
waited on together — most of them start a runner pod, and the machine has two cores — while a
poller records every pod and Job each case's object ever had, so a retried user error or a Job
that should never have existed is seen even after it is gone.

Before the first case a bystander run (a small real PPO CartPole TrainingRun) starts in a
namespace of its own; after the last, the bystander must have succeeded untouched (one pod, no
restart, trained from 0), and the operator must be the same process, still running, with no
traceback in its log since the corpus began.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from kubegym_localcluster import layout
from kubegym_localcluster.cluster import LocalCluster, copy_s3_secret
from kubegym_localcluster.kube import ApiError, Kube
from kubegym_operator.builders.naming import MAX_LABEL, label_value, training_job_name
from tests.conftest import OperatorProcess
from tests.integration.benchmark.support import s3_client, s3_env
from tests.integration.corpus.cases import CASES, CONCURRENT_PODS, Case, Ctx, Failed, Manifest, Rejected, Waits, Works
from tests.integration.trainingrun.support import training_run
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

API = "/apis/kubegym.io/v1alpha1/namespaces/{ns}/{plural}"
PLURALS = {"TrainingRun": "trainingruns", "Benchmark": "benchmarks", "Experiment": "experiments"}
#: The label that ties a kind's Jobs and pods to their owner (an Experiment owns runs, not pods).
OWNER_LABELS = {"TrainingRun": "kubegym.io/training-run", "Benchmark": "kubegym.io/benchmark"}
EXPERIMENT_LABEL = "kubegym.io/experiment"
#: How long the failure-time cases may take together (119-331 s measured on 2 shared cores).
WAIT_SECONDS = 480
POLL_SECONDS = 2.0

#: The bystander's CPU request; the corpus pods share what it leaves of the node's.
BYSTANDER_CPU = "250m"

APPLY_CASES = [c for c in CASES if isinstance(c.expect, Rejected)]
LATER_CASES = [c for c in CASES if not isinstance(c.expect, Rejected)]


def _millicores(quantity: str) -> int:
    return int(quantity.removesuffix("m")) if quantity.endswith("m") else int(float(quantity) * 1000)


def _kind(case: Case, ctx: Ctx) -> str:
    subject = case.manifests(ctx)[-1]
    return str(json.loads(subject)["kind"] if isinstance(subject, str) else subject["kind"])


def _names(kube: Kube, ns: str, kind: str) -> set[str]:
    return {o["metadata"]["name"] for o in kube.get(API.format(ns=ns, plural=PLURALS[kind]))["items"]}


def _text(manifest: Manifest | str) -> str:
    return manifest if isinstance(manifest, str) else json.dumps(manifest)


def _namespace(kube: Kube, cluster: LocalCluster, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    wait_until(lambda: kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"), 60, f"{name}'s ServiceAccount")
    copy_s3_secret(kube, name, cluster.minio())
    return name


def _delete_namespace(kube: Kube, name: str) -> None:
    try:
        kube.delete(f"/api/v1/namespaces/{name}")
    except ApiError as e:
        if e.status != 404:
            raise


@dataclass
class OperatorWatch:
    """The operator process as the corpus found it, and where its log stood."""

    pid: int
    log_offset: int


@pytest.fixture(scope="module")
def watch(operator: OperatorProcess) -> OperatorWatch:
    assert operator.proc is not None and operator.proc.poll() is None, operator.tail()
    return OperatorWatch(operator.proc.pid, operator.log.stat().st_size)


@dataclass
class Bystander:
    namespace: str
    name: str = "bystander"
    total: int = 6144


@pytest.fixture(scope="module")
def bystander(cluster: LocalCluster, kube: Kube, watch: OperatorWatch) -> Iterator[Bystander]:
    """A real PPO CartPole run in a namespace of its own, started before the first case."""
    by = Bystander(_namespace(kube, cluster, "corpus-bystander"))
    manifest = training_run(
        by.name,
        totalTimesteps=by.total,
        hyperparameters={"n_steps": 512, "batch_size": 64},
        checkpoint={"everySteps": 2048},
        resources={"cpu": BYSTANDER_CPU, "memory": "1536Mi"},
    )
    Kubectl(cluster.kubeconfig, by.namespace).apply(manifest)
    yield by
    _delete_namespace(kube, by.namespace)


@pytest.fixture(scope="module")
def ctx(cluster: LocalCluster, kube: Kube) -> Iterator[Ctx]:
    """The corpus namespace (with the kubegym-s3 Secret) and its storage."""
    ns = _namespace(kube, cluster, "corpus")
    env = s3_env(kube, ns)
    cpu = kube.get(f"/api/v1/nodes/{layout.NODE_NAME}")["status"]["allocatable"]["cpu"]
    per_pod = (_millicores(cpu) - _millicores(BYSTANDER_CPU)) // CONCURRENT_PODS
    assert per_pod >= 100, f"the node's {cpu} CPUs leave too little for {CONCURRENT_PODS} corpus pods"
    yield Ctx(
        kube=kube,
        kubectl=Kubectl(cluster.kubeconfig, ns),
        namespace=ns,
        s3=s3_client(env),
        bucket=env["BUCKET"],
        endpoint=cluster.minio().endpoint,
        secrets=(env["AWS_SECRET_ACCESS_KEY"],),
        resources={"cpu": f"{per_pod}m", "memory": "1536Mi"},
    )
    _delete_namespace(kube, ns)


# --- apply time ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", APPLY_CASES, ids=[c.name for c in APPLY_CASES])
def test_rejected_at_apply(case: Case, ctx: Ctx, bystander: Bystander) -> None:
    assert isinstance(case.expect, Rejected)
    manifests = case.manifests(ctx)
    for needed in manifests[:-1]:
        ctx.kubectl.apply(_text(needed))
    result = ctx.kubectl.apply(_text(manifests[-1]), check=False)
    assert result.returncode != 0, f"{case.name} was accepted:\n{result.stdout}"
    for needle in case.expect.needles:
        assert needle in result.stderr, f"{case.name}: {needle!r} not in:\n{result.stderr}"
    assert case.subject not in _names(ctx.kube, ctx.namespace, _kind(case, ctx))


# --- after apply: everything at once ------------------------------------------------------------


@dataclass
class Outcome:
    """What one failure-time case's subject did: its last status, every pod and Job it ever had."""

    kind: str
    status: dict[str, Any] = field(default_factory=dict)
    pods: set[str] = field(default_factory=set)
    jobs: set[str] = field(default_factory=set)
    #: Runs of an Experiment (its children), ever seen.
    runs: set[str] = field(default_factory=set)
    #: (type, reason) of the Events on the subject.
    events: set[tuple[str, str]] = field(default_factory=set)
    #: Seconds from the corpus apply to the expected stop (None: never got there).
    settled_after: float | None = None


def _settled(expect: Failed | Waits | Works, status: dict[str, Any]) -> bool:
    phase = status.get("phase")
    if phase in ("Failed", "Succeeded"):
        return True
    if isinstance(expect, Waits):
        message = str(status.get("message") or "")
        return status.get("reason") == expect.reason and all(n in message for n in expect.needles)
    return False


def _observe(kube: Kube, ns: str, subjects: dict[str, tuple[str, str]], outcomes: dict[str, Outcome]) -> None:
    """One poll: statuses of the subjects, and the pods, Jobs and runs that belong to them."""
    objects = {
        kind: {o["metadata"]["name"]: o for o in kube.get(API.format(ns=ns, plural=plural))["items"]}
        for kind, plural in PLURALS.items()
    }
    by_label: dict[tuple[str, str], str] = {}
    for case_name, (kind, name) in subjects.items():
        outcomes[case_name].status = dict((objects[kind].get(name) or {}).get("status") or {})
        label = OWNER_LABELS.get(kind, EXPERIMENT_LABEL)
        by_label[(label, label_value(name))] = case_name
    for path, attr in ((f"/api/v1/namespaces/{ns}/pods", "pods"), (f"/apis/batch/v1/namespaces/{ns}/jobs", "jobs")):
        for item in kube.get(path)["items"]:
            for label, value in (item["metadata"].get("labels") or {}).items():
                owner = by_label.get((label, value))
                if owner is not None:
                    getattr(outcomes[owner], attr).add(item["metadata"]["name"])
    for run in objects["TrainingRun"].values():
        value = (run["metadata"].get("labels") or {}).get(EXPERIMENT_LABEL)
        parent = by_label.get((EXPERIMENT_LABEL, value)) if value else None
        if parent is not None:
            outcomes[parent].runs.add(run["metadata"]["name"])


@pytest.fixture(scope="module")
def outcomes(ctx: Ctx, bystander: Bystander, watch: OperatorWatch, operator: OperatorProcess) -> dict[str, Outcome]:
    """Prepare, apply and wait for every failure-time case together; what each one did."""
    for case in LATER_CASES:
        if case.prepare is not None:
            case.prepare(case.subject, ctx)
    # The slowest first (the scheduler starts pods in creation order): the retried cases wait out
    # the Job's back-off between their pods, the valid ones train.
    slow = [c for c in LATER_CASES if isinstance(c.expect, Works) or getattr(c.expect, "max_pods", 1) > 1]
    order = slow + [c for c in LATER_CASES if c not in slow]
    items = [json.loads(_text(m)) for case in order for m in case.manifests(ctx)]
    started = time.monotonic()
    ctx.kubectl.run("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    for case in LATER_CASES:
        if case.after_apply is not None:
            case.after_apply(case.subject, ctx)
    subjects = {c.name: (_kind(c, ctx), c.subject) for c in LATER_CASES}
    results = {c.name: Outcome(kind=subjects[c.name][0]) for c in LATER_CASES}
    deadline = started + WAIT_SECONDS
    while True:
        _observe(ctx.kube, ctx.namespace, subjects, results)
        now = time.monotonic()
        for case in LATER_CASES:
            outcome = results[case.name]
            assert not isinstance(case.expect, Rejected)
            if outcome.settled_after is None and _settled(case.expect, outcome.status):
                outcome.settled_after = round(now - started, 1)
        if all(o.settled_after is not None for o in results.values()) or now > deadline:
            break
        time.sleep(POLL_SECONDS)
    for event in ctx.kube.get(f"/api/v1/namespaces/{ctx.namespace}/events")["items"]:
        involved = event.get("involvedObject") or {}
        for case_name, (kind, name) in subjects.items():
            if (involved.get("kind"), involved.get("name")) == (kind, name):
                results[case_name].events.add((event.get("type", ""), event.get("reason", "")))
    timings = {name: o.settled_after for name, o in sorted(results.items(), key=lambda kv: kv[1].settled_after or 1e9)}
    print(f"\n[corpus] {len(LATER_CASES)} cases after apply, settled after (s): {json.dumps(timings)}")
    return results


def _describe(case: Case, outcome: Outcome, operator: OperatorProcess) -> str:
    return (
        f"{case.name} ({outcome.kind} {case.subject}) after {outcome.settled_after}s:\n"
        f"status: {json.dumps(outcome.status, indent=1, default=str)[:4000]}\n"
        f"pods: {sorted(outcome.pods)} jobs: {sorted(outcome.jobs)} events: {sorted(outcome.events)}\n"
        f"operator log:\n{operator.tail(15)}"
    )


def _nothing_trained(kind: str, outcome: Outcome) -> str | None:
    """Why the status says training or evaluation happened, or None."""
    st = outcome.status
    if kind == "TrainingRun":
        if (st.get("progress") or {}).get("timesteps"):
            return f"trained {st['progress']['timesteps']} timesteps"
        if (st.get("checkpoints") or {}).get("count"):
            return "wrote checkpoints"
        if st.get("result"):
            return "has a result"
    if kind == "Benchmark":
        scored = [r for r in st.get("results") or [] if not r.get("error")]
        if scored or st.get("bestModel"):
            return f"evaluated {scored or st.get('bestModel')}"
    if kind == "Experiment" and outcome.runs:
        return f"created runs {sorted(outcome.runs)[:3]}"
    return None


@pytest.mark.parametrize("case", LATER_CASES, ids=[c.name for c in LATER_CASES])
def test_stopped_after_apply(case: Case, ctx: Ctx, outcomes: dict[str, Outcome], operator: OperatorProcess) -> None:
    outcome = outcomes[case.name]
    st, expect, about = outcome.status, case.expect, _describe(case, outcome, operator)
    message = str(st.get("message") or "")
    if isinstance(expect, Failed):
        assert (st.get("phase"), st.get("reason")) == ("Failed", expect.reason), about
        for needle in expect.needles:
            assert needle in message, f"{needle!r} not in the message\n{about}"
        condition = next((c for c in st.get("conditions", []) if c["type"] == "Failed"), None)
        assert condition is not None and (condition["status"], condition["reason"]) == ("True", expect.reason), about
        assert ("Warning", expect.reason) in outcome.events, about
        assert (why := _nothing_trained(outcome.kind, outcome)) is None, f"{why}\n{about}"
        assert len(outcome.pods) <= expect.max_pods, about
        if expect.max_pods == 0:
            assert not outcome.jobs, about
    elif isinstance(expect, Waits):
        assert (st.get("phase"), st.get("reason")) == ("Pending", expect.reason), about
        for needle in expect.needles:
            assert needle in message, f"{needle!r} not in the message\n{about}"
        assert not outcome.jobs and not outcome.pods, about
    else:
        assert isinstance(expect, Works)
        assert st.get("phase") == "Succeeded", about
        spec = case.manifests(ctx)[-1]
        assert isinstance(spec, dict)
        assert (st.get("result") or {}).get("timesteps") == spec["spec"]["totalTimesteps"], about
        job = training_job_name(case.subject)
        assert st.get("jobName") == job and len(job) <= MAX_LABEL and job in outcome.jobs, about
        assert job != f"{case.subject}-train", "the name had to change, so it carries a hash"
    for value in ctx.secrets:
        assert value not in json.dumps(st), f"a credential in the status of {case.name}"


# --- after the corpus --------------------------------------------------------------------------


def test_the_operator_and_the_bystander_are_untouched(
    kube: Kube, outcomes: dict[str, Outcome], bystander: Bystander, watch: OperatorWatch, operator: OperatorProcess
) -> None:
    assert operator.proc is not None and operator.proc.poll() is None, f"the operator exited\n{operator.tail()}"
    assert operator.proc.pid == watch.pid, "the operator was restarted"
    with operator.log.open("rb") as log:
        log.seek(watch.log_offset)
        since = log.read().decode(errors="replace")
    assert "Traceback" not in since, since[since.index("Traceback") - 2000 :][:6000]

    ns, name = bystander.namespace, bystander.name
    path = f"{API.format(ns=ns, plural='trainingruns')}/{name}"
    st = wait_until(
        lambda: (s := kube.get(path).get("status") or {}).get("phase") in ("Succeeded", "Failed") and s,
        300,
        "the bystander to finish",
        describe=lambda: f"{kube.get(path).get('status')}\n{operator.tail(20)}",
    )
    assert st["phase"] == "Succeeded", st
    assert st["result"]["timesteps"] == bystander.total, st
    assert st["progress"].get("resumedFromStep") in (0, None), st
    storage = next((c for c in st.get("conditions", []) if c["type"] == "StorageAvailable"), None)
    assert storage is None or storage["status"] == "True", st
    pods = kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"kubegym.io/training-run={name}")["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    restarts = [cs.get("restartCount", 0) for cs in pods[0]["status"].get("containerStatuses", [])]
    assert restarts and not any(restarts), pods[0]["status"]
    assert st["jobName"] == f"{name}-train" and layout.BUCKET in st["result"]["modelUri"], st
