"""The operator's table of hyperparameter names is what the installed SB3 accepts.

``kubegym_runner.config.HYPERPARAMETER_NAMES`` lets the operator (which cannot import SB3)
reject an Experiment over an unknown hyperparameter before it creates a run; this keeps the
table equal to the runner's own check, so the two can never disagree after an SB3 upgrade.
"""

from __future__ import annotations

import pytest

from kubegym_runner.algorithms import (
    RESERVED_ARGUMENTS,
    ZOO_NOISE_KEYS,
    algorithm_class,
    hyperparameter_names,
    is_off_policy,
)
from kubegym_runner.config import (
    ACTION_NOISE_KEYS,
    HYPERPARAMETER_NAMES,
    RESERVED_HYPERPARAMETERS,
    Algorithm,
    allowed_hyperparameters,
)


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_table_matches_the_constructor_signature(algorithm: Algorithm) -> None:
    cls = algorithm_class(algorithm)
    expected = set(hyperparameter_names(cls))
    assert set(HYPERPARAMETER_NAMES[algorithm.value]) == expected, (
        f"regenerate HYPERPARAMETER_NAMES[{algorithm.value!r}] = {sorted(expected)}"
    )
    extra = ZOO_NOISE_KEYS if is_off_policy(cls) else set()
    assert allowed_hyperparameters(algorithm) == expected | extra


def test_every_algorithm_has_an_entry_and_reserved_names_agree() -> None:
    assert set(HYPERPARAMETER_NAMES) == {a.value for a in Algorithm}
    assert ACTION_NOISE_KEYS == ZOO_NOISE_KEYS
    assert set(RESERVED_HYPERPARAMETERS) == set(RESERVED_ARGUMENTS)
