"""An Experiment's ``estimatedRemainingSeconds``: its runs' timesteps left over the summed throughput
of the runs training now, with the TrainingRun's rounding and tolerance."""

from __future__ import annotations

from typing import Any

import pytest

from kubegym_operator.builders.experiment_status import ChildView, experiment_remaining_seconds


def child(phase: str, rate: float | None) -> ChildView:
    return ChildView(name=f"r-{phase}-{rate}", phase=phase, steps_per_second=rate)


BUDGET = {"totalTimesteps": 100_000, "trainedTimesteps": 40_000, "savedTimesteps": 0}


@pytest.mark.parametrize(
    ("phase", "budget", "children", "previous", "expected"),
    [
        ("Running", BUDGET, [child("Running", 500.0), child("Running", 500.0)], None, 60),
        # A finished run's last throughput is not training any more.
        ("Running", BUDGET, [child("Running", 1000.0), child("Succeeded", 900.0)], None, 60),
        # What early stopping saved is not left to train.
        ("Running", {**BUDGET, "savedTimesteps": 30_000}, [child("Running", 1000.0)], None, 30),
        ("Running", BUDGET, [child("Pending", None)], None, None),  # nothing trains now: unknown
        ("Running", {"trainedTimesteps": 5}, [child("Running", 10.0)], None, None),  # no planned total
        ("Running", BUDGET, [child("Running", 1000.0)], 62, 62),  # within 5 s: kept
        ("Suspended", BUDGET, [child("Running", 1000.0)], 60, None),
        ("Succeeded", BUDGET, [], 60, 0),
    ],
)
def test_remaining_seconds(
    phase: str, budget: dict[str, Any], children: list[ChildView], previous: int | None, expected: int | None
) -> None:
    assert experiment_remaining_seconds(phase, budget, children, previous) == expected
