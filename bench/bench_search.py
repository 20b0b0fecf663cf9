"""Search quality at an equal budget: Optuna's Random sampler against TPE on a small CartPole PPO study.

Each search is an Experiment on one local cluster (the operator as a subprocess, as the
integration tier runs it): PPO on CartPole, ``--trials`` configurations of ``--steps`` timesteps
each, one seed per configuration, two at a time, over a wide space (learning rate on a log scale
from 1e-5 to 1e-1, n_epochs, gae_lambda, the network size), so that a good configuration is rare
and worth finding. The same space, trial budget, timesteps and parallelism for every sampler, so
every search spends the same timesteps (reported, from ``status.budget.trainedTimesteps``).

Each search is repeated with ``--repeats`` sampler seeds (the searches of one repeat run one after
the other, samplers alternating, so a slow stretch of the machine hurts both alike). A search's
result is its best configuration's score in a held-out evaluation: the Experiment's final
Benchmark evaluates every trial's final model on ``--episodes`` fresh episodes, and the score of
the trial the search itself ranked first (by its final evaluation during training) is read from
there, so a search is not rewarded for a lucky selection evaluation. Reported per sampler: the IQM
across repeats with a 95% percentile-bootstrap CI, and TPE's advantage over Random as the
difference of IQMs and the probability of improvement, each with its CI, whichever way it falls.

    python bench/bench_search.py --write docs/benchmarks.md            # 5 repeats: about 40 minutes on 2 cores
    python bench/bench_search.py --repeats 1 --trials 4 --steps 4096   # a smoke test, a few minutes
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchdoc import markers, write_section

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = markers("bench_search")
NAMESPACE = "bench-search"
GROUP_PATH = "/apis/kubegym.io/v1alpha1"
SAMPLERS = ("Random", "TPE")
#: The searched space: wide on purpose, so that most random configurations are poor.
SPACE: dict[str, Any] = {
    "learning_rate": {"type": "Float", "low": 1e-5, "high": 1e-1, "log": True},
    "n_epochs": {"type": "Int", "low": 1, "high": 10},
    "gae_lambda": {"type": "Categorical", "choices": [0.8, 0.9, 0.95, 0.99]},
    "policy_kwargs": {"type": "Categorical", "choices": ["dict(net_arch=[16])", "dict(net_arch=[64, 64])"]},
}


def log(message: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def experiment(name: str, sampler: str, seed: int, *, trials: int, steps: int, episodes: int) -> dict[str, Any]:
    """One search: ``trials`` configurations proposed by ``sampler`` (seeded ``seed``)."""
    return {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "template": {
                "algorithm": "PPO",
                "environment": {"id": "CartPole-v1"},
                "totalTimesteps": steps,
                "device": "cpu",
                "hyperparameters": {"n_steps": 256, "batch_size": 64},
                "evaluation": {"everySteps": steps, "episodes": 10},
                "checkpoint": {"everySteps": steps, "keepLast": 1},
                "resources": {"cpu": "500m", "memory": "1Gi"},
            },
            "seeds": {"count": 1},
            "search": {
                "optuna": {
                    "sampler": sampler,
                    "trials": trials,
                    "seed": seed,
                    "startupTrials": max(2, trials // 4),
                    "parameters": SPACE,
                }
            },
            "parallelism": 2,
            "benchmark": {"episodes": episodes, "nEnvs": 4},
            "objective": {"metric": "FinalReward", "direction": "Maximize", "statistic": "IQM"},
        },
    }


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if condition():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(1.0)


def held_out_score(kube: Any, status: dict[str, Any]) -> float | None:
    """The final Benchmark's score of the run of the search's own best configuration."""
    best = (status.get("best") or {}).get("configuration")
    bench = (status.get("benchmark") or {}).get("name")
    if not best or not bench:
        return None
    ranking = (kube.get(f"{GROUP_PATH}/namespaces/{NAMESPACE}/benchmarks/{bench}").get("status") or {}).get("ranking")
    for model in (ranking or {}).get("models") or []:
        if f"-{best}-s" in str(model.get("model")):
            return float(model["score"])
    return None


def search_figures(kube: Any, name: str, seconds: float) -> dict[str, Any]:
    status = kube.get(f"{GROUP_PATH}/namespaces/{NAMESPACE}/experiments/{name}").get("status") or {}
    return {
        "name": name,
        "phase": status.get("phase"),
        "message": status.get("message"),
        "seconds": seconds,
        "trainedTimesteps": (status.get("budget") or {}).get("trainedTimesteps"),
        "best": status.get("best"),
        "heldOut": held_out_score(kube, status),
        "trialScores": [c.get("score") for c in status.get("configurations") or []],
    }


def drive(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Start a local cluster and its operator, run every search, return their figures."""
    from kubegym_localcluster import layout
    from kubegym_localcluster.cluster import LocalCluster, copy_s3_secret

    state = Path(os.environ.get("KUBEGYM_STATE") or tempfile.mkdtemp(prefix="bench-search-", dir=Path.home()))
    cluster = LocalCluster(state)
    log(f"starting a local cluster in {state}")
    cluster.up()
    kube = cluster.admin()
    operator: subprocess.Popen[bytes] | None = None
    out: list[dict[str, Any]] = []
    try:
        kube.apply(
            f"/api/v1/namespaces/{NAMESPACE}",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
            "bench-search",
        )
        _wait(lambda: bool(kube.get(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")), 60, "the namespace")
        copy_s3_secret(kube, NAMESPACE, cluster.minio())
        env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "KUBEGYM_STORAGE_BUCKET": layout.BUCKET,
            "KUBEGYM_STORAGE_ENDPOINT": cluster.minio().endpoint,
            "KUBEGYM_STORAGE_CREDENTIALS": "static",
            "KUBEGYM_STORAGE_SECRET": layout.S3_SECRET,
            "KUBEGYM_LIVENESS": "",
            "KUBEGYM_METRICS_PORT": str(layout.free_ports(1)[0]),
        }
        with (state / "operator.log").open("ab") as log_file:
            operator = subprocess.Popen(
                [sys.executable, "-m", "kubegym_operator"], env=env, stdout=log_file, stderr=subprocess.STDOUT
            )
        time.sleep(3)  # the operator's watches start
        for repeat in range(args.repeats):
            for sampler in SAMPLERS if repeat % 2 == 0 else tuple(reversed(SAMPLERS)):
                name = f"{sampler.lower()}-{repeat}"
                manifest = experiment(
                    name, sampler, repeat, trials=args.trials, steps=args.steps, episodes=args.episodes
                )
                started = time.monotonic()
                kube.create(f"{GROUP_PATH}/namespaces/{NAMESPACE}/experiments", manifest)
                path = f"{GROUP_PATH}/namespaces/{NAMESPACE}/experiments/{name}"
                _wait(
                    lambda path=path: (kube.get(path).get("status") or {}).get("phase") in ("Succeeded", "Failed"),
                    args.timeout,
                    f"experiment/{name}",
                )
                figures = search_figures(kube, name, time.monotonic() - started)
                log(f"{name}: {figures['phase']} in {figures['seconds']:.0f} s, held-out {figures['heldOut']}")
                out.append({"sampler": sampler, "repeat": repeat, **figures})
        return out
    finally:
        if operator is not None and operator.poll() is None:
            operator.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                operator.wait(20)
            if operator.poll() is None:
                operator.kill()
        with contextlib.suppress(Exception):
            cluster.down()


# --- the comparison ---------------------------------------------------------------------------------


def summarize(searches: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per sampler: the held-out scores, their IQM with a 95% CI, the timesteps spent; and TPE over
    Random (difference of IQMs, probability of improvement), each with its CI."""
    import numpy as np

    from kubegym_runner import stats

    by: dict[str, list[float]] = {s: [] for s in SAMPLERS}
    spent: dict[str, list[int]] = {s: [] for s in SAMPLERS}
    for search in searches:
        if search.get("heldOut") is not None:
            by[search["sampler"]].append(float(search["heldOut"]))
        if search.get("trainedTimesteps") is not None:
            spent[search["sampler"]].append(int(search["trainedTimesteps"]))
    out: dict[str, Any] = {"samplers": {}}
    for sampler, scores in by.items():
        if scores:
            est = stats.interval_estimate([scores], "IQM", seed=0)
            out["samplers"][sampler] = {
                "scores": scores,
                "iqm": est.value,
                "low": est.low,
                "high": est.high,
                "timesteps": spent[sampler],
            }
    if all(by[s] for s in SAMPLERS) and min(len(v) for v in by.values()) >= 2:
        rng = np.random.default_rng(0)
        tpe, rnd = np.asarray(by["TPE"]), np.asarray(by["Random"])
        diffs = [
            float(stats.iqm(rng.choice(tpe, tpe.size)) - stats.iqm(rng.choice(rnd, rnd.size))) for _ in range(2000)
        ]
        out["difference"] = {
            "value": float(stats.iqm(tpe) - stats.iqm(rnd)),
            "low": float(np.percentile(diffs, 2.5)),
            "high": float(np.percentile(diffs, 97.5)),
        }
        poi = stats.probability_of_improvement([tpe], [rnd], seed=0)
        out["probability"] = {"value": poi.value, "low": poi.low, "high": poi.high}
    return out


def report(searches: Sequence[dict[str, Any]], summary: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    lines = [
        BEGIN,
        "## Search quality at an equal budget: Random vs TPE (bench/bench_search.py)",
        "",
        f"`{command}` — {datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"one local cluster, its operator as a subprocess; each search an Experiment of {args.trials} PPO CartPole "
        f"configurations x {args.steps:,} timesteps (one seed each, two at a time) over learning_rate (log, "
        f"1e-5 to 1e-1), n_epochs (1-10), gae_lambda and the network size; {args.repeats} repeats per sampler "
        f"(sampler seeds 0..{args.repeats - 1}). A search's result: its own best configuration's score in the "
        f"final Benchmark ({args.episodes} held-out episodes).",
        "",
        "| sampler | held-out score of its best, per repeat | IQM [95% CI] | timesteps spent per search |",
        "|---|---|---|---|",
    ]
    for sampler in SAMPLERS:
        s = summary["samplers"].get(sampler)
        if s is None:
            lines.append(f"| {sampler} | - | - | - |")
            continue
        scores = ", ".join(f"{x:.1f}" for x in s["scores"])
        steps = ", ".join(f"{t:,}" for t in sorted(set(s["timesteps"]))) or "-"
        lines.append(f"| {sampler} | {scores} | {s['iqm']:.1f} [{s['low']:.1f}, {s['high']:.1f}] | {steps} |")
    lines.append("")
    if "difference" in summary:
        d, p = summary["difference"], summary["probability"]
        lines += [
            f"TPE minus Random, difference of IQMs: **{d['value']:+.1f}** [95% CI {d['low']:+.1f}, {d['high']:+.1f}]; "
            f"probability that TPE's search beats Random's: **{p['value']:.2f}** [{p['low']:.2f}, {p['high']:.2f}].",
            "",
        ]
    failed = [s["name"] for s in searches if s.get("phase") != "Succeeded"]
    if failed:
        lines += [f"Searches that did not succeed: {', '.join(failed)}.", ""]
    lines += [END]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="searches per sampler (sampler seeds 0..n-1)")
    parser.add_argument("--trials", type=int, default=8, help="configurations per search")
    parser.add_argument("--steps", type=int, default=8192, help="timesteps per configuration")
    parser.add_argument("--episodes", type=int, default=20, help="held-out episodes per model in the final Benchmark")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one search may take")
    parser.add_argument("--write", type=Path, help="markdown file to update (between bench_search markers)")
    parser.add_argument("--json", type=Path, help="also write every search's figures here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python bench/bench_search.py " + " ".join(sys.argv[1:] if argv is None else argv)
    searches = drive(args)
    summary = summarize(searches)
    if args.json:
        args.json.write_text(json.dumps({"searches": searches, "summary": summary}, indent=1))
    section = report(searches, summary, args, command.strip())
    print(section)
    if args.write:
        write_section(args.write, section, BEGIN, END)
    return 0 if all(s.get("phase") == "Succeeded" for s in searches) else 1


if __name__ == "__main__":
    raise SystemExit(main())
