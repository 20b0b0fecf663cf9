"""Edits of an Experiment after it was created: only parallelism and suspend may change.

Bad Experiments — refused at apply time by the CEL rules and bounds, or failed by the operator
before it creates a single run — are cases of the table-driven corpus in tests/integration/corpus.
"""

from __future__ import annotations

from tests.integration.experiment.support import experiment
from tests.support.kubectl import Kubectl


def test_only_parallelism_and_suspend_change_after_creation(kubectl: Kubectl) -> None:
    exp = experiment("frozen", suspend=True)
    kubectl.apply(exp)
    changed = experiment("frozen", suspend=True, search={"grid": {"learning_rate": [0.01]}})
    result = kubectl.apply(changed, check=False)
    assert result.returncode != 0 and "spec.search is immutable" in result.stderr, result.stderr
    seeds = kubectl.apply(experiment("frozen", suspend=True, seeds={"count": 5}), check=False)
    assert seeds.returncode != 0 and "spec.seeds is immutable" in seeds.stderr
    kubectl.apply(experiment("frozen", suspend=False, parallelism=3))
