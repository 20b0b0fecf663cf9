"""Compute setup: the torch device, the number of CPU threads and how envs are vectorised.

A pod sees every core of its node through ``os.cpu_count()`` while its share may be a
fraction of them; torch's default of one thread per visible core then oversubscribes the
node as soon as other pods run beside it, and small networks slow down many times over
(two CartPole runs with 2 threads each on 2 cores: ~85 steps/s each; with 1 thread: ~420).
A runner pod usually has a CPU request and no limit (no CFS throttling), so the quota says
nothing: the thread count follows the container's CPU request (rounded down, at least 1),
passed by the operator through the downward API, capped by a limit or cgroup quota where one
exists and by the CPUs the process may run on. ``OMP_NUM_THREADS`` wins over all of them.

The same figure sizes, in this order:

1. OpenMP and MKL (and OpenBLAS, which reads ``OMP_NUM_THREADS``): :func:`export_thread_env`
   exports ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` where unset, before numpy or torch load;
2. torch's intra-op and inter-op threads: :func:`configure_threads`;
3. the subprocess workers of vectorised envs: :func:`choose_vectorization` (never more than the share).

This module imports nothing heavy (torch only inside :func:`configure_threads`), so the entry
point can use it before numpy and torch are imported.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from kubegym_api.base import Device
from kubegym_api.environment import VecEnvMode
from kubegym_api.envvars import CPU_LIMIT_ENV, CPU_REQUEST_ENV
from kubegym_runner.errors import UserError

log = logging.getLogger(__name__)

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
#: Lists the thread variables :func:`export_thread_env` set (so they are not taken for the user's).
EXPORTED_ENV = "KUBEGYM_EXPORTED_THREAD_VARS"


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


@dataclass(frozen=True)
class CpuShare:
    """The CPUs a runner should keep busy, and which constraint decided it."""

    cpus: int
    #: ``cpus`` (the affinity mask), ``cgroup quota``, ``cpu limit <m>m`` or ``cpu request <m>m``.
    source: str
    request_millicores: int | None = None
    limit_millicores: int | None = None


def cpu_share(cpu_max_file: Path = CGROUP_CPU_MAX, environ: Mapping[str, str] = os.environ) -> CpuShare:
    """The container's CPU request (``CPU_REQUEST_ENV``, rounded down), capped by its limit
    (``CPU_LIMIT_ENV``) or cgroup quota (rounded up) and the affinity mask; at least 1.
    Without a request, the cap alone."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    source = "cpus"
    try:
        quota = cgroup_cpu_limit(cpu_max_file.read_text())
    except OSError:
        quota = None
    if quota is not None and math.ceil(quota) < cpus:
        cpus, source = math.ceil(quota), "cgroup quota"
    limit_m = _millicores(environ, CPU_LIMIT_ENV)
    if limit_m is not None and math.ceil(limit_m / 1000) < cpus:
        cpus, source = math.ceil(limit_m / 1000), f"cpu limit {limit_m}m"
    request_m = _millicores(environ, CPU_REQUEST_ENV)
    if request_m is not None and request_m // 1000 < cpus:
        cpus, source = request_m // 1000, f"cpu request {request_m}m"
    return CpuShare(max(1, cpus), source, request_m, limit_m)


def available_cpus(cpu_max_file: Path = CGROUP_CPU_MAX, environ: Mapping[str, str] = os.environ) -> int:
    """Threads this process should use: :func:`cpu_share`'s figure."""
    return cpu_share(cpu_max_file, environ).cpus


def omp_threads(environ: Mapping[str, str]) -> int | None:
    """The thread count ``OMP_NUM_THREADS`` sets (its first level: ``4,2`` is 4), if valid."""
    head = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        value = int(head)
    except ValueError:
        return None
    return value if value > 0 else None


def _exported(environ: Mapping[str, str]) -> set[str]:
    return {name for name in environ.get(EXPORTED_ENV, "").split(",") if name}


def export_thread_env(
    environ: MutableMapping[str, str] = os.environ,
    modules: Mapping[str, object] = sys.modules,
    cpus: int | None = None,
) -> dict[str, str]:
    """Export ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` as the pod's CPU share (or ``cpus``),
    for the OpenMP, MKL and OpenBLAS thread pools of torch and numpy, which read them once, when
    they load. So it only acts while neither numpy nor torch is imported (the runner's entry point
    calls it first), and only for variables that are unset: ``OMP_NUM_THREADS`` set on the
    container wins, and then MKL and OpenBLAS follow it by themselves. What it set is listed in
    ``KUBEGYM_EXPORTED_THREAD_VARS``, so that :func:`configure_threads` still tells the user's
    ``OMP_NUM_THREADS`` from its own. Returns what it set."""
    if any(name in modules for name in ("numpy", "torch")) or "OMP_NUM_THREADS" in environ:
        return {}
    figure = str(cpus if cpus is not None else cpu_share(environ=environ).cpus)
    exported = {"OMP_NUM_THREADS": figure}
    if "MKL_NUM_THREADS" not in environ:
        exported["MKL_NUM_THREADS"] = figure
    environ.update(exported)
    environ[EXPORTED_ENV] = ",".join(sorted(_exported(environ) | set(exported)))
    return exported


@dataclass(frozen=True)
class ThreadSettings:
    """What :func:`configure_threads` chose (``status.progress.compute`` shows it)."""

    threads: int
    interop_threads: int | None
    #: ``OMP_NUM_THREADS`` or :attr:`CpuShare.source`.
    source: str
    share: CpuShare


def user_omp_threads(environ: Mapping[str, str] = os.environ) -> int | None:
    """``OMP_NUM_THREADS`` as the container sets it (``None`` if unset, invalid, or the runner's own)."""
    return omp_threads(environ) if "OMP_NUM_THREADS" not in _exported(environ) else None


def thread_count(environ: Mapping[str, str] = os.environ, share: CpuShare | None = None) -> tuple[int, str]:
    """torch's intra-op threads and why: the user's ``OMP_NUM_THREADS`` if set (not one the runner
    exported), else the pod's CPU share."""
    share = share or cpu_share(environ=environ)
    user = user_omp_threads(environ)
    if user is not None:
        return user, "OMP_NUM_THREADS"
    return share.cpus, share.source


def configure_threads(environ: Mapping[str, str] = os.environ) -> ThreadSettings:
    """Set torch's intra-op threads from the pod's CPU share (``OMP_NUM_THREADS`` wins), and its
    inter-op threads to the same figure where torch still allows it (before any inter-op work)."""
    import torch

    share = cpu_share(environ=environ)
    threads, source = thread_count(environ, share)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # only once per process, and only before inter-op parallel work started
        log.debug("torch's inter-op threads are already fixed at %d", torch.get_num_interop_threads())
    settings = ThreadSettings(torch.get_num_threads(), torch.get_num_interop_threads(), source, share)
    log.info(
        "torch uses %d intra-op and %d inter-op CPU thread(s), from %s (CPU request %sm, limit %sm, "
        "OMP_NUM_THREADS %s, MKL_NUM_THREADS %s%s)",
        settings.threads,
        settings.interop_threads,
        source,
        environ.get(CPU_REQUEST_ENV, "-"),
        environ.get(CPU_LIMIT_ENV, "-"),
        environ.get("OMP_NUM_THREADS", "-"),
        environ.get("MKL_NUM_THREADS", "-"),
        ", exported by the runner" if _exported(environ) else "",
    )
    return settings


# --- vectorised environments ------------------------------------------------------------------

#: A step of one env copy (its wrappers included) above this many seconds makes worker processes
#: worth their inter-process round trip (tens of microseconds per step and worker).
EXPENSIVE_STEP_SECONDS = 0.0002
#: Environment families known to be expensive to step (matched against the id, or the name
#: after ``module:``): Atari (ALE), MuJoCo, Box2D's walkers and racing, PyBullet.
EXPENSIVE_ENV_IDS = re.compile(
    r"^(ALE/.*|.*NoFrameskip-v\d+|(Ant|HalfCheetah|Hopper|Humanoid|HumanoidStandup|InvertedDoublePendulum|"
    r"InvertedPendulum|Pusher|Reacher|Swimmer|Walker2d)-v\d+|BipedalWalker(Hardcore)?-v\d+|CarRacing-v\d+|"
    r".*Bullet.*)$"
)


def known_expensive(env_id: str) -> bool:
    """Whether ``env_id`` names an environment family known to be expensive to step."""
    return EXPENSIVE_ENV_IDS.match(env_id.rpartition(":")[2]) is not None


@dataclass(frozen=True)
class Vectorization:
    """How the training copies are stepped: ``mode`` dummy (``workers`` 0) or subproc."""

    mode: VecEnvMode
    workers: int
    reason: str


def choose_vectorization(
    requested: VecEnvMode | str, n_envs: int, cpus: int, env_id: str, step_seconds: float | None = None
) -> Vectorization:
    """The vectorization of ``n_envs`` copies for a pod whose CPU share is ``cpus``.

    ``auto``: subproc when there are 2 or more copies, the share allows 2 or more workers and the
    env is expensive (:func:`known_expensive`, or ``step_seconds`` measured above
    :data:`EXPENSIVE_STEP_SECONDS`); dummy otherwise. An explicit ``dummy`` or ``subproc`` wins,
    but subproc workers never exceed the share: ``min(n_envs, cpus)`` workers, copies grouped.
    """
    mode = VecEnvMode(requested)
    workers = max(1, min(n_envs, cpus))
    grouping = (
        f"{n_envs} copies in {workers} worker(s), capped by the CPU share of {cpus}"
        if workers < n_envs
        else f"one worker per copy ({n_envs})"
    )
    if mode is VecEnvMode.dummy:
        return Vectorization(VecEnvMode.dummy, 0, "vecEnv dummy (spec)")
    if mode is VecEnvMode.subproc:
        return Vectorization(VecEnvMode.subproc, workers, f"vecEnv subproc (spec): {grouping}")
    if n_envs < 2:
        return Vectorization(VecEnvMode.dummy, 0, "auto: one env copy")
    if cpus < 2:
        return Vectorization(VecEnvMode.dummy, 0, f"auto: a CPU share of {cpus} allows one process only")
    cost = f"{step_seconds * 1e6:.0f} us per step" if step_seconds is not None else "step cost not measured"
    if known_expensive(env_id):
        return Vectorization(VecEnvMode.subproc, workers, f"auto: {env_id} is an expensive env family; {grouping}")
    limit = f"{EXPENSIVE_STEP_SECONDS * 1e6:.0f} us"
    if step_seconds is not None and step_seconds >= EXPENSIVE_STEP_SECONDS:
        return Vectorization(
            VecEnvMode.subproc, workers, f"auto: {env_id} is expensive ({cost} >= {limit}); {grouping}"
        )
    return Vectorization(
        VecEnvMode.dummy, 0, f"auto: {env_id} is cheap to step ({cost} < {limit}); worker round trips would cost more"
    )


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
