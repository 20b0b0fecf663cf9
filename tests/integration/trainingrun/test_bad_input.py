"""Edits of a TrainingRun after it was created: the fields its Job was rendered from are
rejected at apply time (CEL ``self == oldSelf``), the mutable ones are accepted.

Bad input itself — rejected at apply, or Failed with a reason before training — is the
table-driven corpus in tests/integration/corpus.
"""

from __future__ import annotations

from kubegym_localcluster.kube import Kube
from tests.integration.trainingrun.support import training_run, with_spec
from tests.support.kubectl import Kubectl


def test_immutable_fields_rejected_after_creation_mutable_ones_accepted(
    kubectl: Kubectl, kube: Kube, namespace: str
) -> None:
    run = training_run("frozen", suspend=True)
    kubectl.apply(run)
    changed = kubectl.apply(with_spec(run, totalTimesteps=4096), check=False)
    assert changed.returncode != 0 and "immutable" in changed.stderr, changed.stderr
    algo = kubectl.apply(with_spec(run, algorithm="A2C"), check=False)
    assert algo.returncode != 0 and "immutable" in algo.stderr, algo.stderr
    kubectl.apply(with_spec(run, suspend=False, runPolicy={"ttlSecondsAfterFinished": 600}))
