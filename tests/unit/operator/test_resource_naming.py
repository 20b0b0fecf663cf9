"""Names of the objects a run owns: deterministic, DNS-1123 labels, collision-free."""

from __future__ import annotations

import re

import pytest

from kubegym_operator.builders.naming import (
    MAX_LABEL,
    dns_label,
    label_value,
    runner_identity_name,
    training_job_name,
)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_short_names_are_readable_and_unchanged() -> None:
    assert training_job_name("cartpole") == "cartpole-train"
    assert runner_identity_name("cartpole") == "cartpole-runner"
    assert label_value("cartpole") == "cartpole"


def test_names_are_deterministic() -> None:
    long = "ppo-" + "x" * 240
    assert training_job_name(long) == training_job_name(long)
    assert runner_identity_name(long) == runner_identity_name(long)


@pytest.mark.parametrize("name", ["a" * 253, "run." + "b" * 200, "x" * 58, "a.b.c"])
def test_names_are_valid_labels(name: str) -> None:
    for derived in (training_job_name(name), runner_identity_name(name), label_value(name)):
        assert len(derived) <= MAX_LABEL
        assert DNS_LABEL.match(derived), derived


def test_long_names_sharing_a_prefix_stay_distinct() -> None:
    prefix = "experiment-seed-sweep-" + "z" * 60
    first, second = training_job_name(prefix + "-seed-1"), training_job_name(prefix + "-seed-2")
    assert first != second
    assert first[:40] == second[:40]


def test_sanitised_names_do_not_collide_with_their_lookalikes() -> None:
    assert dns_label("a.b") != dns_label("a-b")
    assert dns_label("a-b") == "a-b"


def test_exactly_max_length_is_kept_and_one_more_is_hashed() -> None:
    exact = "a" * MAX_LABEL
    assert dns_label(exact) == exact
    longer = dns_label(exact + "a")
    assert len(longer) == MAX_LABEL
    assert longer != exact


def test_too_small_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        dns_label("anything", max_length=5)
