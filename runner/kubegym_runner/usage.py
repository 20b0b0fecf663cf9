"""What the runner's pod has used, as ``status.progress.usage``: CPU time of its process tree, and a
GPU's utilisation where the node exposes it.

The operator counts what a pod *reserved* (requests x time, :mod:`kubegym_operator.builders.cost`);
only the pod itself can say what it *used*. The trainer's own CPU time misses the environment
workers of a ``SubprocVecEnv`` (separate processes, alive until the end), so the figure sums the
runner process (its threads, and the children it has reaped) and its live descendants, read from
``/proc`` — no psutil needed, and the same in a container as on the local node, where pods are
processes. GPU utilisation comes from NVML through ``torch.cuda.utilization`` when torch has a
CUDA device and the NVML bindings are there; otherwise it is left out, never guessed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from kubegym_api.cost import ResourceUsage
from kubegym_runner.runlog import POD_NAME_ENV

log = logging.getLogger(__name__)

PROC = Path("/proc")


def _stat_fields(text: str) -> list[str]:
    """Fields of a ``/proc/<pid>/stat`` line after the command name (which may hold spaces)."""
    return text[text.rindex(")") + 2 :].split()


def process_times(text: str, ticks: int, *, reaped: bool) -> tuple[int, float]:
    """(parent pid, CPU seconds) from a ``/proc/<pid>/stat`` line: utime + stime, plus cutime +
    cstime (its reaped children) when ``reaped``."""
    fields = _stat_fields(text)
    # After "pid (comm)": state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    ppid = int(fields[1])
    used = int(fields[11]) + int(fields[12])
    if reaped:
        used += int(fields[13]) + int(fields[14])
    return ppid, used / ticks


def tree_cpu_seconds(pid: int | None = None, proc: Path = PROC) -> float:
    """CPU seconds of process ``pid`` (default: this one) with its reaped children and every live
    descendant; 0.0 where ``/proc`` cannot be read."""
    root = os.getpid() if pid is None else pid
    ticks = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, float]] = {}
    try:
        entries = [p for p in proc.iterdir() if p.name.isdigit()]
    except OSError:
        return 0.0
    for entry in entries:
        try:
            table[int(entry.name)] = process_times((entry / "stat").read_text(), ticks, reaped=True)
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
    if root not in table:
        return 0.0
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    total, todo = 0.0, [root]
    while todo:
        current = todo.pop()
        total += table[current][1]
        todo.extend(children.get(current, []))
    return total


def _gpu() -> tuple[float | None, int | None]:
    """(utilisation percent, peak bytes allocated) of the current CUDA device; Nones without one."""
    try:
        import torch
    except ImportError:
        return None, None
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        return None, None
    peak = int(torch.cuda.max_memory_allocated())
    try:
        percent: float | None = float(torch.cuda.utilization())
    except Exception:  # noqa: BLE001 - NVML bindings missing or the driver refuses: not measured
        percent = None
    return percent, peak


class UsageMeter:
    """Measures the pod named by ``$KUBEGYM_POD_NAME``; ``measure()`` is cheap enough for every
    progress report (one pass over ``/proc``)."""

    def __init__(self, pod: str | None = None, proc: Path = PROC) -> None:
        self.pod = pod if pod is not None else os.environ.get(POD_NAME_ENV, "")
        self.proc = proc
        self._gpu_failed = False

    def measure(self) -> ResourceUsage | None:
        """The usage so far, or None outside a pod (no pod name to file it under)."""
        if not self.pod:
            return None
        percent, peak = (None, None) if self._gpu_failed else _gpu()
        try:
            return ResourceUsage(
                pod=self.pod,
                cpu_seconds=round(tree_cpu_seconds(proc=self.proc), 1),
                gpu_utilization_percent=percent,
                gpu_memory_peak_bytes=peak,
            )
        except ValueError as e:
            log.warning("resource usage not reported: %s", e)
            self._gpu_failed = True
            return None
