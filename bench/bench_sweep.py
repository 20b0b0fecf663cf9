"""The sweep example's wall time, before and after a change, each tree on a local cluster of its own.

``examples/experiment-cartpole-sweep.yaml`` (PPO on CartPole, 2 learning rates x 3 seeds, two runs
at a time, 500m CPU each, a final Benchmark and a report Job) is applied to a fresh local cluster
built from one source tree, with that tree's operator as a subprocess (as the integration tier runs
it), and timed from ``kubectl apply`` to the Experiment's ``Succeeded``. Two trees, one after the
other in the same invocation on the same machine:

* **before**: a ``git worktree`` of ``--baseline`` (default: the commit before issue 13's runner
  sizing, when each runner took one torch thread per core of the node and envs were never
  vectorised), checked out under ``~/.cache/kubegym/bench`` — not under /tmp, where that commit's
  local node let a pod's /tmp emptyDir hide the checkout;
* **after**: ``--after`` (default: this checkout's working tree), a worktree like the first when
  it names a commit — so a tree being edited cannot leak into the figures.

Both use the same Python environment, the same pinned binaries and the same example file (this
checkout's). Reported: wall time per tree, the ratio, each run's training steps/s (from its
``status.progress``), and each configuration's score with its confidence interval, so the results
can be compared as well as the time (same results within their CIs).

    python bench/bench_sweep.py --write docs/benchmarks.md     # about 12 minutes on 2 cores

The driver half (``--drive``) runs inside a subprocess whose ``PYTHONPATH`` points at one tree; it
uses only what both trees' ``kubegym_localcluster`` offer (``LocalCluster``, ``copy_s3_secret``,
``layout``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from benchdoc import markers, write_section

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "experiment-cartpole-sweep.yaml"
BASELINE = "c096592"
WORKTREES = Path.home() / ".cache" / "kubegym" / "bench"
BEGIN, END = markers("bench_sweep")
NAMESPACE = "bench-sweep"
GROUP_PATH = "/apis/kubegym.io/v1alpha1"
SOURCE_DIRS = ("api", "operator", "runner", "cli", "hack")


def log(message: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def tree_pythonpath(tree: Path) -> str:
    return os.pathsep.join(str(tree / d) for d in SOURCE_DIRS if (tree / d).is_dir())


# --- the driver: one tree, one cluster ---------------------------------------------------------------


def drive(state: Path, example: Path, timeout: float) -> dict[str, Any]:
    """Start a cluster in ``state`` from the tree on ``PYTHONPATH``, run the sweep, return what it measured."""
    from kubegym_localcluster import layout
    from kubegym_localcluster.cluster import LocalCluster, copy_s3_secret

    cluster = LocalCluster(state)
    log(f"starting a local cluster in {state}")
    cluster.up()
    kube = cluster.admin()
    operator: subprocess.Popen[bytes] | None = None
    try:
        kube.apply(
            f"/api/v1/namespaces/{NAMESPACE}",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
            "bench-sweep",
        )
        _wait(lambda: bool(kube.get(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")), 60)
        copy_s3_secret(kube, NAMESPACE, cluster.minio())
        env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "KUBEGYM_STORAGE_BUCKET": layout.BUCKET,
            "KUBEGYM_STORAGE_ENDPOINT": cluster.minio().endpoint,
            # Static keys, as before STS mode: the figures stay comparable (bench_sweep runs older trees too).
            "KUBEGYM_STORAGE_CREDENTIALS": "static",
            "KUBEGYM_STORAGE_SECRET": layout.S3_SECRET,
            "KUBEGYM_LIVENESS": "",
            "KUBEGYM_METRICS_PORT": str(layout.free_ports(1)[0]),
        }
        with (state / "operator.log").open("ab") as out:
            operator = subprocess.Popen(
                [sys.executable, "-m", "kubegym_operator"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        manifest = yaml.safe_load(example.read_text())
        manifest["metadata"]["namespace"] = NAMESPACE
        name = manifest["metadata"]["name"]
        time.sleep(3)  # the operator's watches start
        started = time.monotonic()
        kube.create(f"{GROUP_PATH}/namespaces/{NAMESPACE}/experiments", manifest)
        log(f"applied {example.name}; waiting for experiment/{name}")
        status: dict[str, Any] = {}
        while True:
            status = kube.get(f"{GROUP_PATH}/namespaces/{NAMESPACE}/experiments/{name}").get("status") or {}
            if status.get("phase") in ("Succeeded", "Failed"):
                break
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"experiment/{name} did not finish within {timeout:.0f}s: {status.get('phase')}")
            time.sleep(1.0)
        seconds = time.monotonic() - started
        runs = kube.get(f"{GROUP_PATH}/namespaces/{NAMESPACE}/trainingruns").get("items", [])
        return {
            "seconds": seconds,
            "phase": status.get("phase"),
            "message": status.get("message"),
            "results": status.get("results") or [],
            "best": status.get("best"),
            "runs": [_run_figures(run) for run in runs],
        }
    finally:
        if operator is not None and operator.poll() is None:
            operator.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                operator.wait(20)
            if operator.poll() is None:
                operator.kill()
        with contextlib.suppress(Exception):
            cluster.down()


def _run_figures(run: dict[str, Any]) -> dict[str, Any]:
    status = run.get("status") or {}
    progress = status.get("progress") or {}
    started, finished = status.get("startTime"), status.get("completionTime")
    seconds = None
    if started and finished:
        seconds = (_time(finished) - _time(started)).total_seconds()
    return {
        "name": run["metadata"]["name"],
        "phase": status.get("phase"),
        "stepsPerSecond": progress.get("stepsPerSecond"),
        "seconds": seconds,
        "compute": progress.get("compute"),
    }


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _wait(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if condition():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s")
        time.sleep(0.5)


# --- the comparison -------------------------------------------------------------------------------------


def worktree(ref: str) -> Path:
    """A detached worktree of ``ref`` under ~/.cache/kubegym/bench (made once, reused)."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", f"{ref}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    path = WORKTREES / f"tree-{commit}"
    if not (path / ".git").exists():
        WORKTREES.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit], check=True)
    return path


def measure(label: str, tree: Path, timeout: float) -> dict[str, Any]:
    state = WORKTREES / f"state-{label}"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    out = state / "figures.json"
    env = {**os.environ, "PYTHONPATH": tree_pythonpath(tree), "KUBEGYM_STATE": str(state)}
    argv = [sys.executable, str(Path(__file__).resolve()), "--drive", str(state), "--out", str(out)]
    argv += ["--timeout", str(timeout)]
    log(f"{label}: {tree}")
    subprocess.run(argv, env=env, cwd=tree, check=True)
    figures: dict[str, Any] = json.loads(out.read_text())
    figures["tree"] = str(tree)
    shutil.rmtree(state, ignore_errors=True)
    return figures


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()


def _scores(figures: dict[str, Any]) -> dict[str, tuple[float, float, float]]:
    scores = {}
    for row in figures["results"]:
        try:
            scores[str(row["configuration"])] = (float(row["score"]), float(row["ciLower"]), float(row["ciUpper"]))
        except (KeyError, TypeError, ValueError):
            continue
    return scores


def report(before: dict[str, Any], now: dict[str, Any], baseline: str, command: str, after: str | None = None) -> str:
    ratio = before["seconds"] / now["seconds"]
    head = after or _git("rev-parse", "--short", "HEAD")
    lines = [
        BEGIN,
        "## The sweep example, before and after issue 13 (bench/bench_sweep.py)",
        "",
        f"`{command}` — {datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"each tree on a fresh local cluster of its own, its operator as a subprocess, one after the other; "
        f"`examples/experiment-cartpole-sweep.yaml` (6 PPO runs of 10,240 steps, 2 at a time, 500m CPU each, "
        f"a final Benchmark and a report Job), timed from apply to `Succeeded`.",
        "",
        "| tree | wall time | runs' training steps/s (each) | phase |",
        "|---|---|---|---|",
    ]
    for label, figures, ref in (("before", before, baseline), ("after", now, head)):
        rates = sorted(r["stepsPerSecond"] for r in figures["runs"] if isinstance(r.get("stepsPerSecond"), int | float))
        shown = ", ".join(f"{x:.0f}" for x in rates) or "-"
        lines.append(f"| {label} (`{ref}`) | {figures['seconds']:.0f} s | {shown} | {figures['phase']} |")
    verdict = "met" if ratio >= 5 else "**NOT met**"
    lines += ["", f"**{ratio:.1f}x faster** (target: at least 5x): {verdict}.", ""]
    b, n = _scores(before), _scores(now)
    if b or n:
        lines += ["| configuration | score before [95% CI] | score after [95% CI] | CIs overlap |", "|---|---|---|---|"]
        for config in sorted(set(b) | set(n)):
            cells = []
            for scores in (b, n):
                s = scores.get(config)
                cells.append(f"{s[0]:.1f} [{s[1]:.1f}, {s[2]:.1f}]" if s else "-")
            overlap = "-"
            if config in b and config in n:
                overlap = "yes" if b[config][1] <= n[config][2] and n[config][1] <= b[config][2] else "**no**"
            lines.append(f"| {config} | {cells[0]} | {cells[1]} | {overlap} |")
        lines.append("")
    lines += [END]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help=f"git ref of the 'before' tree (default {BASELINE})")
    parser.add_argument("--after", help="git ref of the 'after' tree (default: this checkout's working tree)")
    parser.add_argument("--timeout", type=float, default=1500.0, help="seconds one sweep may take")
    parser.add_argument("--write", type=Path, help="markdown file to update (between bench_sweep markers)")
    parser.add_argument("--drive", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.drive is not None:
        figures = drive(args.drive, EXAMPLE, args.timeout)
        args.out.write_text(json.dumps(figures))
        return 0
    command = "python bench/bench_sweep.py " + " ".join(sys.argv[1:] if argv is None else argv)
    before = measure("before", worktree(args.baseline), args.timeout)
    log(f"before: {before['seconds']:.0f} s ({before['phase']})")
    now = measure("after", worktree(args.after) if args.after else REPO, args.timeout)
    log(f"after: {now['seconds']:.0f} s ({now['phase']})")
    section = report(before, now, args.baseline, command, args.after)
    print(section)
    if args.write:
        write_section(args.write, section, BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
