"""``kubectl gym report``: an Experiment's answer: the per-configuration table, the runs, the plots.

    kubectl gym report EXPERIMENT [-n NAMESPACE] [-o table|json] [--dir DIR] [--no-download]
                                  [--endpoint URL]

The aggregates come from the Experiment's status (what its report Job wrote), so the tables
need only ``get`` on experiments. The per-run table (``runs.csv``) and the plots come from S3,
with boto3's usual credentials (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile);
the endpoint is ``--endpoint``, else the template's storage endpoint, else ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubegym_cli.compare import table

Obj = Mapping[str, Any]
GROUP, VERSION, EXPERIMENTS = "kubegym.io", "v1alpha1", "experiments"

#: Report files downloaded (status key -> file name); the CSV tables and the plots.
DOWNLOADS = (
    ("runsCsv", "runs.csv"),
    ("configurationsCsv", "configurations.csv"),
    ("curvesCsv", "curves.csv"),
    ("learningCurvesPng", "learning_curves.png"),
    ("finalScoresPng", "final_scores.png"),
)
#: Columns of the per-run table printed from runs.csv (those present are shown).
RUN_COLUMNS = ("run", "configuration", "seed", "outcome", "timesteps", "final_reward", "best_evaluation", "score")


def _number(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def summary(exp: Obj) -> dict[str, Any]:
    """What ``-o json`` prints: identity, phase, counts, best, per-configuration results, files."""
    meta = exp.get("metadata") or {}
    st = exp.get("status") or {}
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "phase": st.get("phase"),
        "message": st.get("message"),
        "completions": st.get("completions"),
        "counts": st.get("counts"),
        "budget": st.get("budget"),
        "best": st.get("best"),
        "results": st.get("results") or [],
        "report": st.get("report"),
    }


def render_results(exp: Obj) -> str:
    """Header, the per-configuration table (best first) and the statistic behind it."""
    s = summary(exp)
    lines = [
        f"Experiment {s['namespace']}/{s['name']}: {s['phase'] or 'Pending'} ({s['completions'] or '0/?'} runs done)"
    ]
    if s["message"]:
        lines.append(f"  {s['message']}")
    report = s["report"] or {}
    if not s["results"]:
        lines.append("no results yet: the report is written when every run has finished")
        return "\n".join(lines)
    statistic = report.get("statistic") or "IQM"
    level = f"{float(report.get('confidenceLevel') or 0.95):.0%} CI"
    rows = [
        [
            "RANK",
            "CONFIG",
            "HYPERPARAMETERS",
            "RUNS",
            statistic,
            level,
            "MEAN",
            "STD",
            "MIN",
            "MAX",
            "STOPPED",
            "FAILED",
        ]
    ]
    for r in s["results"]:
        hp = ", ".join(f"{k}={v}" for k, v in sorted((r.get("hyperparameters") or {}).items())) or "template"
        rows.append(
            [
                _number(r.get("rank")),
                str(r.get("configuration")),
                hp,
                _number(r.get("runs")),
                _number(r.get("score")),
                f"[{_number(r.get('ciLower'))}, {_number(r.get('ciUpper'))}]",
                _number(r.get("mean")),
                _number(r.get("std")),
                _number(r.get("min")),
                _number(r.get("max")),
                _number(r.get("earlyStopped")),
                _number(r.get("failed")),
            ]
        )
    lines += ["", table(rows)]
    best = s["best"] or {}
    if best:
        lines.append(
            f"\nbest: {best.get('configuration')} ({best.get('summary')}): {statistic} {_number(best.get('score'))} "
            f"[{_number(best.get('ciLower'))}, {_number(best.get('ciUpper'))}]"
        )
    if report.get("method"):
        lines.append(
            f"intervals: {report['method']}, {report.get('bootstrapResamples')} resamples, "
            f"seed {report.get('bootstrapSeed')}"
        )
    budget = s["budget"] or {}
    if budget.get("savedTimesteps"):
        lines.append(f"early stopping saved {budget['savedTimesteps']} of {budget.get('totalTimesteps')} timesteps")
    return "\n".join(lines)


def render_runs(runs_csv: str) -> str:
    """The per-run table from the report's runs.csv (the columns a person reads first)."""
    reader = csv.DictReader(io.StringIO(runs_csv))
    columns = [c for c in RUN_COLUMNS if c in (reader.fieldnames or [])]
    rows = [[c.upper() for c in columns]]
    rows += [[row[c] or "-" for c in columns] for row in reader]
    return table(rows)


def endpoint_of(exp: Obj, explicit: str | None) -> str | None:
    storage = (((exp.get("spec") or {}).get("template") or {}).get("checkpoint") or {}).get("storage") or {}
    return explicit or storage.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL") or None


def download(exp: Obj, directory: Path, endpoint: str | None) -> dict[str, Path]:
    """The report's tables and plots into ``directory``; raises ``RunnerError`` on S3 failures."""
    from kubegym_api.storage import S3Storage
    from kubegym_runner.storage import S3Uri, Storage

    report = (exp.get("status") or {}).get("report") or {}
    wanted = [(key, name, report[key]) for key, name in DOWNLOADS if report.get(key)]
    if not wanted:
        return {}
    first = S3Uri.parse(wanted[0][2])
    storage = Storage.from_config(S3Storage(bucket=first.bucket, endpoint=endpoint))
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, name, uri in wanted:
        path = directory / name
        storage.download_file(S3Uri.parse(uri), path)
        out[key] = path
    return out


def add_parser(commands: Any, handler: Callable[[argparse.Namespace], int]) -> None:
    """Register ``report`` on ``kubectl gym``'s subcommands; ``handler`` connects and calls :func:`run`."""
    rep = commands.add_parser("report", help="an Experiment's results table, runs and plots")
    rep.add_argument("experiment", help="name of the Experiment")
    rep.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    rep.add_argument("-o", "--output", choices=("table", "json"), default="table")
    rep.add_argument("--dir", help="where to download the report's files (default: ./<experiment>-report)")
    rep.add_argument("--no-download", action="store_true", help="print the status tables only; no S3 access")
    rep.add_argument("--endpoint", help="S3 endpoint URL (default: the template's, else $AWS_ENDPOINT_URL)")
    rep.set_defaults(handler=handler)


def run(args: argparse.Namespace, api: Any, namespace: str) -> int:
    """The subcommand with a CustomObjectsApi: print the tables, download the files; 1 when the
    Experiment cannot be read or the download fails."""
    from kubernetes.client.exceptions import ApiException

    from kubegym_runner.errors import RunnerError

    ns = args.namespace or namespace
    try:
        exp = api.get_namespaced_custom_object(GROUP, VERSION, ns, EXPERIMENTS, args.experiment)
    except ApiException as e:
        what = "not found" if e.status == 404 else f"cannot be read: {e.status} {e.reason}"
        print(f'Error: experiment "{args.experiment}" {what} in namespace {ns}', file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(summary(exp), indent=2))
    else:
        print(render_results(exp))
    if args.no_download or not (exp.get("status") or {}).get("report"):
        return 0
    directory = Path(args.dir or f"{args.experiment}-report")
    try:
        files = download(exp, directory, endpoint_of(exp, args.endpoint))
    except RunnerError as e:
        print(f"Error: cannot download the report: {e}", file=sys.stderr)
        return 1
    if args.output == "table" and "runsCsv" in files:
        print("\n" + render_runs(files["runsCsv"].read_text()))
    shown = ", ".join(str(p) for key, p in files.items() if key.endswith("Png"))
    print(f"\nfiles in {directory}/" + (f" (plots: {shown})" if shown else ""), file=sys.stderr)
    return 0
