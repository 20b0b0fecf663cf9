"""Compute setup: the torch device and the number of CPU threads.

A pod sees every core of its node through ``os.cpu_count()`` while its share may be a
fraction of them; torch's default of one thread per visible core then oversubscribes the
node as soon as other pods run beside it, and small networks slow down many times over
(two CartPole runs with 2 threads each on 2 cores: ~85 steps/s each; with 1 thread: ~420).
A runner pod usually has a CPU request and no limit (no CFS throttling), so the quota says
nothing: the thread count follows the container's CPU request (rounded down, at least 1),
passed by the operator through the downward API, capped by a limit or cgroup quota where one
exists and by the CPUs the process may run on. ``OMP_NUM_THREADS`` wins over all of them.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

from kubegym_runner.config import CPU_LIMIT_ENV, CPU_REQUEST_ENV, Device
from kubegym_runner.errors import UserError

log = logging.getLogger(__name__)

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cgroup_cpu_limit(cpu_max: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line (``"200000 100000"`` → 2.0; ``max`` → None)."""
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    quota, period = float(parts[0]), float(parts[1])
    return quota / period if period > 0 else None


def _millicores(environ: Mapping[str, str], name: str) -> int | None:
    try:
        value = int(environ.get(name, ""))
    except ValueError:
        return None
    return value if value > 0 else None


def available_cpus(cpu_max_file: Path = CGROUP_CPU_MAX, environ: Mapping[str, str] = os.environ) -> int:
    """Threads this process should use: its CPU request (``CPU_REQUEST_ENV``, rounded down),
    capped by its limit (``CPU_LIMIT_ENV``) or cgroup quota (rounded up) and the affinity mask;
    at least 1. Without a request, the cap alone."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        limit = cgroup_cpu_limit(cpu_max_file.read_text())
    except OSError:
        limit = None
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    if (limit_m := _millicores(environ, CPU_LIMIT_ENV)) is not None:
        cpus = min(cpus, math.ceil(limit_m / 1000))
    if (request_m := _millicores(environ, CPU_REQUEST_ENV)) is not None:
        cpus = min(cpus, request_m // 1000)
    return max(1, cpus)


def configure_threads() -> int:
    """Set torch's intra-op threads from the pod's CPU share (``OMP_NUM_THREADS`` wins)."""
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(available_cpus())
    threads = torch.get_num_threads()
    log.info(
        "torch uses %d CPU thread(s) (CPU request %sm, limit %sm, OMP_NUM_THREADS %s)",
        threads,
        os.environ.get(CPU_REQUEST_ENV, "-"),
        os.environ.get(CPU_LIMIT_ENV, "-"),
        os.environ.get("OMP_NUM_THREADS", "-"),
    )
    return threads


def resolve_device(device: Device | str) -> str:
    """The torch device for ``spec.device``; ``cuda`` without a usable GPU is a user error
    (the pod was scheduled without ``resources.gpu``, or the image is the CPU variant)."""
    import torch

    requested = Device(device)
    available = torch.cuda.is_available()
    if requested is Device.cuda and not available:
        raise UserError(
            "device 'cuda' was requested but no CUDA device is available "
            "(set resources.gpu, use the CUDA runner image, or set device: auto)"
        )
    if requested is Device.auto:
        return "cuda" if available else "cpu"
    return str(requested.value)
