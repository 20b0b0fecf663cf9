"""The chaos suite (``make chaos``: ``pytest tests/chaos``): faults injected into the real local cluster.

Cases marked ``chaos(shared=True)`` stop components every test shares (the API server, the
whole cluster); they run after all the others, in file order, and restore the cluster in a
``finally``. Each case records its figures through the ``figures`` fixture: they are printed
and written to ``<pytest basetemp>/chaos-figures.json``, and summarised at the end of the run.
"""

from __future__ import annotations

import json

import pytest

from tests.chaos.support import Figures

_FIGURES: list[Figures] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "chaos(shared=False): a fault-injection case of tests/chaos; shared=True stops components other "
        "tests share (they run last)",
    )


def _shared(item: pytest.Item) -> bool:
    marker = item.get_closest_marker("chaos")
    return bool(marker is not None and marker.kwargs.get("shared", False))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A stable sort: the cases that stop shared components go last, otherwise file order holds.
    items.sort(key=_shared)


@pytest.fixture(scope="session")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Figures:
    recorder = Figures(tmp_path_factory.getbasetemp() / "chaos-figures.json")
    _FIGURES.append(recorder)
    return recorder


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for recorder in _FIGURES:
        if recorder.cases:
            terminalreporter.section("chaos figures")
            terminalreporter.write_line(json.dumps(recorder.cases, indent=2, default=str))
            terminalreporter.write_line(f"written to {recorder.path}")
