"""``kubectl gym tensorboard``'s pure parts: which runs an object's curves come from, where they
are, what to copy again, and whether the port is free."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from kubegym_cli.main import build_parser
from kubegym_cli.tensorboard import curves_uri, port_free, run_folders, run_names, to_sync


def _run(name: str, uri: str | None) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"artifacts": {"uri": uri}} if uri else {}}


@pytest.mark.parametrize(
    ("kind", "obj", "expected"),
    [
        ("TrainingRun", {"metadata": {"name": "r"}}, ["r"]),
        (
            "Experiment",
            {"metadata": {"name": "e"}, "status": {"runs": [{"name": "e-1"}, {"name": "e-0"}, {}]}},
            ["e-1", "e-0"],
        ),
        ("Experiment", {"metadata": {"name": "e"}}, []),
        (
            "Benchmark",
            {
                "spec": {
                    "models": [
                        {"trainingRunRef": {"name": "a"}},
                        {"uri": "s3://b/m/"},
                        {"trainingRunRef": {"name": "a"}},
                    ]
                }
            },
            ["a"],
        ),
    ],
)
def test_run_names(kind: str, obj: dict[str, Any], expected: list[str]) -> None:
    assert run_names(kind, obj) == expected


def test_curves_are_in_the_run_folder_once_it_is_chosen() -> None:
    assert curves_uri(_run("r", "s3://bkt/runs/ns/r/uid/")) == "s3://bkt/runs/ns/r/uid/tensorboard/"
    assert curves_uri(_run("r", "s3://bkt/runs/ns/r/uid")) == "s3://bkt/runs/ns/r/uid/tensorboard/"
    assert curves_uri(_run("r", None)) is None
    assert run_folders([_run("a", "s3://b/a/"), _run("b", None)]) == {"a": "s3://b/a/tensorboard/"}


def test_to_sync_copies_the_new_and_the_grown() -> None:
    remote = {"events.1": 10, "events.2": 20, "events.3": 5}
    assert to_sync(remote, {"events.1": 10, "events.2": 12}) == ["events.2", "events.3"]
    assert to_sync(remote, dict(remote)) == []


def test_port_free() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert not port_free(s.getsockname()[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert port_free(port)


def test_parser() -> None:
    args = build_parser().parse_args(["tensorboard", "exp", "-n", "team", "--port", "7007", "--sync-only"])
    assert (args.name, args.namespace, args.port, args.sync_only, args.dir) == ("exp", "team", 7007, True, None)
