"""docs/benchmarks.md holds one section per benchmark, each between markers of its own, so a
script that rewrites its results (``--write docs/benchmarks.md``) leaves every other section as
it is. Imported by the ``bench/`` scripts, which run as ``python bench/<script>.py``."""

from __future__ import annotations

from pathlib import Path

#: What a new docs/benchmarks.md starts with.
HEADER = "# Benchmarks\n\nResults of the `bench/` scripts.\n"


def markers(name: str) -> tuple[str, str]:
    """The begin and end markers of benchmark ``name``'s section (HTML comments, invisible rendered)."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def write_section(path: Path, section: str, begin: str, end: str) -> None:
    """Replace the text between ``begin`` and ``end`` (both included) with ``section``, which
    starts with ``begin`` and ends with ``end``; append it when the file has no such section."""
    text = path.read_text() if path.exists() else HEADER
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
