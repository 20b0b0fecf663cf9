"""The operator's table of hyperparameter names is what the installed SB3 accepts.

``kubegym_api.hyperparameter_table.HYPERPARAMETER_NAMES`` lets the operator (which cannot import
SB3) reject an Experiment over an unknown hyperparameter before it creates a run; it is generated
by ``hack/gen_hyperparameters.py``, and this keeps it equal to the runner's own check, so the two
can never disagree after an SB3 upgrade.
"""

from __future__ import annotations

import gen_hyperparameters
import pytest

from kubegym_api.base import Algorithm
from kubegym_api.hyperparameter_table import HYPERPARAMETER_NAMES
from kubegym_api.hyperparameters import ACTION_NOISE_KEYS, RESERVED_HYPERPARAMETERS, allowed_hyperparameters
from kubegym_runner.algorithms import (
    RESERVED_ARGUMENTS,
    ZOO_NOISE_KEYS,
    algorithm_class,
    hyperparameter_names,
    is_off_policy,
)


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_table_matches_the_constructor_signature(algorithm: Algorithm) -> None:
    cls = algorithm_class(algorithm)
    expected = set(hyperparameter_names(cls))
    assert set(HYPERPARAMETER_NAMES[algorithm.value]) == expected, (
        f"HYPERPARAMETER_NAMES[{algorithm.value!r}] is stale: run python hack/gen_hyperparameters.py"
    )
    extra = ZOO_NOISE_KEYS if is_off_policy(cls) else set()
    assert allowed_hyperparameters(algorithm) == expected | extra


def test_every_algorithm_has_an_entry_and_reserved_names_agree() -> None:
    assert set(HYPERPARAMETER_NAMES) == {a.value for a in Algorithm}
    assert ACTION_NOISE_KEYS == ZOO_NOISE_KEYS
    assert set(RESERVED_HYPERPARAMETERS) == set(RESERVED_ARGUMENTS)


def test_the_committed_table_is_what_the_generator_writes() -> None:
    assert gen_hyperparameters.TABLE.read_text(encoding="utf-8") == gen_hyperparameters.render(), (
        "run python hack/gen_hyperparameters.py"
    )
