"""Each benchmark rewrites only its own section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchdoc import HEADER, markers, write_section

A = markers("bench_a")
B = markers("bench_b")


def section(name: tuple[str, str], body: str) -> str:
    return f"{name[0]}\n{body}\n{name[1]}"


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        (None, HEADER.rstrip("\n") + "\n\n" + section(A, "new") + "\n"),
        ("# T\n", "# T\n\n" + section(A, "new") + "\n"),
        (f"# T\n\n{section(A, 'old')}\n\ntail\n", f"# T\n\n{section(A, 'new')}\n\ntail\n"),
        (
            f"{section(B, 'b')}\n{section(A, 'old')}\n{section(B, 'b')}\n",
            f"{section(B, 'b')}\n{section(A, 'new')}\n{section(B, 'b')}\n",
        ),
    ],
    ids=["new-file", "appended", "replaced-in-place", "others-untouched"],
)
def test_write_section(tmp_path: Path, before: str | None, expected: str) -> None:
    path = tmp_path / "benchmarks.md"
    if before is not None:
        path.write_text(before)
    write_section(path, section(A, "new"), *A)
    assert path.read_text() == expected
