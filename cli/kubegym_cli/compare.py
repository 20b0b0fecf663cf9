"""``kubectl gym compare``: a Benchmark's ranking and per-entry statistics as a table or JSON.

Everything comes from the Benchmark's status (what the runner wrote through its own identity),
so it needs only ``get`` on benchmarks, like ``kubectl get``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

Obj = Mapping[str, Any]

#: Per-entry columns: header, status key, format.
ENTRY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("EPISODES", "episodes"),
    ("MEAN", "mean"),
    ("STD", "std"),
    ("MEDIAN", "median"),
    ("IQM", "iqm"),
    ("MIN", "min"),
    ("MAX", "max"),
    ("LENGTH", "meanEpisodeLength"),
    ("EPISODES/S", "episodesPerSecond"),
    ("P50 MS", "latencyP50Ms"),
    ("P99 MS", "latencyP99Ms"),
)


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, as kubectl prints them."""
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def summary(bench: Obj) -> dict[str, Any]:
    """The parts of a Benchmark ``-o json`` prints: identity, phase, ranking, results, artifacts."""
    meta = bench.get("metadata") or {}
    status = bench.get("status") or {}
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "phase": status.get("phase"),
        "message": status.get("message"),
        "bestModel": status.get("bestModel"),
        "bestScore": status.get("bestScore"),
        "ranking": status.get("ranking"),
        "results": status.get("results") or [],
        "artifacts": status.get("artifacts"),
    }


def render_json(bench: Obj) -> str:
    return json.dumps(summary(bench), indent=2)


def render_table(bench: Obj) -> str:
    """The ranking (with intervals and the probability of improvement), then every entry."""
    s = summary(bench)
    out = [
        f"Benchmark {s['namespace']}/{s['name']}: {s['phase'] or 'Pending'}"
        + (f" ({s['message']})" if s["message"] else "")
    ]
    ranking = s["ranking"] or {}
    if ranking.get("models"):
        statistic = ranking.get("statistic", "score")
        level = f"{float(ranking.get('confidenceLevel', 0.95)):.0%} CI"
        scale = " (min-max normalised returns)" if ranking.get("normalization") == "MinMax" else ""
        out += [
            "",
            f"Ranking by {statistic} over {', '.join(ranking.get('envs') or [])}{scale}; {level} by "
            f"{ranking.get('method', 'bootstrap')}, {ranking.get('bootstrapResamples')} resamples, "
            f"seed {ranking.get('bootstrapSeed')}",
        ]
        rows = [["RANK", "MODEL", statistic.upper(), level.upper()]]
        for m in ranking["models"]:
            rows.append(
                [str(m["rank"]), m["model"], _number(m["score"]), f"[{_number(m['ciLower'])}, {_number(m['ciUpper'])}]"]
            )
        out.append(table(rows))
        p = ranking.get("probabilityOfImprovement")
        if p:
            out.append(
                f"\nP({p['leader']} > {p['runnerUp']}) = {_number(p['probability'])}  "
                f"[{_number(p['ciLower'])}, {_number(p['ciUpper'])}]"
            )
        if ranking.get("unranked"):
            out.append(f"Not ranked (an entry failed): {', '.join(ranking['unranked'])}")
    elif not s["results"]:
        out.append("\nNo results yet.")
    if s["results"]:
        rows = [["MODEL", "ENV", *(header for header, _ in ENTRY_COLUMNS)]]
        errors = []
        for entry in s["results"]:
            if entry.get("error"):
                rows.append([entry["model"], entry["env"], "failed", *["-"] * (len(ENTRY_COLUMNS) - 1)])
                errors.append(f"  {entry['model']} on {entry['env']}: {entry['error']}")
            else:
                rows.append([entry["model"], entry["env"], *(_number(entry.get(key)) for _, key in ENTRY_COLUMNS)])
        out += ["", table(rows)]
        if errors:
            out += ["", "Failed entries:", *errors]
    artifacts = s["artifacts"] or {}
    if artifacts:
        out += ["", "Artifacts:", *(f"  {k}: {v}" for k, v in artifacts.items())]
    return "\n".join(out)
