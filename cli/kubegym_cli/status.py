"""``kubectl gym status`` and ``kubectl gym watch``: how a run, an Experiment or a Benchmark is going.

    kubectl gym status NAME [-n NAMESPACE]
    kubectl gym watch NAME [-n NAMESPACE] [--interval SECONDS]

Everything shown comes from the resource's status, so both need only ``get`` on the kinds: a
TrainingRun's progress bar, steps/s, the time left (``status.estimatedRemainingSeconds``, the
operator's estimate), the last evaluation, the last checkpoint and the best model; an Experiment's runs by phase
and each trial's state; a Benchmark's entries done and its ranking. ``NAME`` is looked up as a
TrainingRun, then an Experiment, then a Benchmark (``trainingrun/NAME``, ``experiment/NAME`` or
``benchmark/NAME`` says which). ``watch`` draws the view again every ``--interval`` seconds until
the phase is Succeeded or Failed, and exits 0 for Succeeded, 1 for Failed.

The renderers are pure (a status mapping in, text out); :func:`run` does the reading.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubegym_cli.compare import render_table as render_ranking
from kubegym_cli.compare import table
from kubegym_cli.errors import CliError, api_error

Obj = Mapping[str, Any]
GROUP, VERSION = "kubegym.io", "v1alpha1"
#: (kind, plural) in lookup order.
KINDS = (("TrainingRun", "trainingruns"), ("Experiment", "experiments"), ("Benchmark", "benchmarks"))
TERMINAL = ("Succeeded", "Failed")
BAR_WIDTH = 30


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """``[#########.....]`` for ``fraction`` in [0, 1] (clamped); full only at 1."""
    fraction = min(1.0, max(0.0, fraction if math.isfinite(fraction) else 0.0))
    filled = width if fraction >= 1 else min(width - 1, int(fraction * width))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def format_duration(seconds: float | None) -> str:
    """``45s``, ``3m05s``, ``2h07m``, ``1d03h``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    s = math.ceil(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def eta_seconds(status: Obj) -> float | None:
    """The time left: the operator's ``estimatedRemainingSeconds``, else the same estimate from the
    progress (timesteps left / steps per second); 0 once Succeeded; None when unknown."""
    if status.get("phase") == "Succeeded":
        return 0.0
    if status.get("phase") in ("Failed", "Suspended"):
        return None
    estimate = status.get("estimatedRemainingSeconds")
    if isinstance(estimate, int | float):
        return float(estimate)
    progress = status.get("progress") or {}
    total, done, rate = progress.get("totalTimesteps"), progress.get("timesteps") or 0, progress.get("stepsPerSecond")
    if isinstance(total, int) and isinstance(rate, int | float) and rate > 0:
        return max(0.0, (total - done) / rate)
    return None


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) < 1e6 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def cost_line(status: Obj) -> str | None:
    """``cost: 1,234.5 CPU-s requested (…used), 0 GPU-s, 2 pods`` from ``status.cost``; None without one."""
    cost = status.get("cost") or {}
    if not cost:
        return None
    used = cost.get("measuredCpuSeconds")
    utilisation = cost.get("cpuUtilization")
    measured = f" ({_num(used, 1)} used" + (f", {utilisation:.0%} of the request" if utilisation else "") + ")"
    return (
        f"cost: {_num(cost.get('cpuSeconds'), 1)} CPU-s requested{measured if used is not None else ''}, "
        f"{_num(cost.get('gpuSeconds'), 1)} GPU-s, {_num(cost.get('pods'))} pod(s)"
    )


def best_line(status: Obj) -> str | None:
    """``best: 500 +/- 0 at step 30,000 (10 episodes) s3://…/best/`` from ``status.best``; None without one."""
    best = status.get("best") or {}
    if not best:
        return None
    return (
        f"best: {_num(best.get('meanReward'))} +/- {_num(best.get('stdReward'))} at step {_num(best.get('step'))} "
        f"({_num(best.get('episodes'))} episodes) {best.get('uri') or '-'}"
    )


def _headline(kind: str, obj: Obj) -> str:
    meta, st = obj.get("metadata") or {}, obj.get("status") or {}
    phase = st.get("phase") or "Pending"
    reason = f" ({st['reason']})" if st.get("reason") and st.get("reason") != phase else ""
    return f"{kind} {meta.get('namespace')}/{meta.get('name')}: {phase}{reason}"


def tracking_line(spec: Obj, progress: Obj) -> str | None:
    """Where the run logs to MLflow and whether it gets there; None without spec.tracking.mlflow."""
    mlflow = (spec.get("tracking") or {}).get("mlflow") or {}
    if not mlflow:
        return None
    tracking = progress.get("tracking") or {}
    where = mlflow.get("trackingUri") or "?"
    if tracking.get("state") == "failing":
        return f"mlflow: {where} not reached since {tracking.get('since') or '?'}; training goes on"
    if tracking.get("runId"):
        return f"mlflow: run {tracking['runId']} (experiment {tracking.get('experimentId') or '?'}) at {where}"
    return f"mlflow: {where}, not reached yet"


def render_run(run: Obj) -> str:
    """A TrainingRun: headline, progress bar with steps, steps/s and ETA, reward, last evaluation,
    last checkpoint, the best model by periodic evaluation, and the result once finished."""
    spec, st = run.get("spec") or {}, run.get("status") or {}
    progress = st.get("progress") or {}
    what = f"{spec.get('algorithm') or '?'} on {(spec.get('environment') or {}).get('id') or '?'}"
    lines = [f"{_headline('TrainingRun', run)}  {what}"]
    if st.get("phase") in ("Failed", "Suspended") and st.get("message"):
        lines.append(f"  {st['message']}")
    idle = next((c for c in st.get("conditions") or [] if c.get("type") == "Idle" and c.get("status") == "True"), None)
    if idle and st.get("phase") == "Running":
        lines.append(f"  Idle: {idle.get('message')}")
    total = progress.get("totalTimesteps") or spec.get("totalTimesteps")
    done = progress.get("timesteps") or 0
    fraction = float(progress.get("fraction") or (done / total if total else 0.0))
    if st.get("phase") == "Succeeded":
        fraction = 1.0
    percent = 100 if fraction >= 1 else min(99, int(fraction * 100))
    rate = progress.get("stepsPerSecond")
    lines.append(
        f"{progress_bar(fraction)} {percent:3d}%  {_num(done)}/{_num(total)} steps  "
        f"{_num(rate, 1)} steps/s  ETA {format_duration(eta_seconds(st))}"
    )
    if progress.get("meanEpisodeReward") is not None:
        lines.append(
            f"recent training episodes: reward {_num(progress.get('meanEpisodeReward'))}, "
            f"length {_num(progress.get('meanEpisodeLength'), 1)} ({_num(progress.get('episodes'))} episodes)"
        )
    evaluation = progress.get("lastEvaluation")
    if evaluation:
        lines.append(
            f"last evaluation: {_num(evaluation.get('meanReward'))} +/- {_num(evaluation.get('stdReward'))} "
            f"at step {_num(evaluation.get('timesteps'))} ({_num(evaluation.get('episodes'))} episodes)"
        )
    else:
        lines.append("last evaluation: none yet")
    checkpoints = st.get("checkpoints") or {}
    if checkpoints.get("latestUri"):
        lines.append(
            f"last checkpoint: step {_num(checkpoints.get('latestStep'))} ({_num(checkpoints.get('count'))} kept) "
            f"{checkpoints['latestUri']}"
        )
    else:
        lines.append("last checkpoint: none yet")
    mlflow = tracking_line(spec, progress)
    if mlflow:
        lines.append(mlflow)
    best = best_line(st)
    if best:
        lines.append(best)
    result = st.get("result") or {}
    if result:
        lines.append(
            f"result: {_num(result.get('meanReward'))} +/- {_num(result.get('stdReward'))} over "
            f"{_num(result.get('episodes'))} episodes; model {result.get('modelUri') or '-'}"
        )
    cost = cost_line(st)
    if cost:
        lines.append(cost)
    return "\n".join(lines)


def render_experiment(exp: Obj) -> str:
    """An Experiment: headline, its runs by phase and its budget as a bar, then each trial's state."""
    st = exp.get("status") or {}
    lines = [f"{_headline('Experiment', exp)}  ({st.get('completions') or '0/?'} runs done)"]
    counts = st.get("counts") or {}
    if counts:
        shown = ("running", "pending", "waiting", "suspended", "succeeded", "failed", "earlyStopped", "skipped")
        lines.append("runs: " + ", ".join(f"{counts[k]} {k}" for k in shown if counts.get(k)))
    budget = st.get("budget") or {}
    if budget.get("totalTimesteps"):
        trained, planned = budget.get("trainedTimesteps") or 0, budget["totalTimesteps"]
        lines.append(
            f"{progress_bar(trained / planned)} {min(100, int(100 * trained / planned)):3d}%  "
            f"{_num(trained)}/{_num(planned)} steps over all runs"
            + (f"  ETA {format_duration(eta_seconds(st))}" if "estimatedRemainingSeconds" in st else "")
        )
    cost = cost_line(st)
    if cost:
        lines.append(f"{cost} over all runs")
    runs = st.get("runs") or []
    if runs:
        rows = [["RUN", "CONFIG", "SEED", "STATE", "STEPS", "LAST EVAL", "FINAL", "MESSAGE"]]
        for r in runs:
            rows.append(
                [
                    str(r.get("name")),
                    str(r.get("configuration")),
                    _num(r.get("seed")),
                    str(r.get("phase")),
                    _num(r.get("timesteps")),
                    _num(r.get("lastEvaluation")),
                    _num(r.get("finalReward")),
                    (r.get("message") or "")[:60],
                ]
            )
        lines += ["", table(rows)]
    best = st.get("best") or {}
    if best:
        lines.append(f"\nbest: {best.get('configuration')} ({best.get('summary')}): {_num(best.get('score'))}")
    return "\n".join(lines)


def render_benchmark(bench: Obj) -> str:
    """A Benchmark: headline, entries done as a bar, and the ranking once there is one."""
    st = bench.get("status") or {}
    lines = [_headline("Benchmark", bench)]
    progress = st.get("progress") or {}
    total = progress.get("entriesTotal") or 0
    if total:
        done = progress.get("entriesDone") or 0
        lines.append(
            f"{progress_bar(done / total)} {min(100, int(100 * done / total)):3d}%  {done}/{total} entries  "
            f"{_num(progress.get('episodes'))} episodes"
        )
    if st.get("ranking") or st.get("results"):
        lines += ["", render_ranking(bench)]
    return "\n".join(lines)


RENDERERS: dict[str, Callable[[Obj], str]] = {
    "TrainingRun": render_run,
    "Experiment": render_experiment,
    "Benchmark": render_benchmark,
}


@dataclass(frozen=True)
class Found:
    kind: str
    plural: str
    obj: Obj


def find(api: Any, namespace: str, name: str) -> Found:
    """``name`` as a TrainingRun, Experiment or Benchmark (``kind/name`` for one kind only);
    :class:`CliError` when none has it or one cannot be read."""
    from kubernetes.client.exceptions import ApiException

    kinds: tuple[tuple[str, str], ...] = KINDS
    if "/" in name:
        prefix, name = name.split("/", 1)
        kinds = tuple(k for k in KINDS if prefix.lower() in (k[0].lower(), k[1], k[1].rstrip("s")))
        if not kinds:
            raise CliError(f"unknown kind {prefix!r}: trainingrun, experiment or benchmark")
    for kind, plural in kinds:
        try:
            return Found(kind, plural, api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))
        except ApiException as e:
            if e.status != 404:
                raise api_error(e, plural, name, namespace) from None
    names = [k for k, _ in kinds]
    what = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    raise CliError(f'no {what} named "{name}" in namespace {namespace}')


def add_parsers(commands: Any, handler: Callable[[argparse.Namespace], int]) -> None:
    """Register ``status`` and ``watch``; ``handler`` connects and calls :func:`run`."""
    for command, text in (
        ("status", "how a TrainingRun, Experiment or Benchmark is going: progress bar, ETA, evaluation"),
        ("watch", "status, drawn again until it ends (exit 0: Succeeded, 1: Failed)"),
    ):
        p = commands.add_parser(command, help=text)
        p.add_argument("name", help="TrainingRun, Experiment or Benchmark (or kind/name)")
        p.add_argument("-n", "--namespace", help="namespace (default: the context's)")
        if command == "watch":
            p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default: 2)")
        p.set_defaults(handler=handler, watch=command == "watch")


def run(args: argparse.Namespace, api: Any, namespace: str) -> int:
    """The subcommand with a CustomObjectsApi: print the view (again and again for ``watch``)."""
    ns = args.namespace or namespace
    found = find(api, ns, args.name)
    if not args.watch:
        print(RENDERERS[found.kind](found.obj))
        return 0
    clear = sys.stdout.isatty()
    while True:
        if clear:
            print("\x1b[H\x1b[2J", end="")
        print(RENDERERS[found.kind](found.obj), flush=True)
        phase = (found.obj.get("status") or {}).get("phase")
        if phase in TERMINAL:
            return 0 if phase == "Succeeded" else 1
        time.sleep(max(0.2, args.interval))
        found = find(api, ns, f"{found.plural}/{(found.obj.get('metadata') or {}).get('name')}")
        if not clear:
            print("---")
