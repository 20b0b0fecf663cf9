"""The runner's identity can patch its own run's status and nothing else."""

from __future__ import annotations

import pytest

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import ApiError, Credentials, Kube
from tests.conftest import OperatorProcess
from tests.integration.trainingrun.support import TR, training_run
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until


def test_runner_token_is_scoped_to_its_own_run(
    cluster: LocalCluster, kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess
) -> None:
    ns = namespace
    for name in ("mine", "other"):
        kubectl.apply(training_run(name, suspend=True))
    wait_until(
        lambda: kube.get(f"/api/v1/namespaces/{ns}/serviceaccounts/mine-runner"), 60, "the runner identity of 'mine'"
    )
    token = kube.create(
        f"/api/v1/namespaces/{ns}/serviceaccounts/mine-runner/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}},
    )["status"]["token"]
    runner = Kube(Credentials(server=cluster.server, ca_file=str(cluster.pki.ca_crt), token=token))
    patch = {"status": {"progress": {"timesteps": 1}}}
    runner.merge_patch(f"{TR.format(ns=ns)}/mine/status", patch)  # its own: allowed
    with pytest.raises(ApiError) as other:
        runner.merge_patch(f"{TR.format(ns=ns)}/other/status", patch)
    assert other.value.status == 403
    with pytest.raises(ApiError) as spec:
        runner.merge_patch(f"{TR.format(ns=ns)}/mine", {"spec": {"suspend": False}})
    assert spec.value.status == 403
    with pytest.raises(ApiError) as secrets:
        runner.get(f"/api/v1/namespaces/{ns}/secrets")
    assert secrets.value.status == 403
