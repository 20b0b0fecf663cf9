"""Compute setup: the torch device and the number of CPU threads.

A pod sees every core of its node through ``os.cpu_count()`` while its CPU quota may be
a fraction of them; torch's default of one thread per visible core then oversubscribes
the quota and slows small networks down. The thread count follows the cgroup quota
unless ``OMP_NUM_THREADS`` says otherwise.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from kubegym_runner.config import Device
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


def available_cpus(cpu_max_file: Path = CGROUP_CPU_MAX) -> int:
    """CPUs this process may use: the affinity mask, capped by the cgroup quota (at least 1)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        limit = cgroup_cpu_limit(cpu_max_file.read_text())
    except OSError:
        limit = None
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)


def configure_threads() -> int:
    """Set torch's intra-op threads to the CPUs available (``OMP_NUM_THREADS`` wins)."""
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(available_cpus())
    threads = torch.get_num_threads()
    log.info("torch uses %d CPU thread(s)", threads)
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
