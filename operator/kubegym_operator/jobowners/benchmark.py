"""A Benchmark as the owner of its evaluation Job (adapter of :func:`kubegym_operator.reconciler.reconcile`).

Before its Job exists a Benchmark resolves its models: a ``trainingRunRef`` becomes that run's
final model once the run has succeeded (read from the watched runs), and until then the
Benchmark waits (ModelsReady=False) with no Job. Who waits for which run is kept in
:data:`WAITING`, so that the run's events wake exactly those Benchmarks; kopf's initial listing
reconciles every Benchmark after a restart, which fills it again.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from kubegym_api.runnerconfig import BenchmarkModel
from kubegym_operator.builders.benchmark import (
    Resolution,
    build_evaluate_config,
    evaluation_job_name,
    parse_spec,
    referenced_runs,
    render_evaluator_rbac,
    render_job,
    resolve_models,
    ttl_patch,
)
from kubegym_operator.builders.benchmark_status import compute_status, failed_status
from kubegym_operator.builders.credentials import StorageAccess, access_of
from kubegym_operator.builders.job import JobUpdate, RenderError, minted_credentials
from kubegym_operator.builders.status import StatusUpdate
from kubegym_operator.clusterapi import ClusterAPI
from kubegym_operator.jobowners.trainingrun import waits_out_a_grace_period
from kubegym_operator.kubeapi import Obj
from kubegym_operator.reconciler import JobPlan
from kubegym_operator.settings import Settings
from kubegym_operator.watched import Kind


class WaitIndex:
    """Which Benchmarks wait for which TrainingRun, per namespace (in memory; thread safe)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._by_run: dict[tuple[str, str], set[str]] = {}
        self._by_benchmark: dict[tuple[str, str], set[str]] = {}

    def set(self, namespace: str, benchmark: str, runs: Sequence[str]) -> None:
        """Record that ``benchmark`` in ``namespace`` now waits for exactly ``runs``."""
        with self._guard:
            for run in self._by_benchmark.pop((namespace, benchmark), set()):
                waiting = self._by_run.get((namespace, run))
                if waiting is not None:
                    waiting.discard(benchmark)
                    if not waiting:
                        del self._by_run[(namespace, run)]
            if runs:
                self._by_benchmark[(namespace, benchmark)] = set(runs)
                for run in runs:
                    self._by_run.setdefault((namespace, run), set()).add(benchmark)

    def waiting_for(self, namespace: str, run: str) -> list[str]:
        """The Benchmarks in ``namespace`` that wait for TrainingRun ``run``."""
        with self._guard:
            return sorted(self._by_run.get((namespace, run), ()))


WAITING = WaitIndex()


@dataclass(frozen=True)
class BenchmarkJobs:
    """The Benchmark adapter, with the operator's ``settings``; ``waiting`` records who waits for which run."""

    settings: Settings
    waiting: WaitIndex = WAITING

    kind = Kind.BENCHMARK

    def job_name(self, owner: Obj) -> str:
        return evaluation_job_name(owner["metadata"]["name"])

    def plan_job(self, api: ClusterAPI, owner: Obj) -> JobPlan[Resolution]:
        meta = owner["metadata"]
        spec = parse_spec(owner)
        runs = {ref: api.get(Kind.TRAINING_RUN, meta["namespace"], ref) for ref in referenced_runs(spec)}
        resolution = resolve_models(spec, runs, self.settings)
        self.waiting.set(meta["namespace"], meta["name"], list(resolution.waiting))
        if resolution.models is None:
            return JobPlan(None, context=resolution)
        job = render_job(owner, self.settings, resolution.models)
        return JobPlan(
            job,
            tuple(render_evaluator_rbac(owner)),
            context=resolution,
            storage=self._access(owner, resolution.models),
        )

    def plan_update(self, owner: Obj, job: Obj) -> JobUpdate:
        return JobUpdate(patch=ttl_patch(owner, job, self.settings))

    def storage_access(self, api: ClusterAPI, owner: Obj, job: Obj) -> StorageAccess | None:
        """The models as they resolve now: a referenced run that succeeded keeps its model URI."""
        meta = owner["metadata"]
        spec = parse_spec(owner)
        runs = {ref: api.get(Kind.TRAINING_RUN, meta["namespace"], ref) for ref in referenced_runs(spec)}
        resolution = resolve_models(spec, runs, self.settings)
        if resolution.models is None:
            raise RenderError("ModelsNotResolved", "a model's TrainingRun is gone or no longer succeeded")
        return self._access(owner, resolution.models)

    def _access(self, owner: Obj, models: list[BenchmarkModel]) -> StorageAccess | None:
        config = build_evaluate_config(owner, models, self.settings)
        if not minted_credentials(config.storage):
            return None
        return access_of(config, owner["metadata"]["namespace"])

    def status(
        self, owner: Obj, job: Obj | None, pods: Sequence[Obj], *, now: dt.datetime, plan: JobPlan[Resolution] | None
    ) -> StatusUpdate:
        resolution = plan.context if plan is not None else None
        return compute_status(owner, job, pods, resolution=resolution, now=now, settings=self.settings)

    def failed(self, owner: Obj, reason: str, message: str, *, now: dt.datetime) -> StatusUpdate:
        return failed_status(owner, reason, message, now=now)

    def settled(self, namespace: str, name: str) -> None:
        self.waiting.set(namespace, name, [])

    def clock_dependent(self, api: ClusterAPI, owner: Obj) -> bool:
        return waits_out_a_grace_period(owner)
