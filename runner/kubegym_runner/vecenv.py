"""Subprocess vectorisation with fewer worker processes than environment copies.

stable-baselines3's ``SubprocVecEnv`` starts one process per copy: eight Atari copies in a pod
that requested two CPUs would be eight busy processes on two CPUs' worth of share. A
:class:`GroupedSubprocVecEnv` starts ``workers`` processes instead and gives each a contiguous
group of the copies, which it steps in a ``DummyVecEnv`` of its own. Each step is one pipe round
trip per worker (a batch of actions out, a batch of results back), and the semantics are
``DummyVecEnv``'s, which are ``SubprocVecEnv``'s: auto-reset on done with ``terminal_observation``
and ``TimeLimit.truncated`` in the info, per-copy seeds and options at reset, ``reset_infos``.

Copy ``i`` is built by ``env_fns[i]`` in every arrangement, so ``make_vec_env``'s per-copy seeds
(``seed + i``) and ``Monitor`` wrappers are the same as with one process per copy.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from stable_baselines3.common.vec_env.base_vec_env import (
    CloudpickleWrapper,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)


def split_evenly(n: int, groups: int) -> list[range]:
    """``range(n)`` cut into ``groups`` contiguous parts whose sizes differ by at most one
    (the larger ones first); ``groups`` is clamped to ``[1, n]``."""
    groups = max(1, min(groups, n))
    size, extra = divmod(n, groups)
    parts: list[range] = []
    start = 0
    for g in range(groups):
        stop = start + size + (1 if g < extra else 0)
        parts.append(range(start, stop))
        start = stop
    return parts


def _group_worker(remote: Connection, parent_remote: Connection, env_fns: CloudpickleWrapper) -> None:
    """A worker process: one ``DummyVecEnv`` of its group of copies, driven over ``remote``."""
    parent_remote.close()
    venv = DummyVecEnv(env_fns.var)
    while True:
        try:
            cmd, data = remote.recv()
        except (EOFError, KeyboardInterrupt):
            break
        if cmd == "step":
            venv.step_async(data)
            obs, rewards, dones, infos = venv.step_wait()
            remote.send((obs, rewards, dones, infos, venv.reset_infos))
        elif cmd == "reset":
            seeds, options = data
            venv._seeds = list(seeds)
            venv._options = list(options)
            obs = venv.reset()
            remote.send((obs, venv.reset_infos))
        elif cmd == "get_images":
            remote.send(venv.get_images())
        elif cmd == "get_spaces":
            remote.send((venv.observation_space, venv.action_space))
        elif cmd == "get_attr":
            name, indices = data
            remote.send(venv.get_attr(name, indices))
        elif cmd == "has_attr":
            remote.send(venv.has_attr(data))
        elif cmd == "set_attr":
            name, value, indices = data
            remote.send(venv.set_attr(name, value, indices))  # type: ignore[func-returns-value]
        elif cmd == "env_method":
            name, args, kwargs, indices = data
            remote.send(venv.env_method(name, *args, indices=indices, **kwargs))
        elif cmd == "is_wrapped":
            wrapper, indices = data
            remote.send(venv.env_is_wrapped(wrapper, indices))
        elif cmd == "close":
            venv.close()
            remote.close()
            break
        else:
            raise ValueError(f"unknown command {cmd!r} for a vectorised-env worker")


def _concat_obs(parts: Sequence[VecEnvObs], space: spaces.Space[Any]) -> VecEnvObs:
    """Join the workers' batches of observations along the copy axis."""
    if isinstance(space, spaces.Dict):
        return {key: np.concatenate([p[key] for p in parts]) for key in space.spaces}  # type: ignore[call-overload]
    if isinstance(space, spaces.Tuple):
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(space.spaces)))  # type: ignore[index]
    return np.concatenate(parts)  # type: ignore[arg-type]


class GroupedSubprocVecEnv(VecEnv):
    """``len(env_fns)`` copies stepped by ``workers`` processes (contiguous groups, sizes within one).

    ``start_method`` as for ``SubprocVecEnv`` (default ``forkserver`` where available, else ``spawn``).
    """

    def __init__(self, env_fns: list[Callable[[], gym.Env]], workers: int = 1, start_method: str | None = None) -> None:
        self.waiting = False
        self.closed = False
        self.groups = split_evenly(len(env_fns), workers)
        #: Copy index -> (worker, index within the worker's group).
        self.slots = [(w, i - group.start) for w, group in enumerate(self.groups) for i in group]
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(start_method)
        pipes = [ctx.Pipe() for _ in self.groups]
        self.remotes: list[Connection] = [parent for parent, _ in pipes]
        self.processes: list[Any] = []
        for (parent, child), group in zip(pipes, self.groups, strict=True):
            fns = CloudpickleWrapper([env_fns[i] for i in group])
            process = ctx.Process(target=_group_worker, args=(child, parent, fns), daemon=True)  # type: ignore[attr-defined]
            process.start()
            self.processes.append(process)
            child.close()
        self.remotes[0].send(("get_spaces", None))
        observation_space, action_space = self.remotes[0].recv()
        super().__init__(len(env_fns), observation_space, action_space)

    @property
    def workers(self) -> int:
        return len(self.groups)

    # --- stepping --------------------------------------------------------------------------

    def step_async(self, actions: np.ndarray) -> None:
        for remote, group in zip(self.remotes, self.groups, strict=True):
            remote.send(("step", actions[group.start : group.stop]))
        self.waiting = True

    def step_wait(self) -> VecEnvStepReturn:
        results = [remote.recv() for remote in self.remotes]
        self.waiting = False
        obs = _concat_obs([r[0] for r in results], self.observation_space)
        rewards = np.concatenate([r[1] for r in results])
        dones = np.concatenate([r[2] for r in results])
        infos = [info for r in results for info in r[3]]
        self.reset_infos = [info for r in results for info in r[4]]
        return obs, rewards, dones, infos

    def reset(self) -> VecEnvObs:
        for remote, group in zip(self.remotes, self.groups, strict=True):
            remote.send(("reset", ([self._seeds[i] for i in group], [self._options[i] for i in group])))
        results = [remote.recv() for remote in self.remotes]
        self.reset_infos = [info for r in results for info in r[1]]
        self._reset_seeds()
        self._reset_options()
        return _concat_obs([r[0] for r in results], self.observation_space)

    def close(self) -> None:
        if self.closed:
            return
        if self.waiting:
            for remote in self.remotes:
                remote.recv()
        for remote in self.remotes:
            remote.send(("close", None))
        for process in self.processes:
            process.join()
        for remote in self.remotes:
            remote.close()
        self.closed = True

    def get_images(self) -> Sequence[np.ndarray | None]:
        for remote in self.remotes:
            remote.send(("get_images", None))
        return [image for remote in self.remotes for image in remote.recv()]

    # --- attributes and methods of the copies ------------------------------------------------

    def _by_worker(self, indices: VecEnvIndices) -> list[tuple[int, list[int], list[int]]]:
        """(worker, local indices, positions in the answer) for the copies ``indices`` names."""
        wanted = list(self._get_indices(indices))
        out: dict[int, tuple[list[int], list[int]]] = {}
        for position, index in enumerate(wanted):
            worker, local = self.slots[index]
            locals_, positions = out.setdefault(worker, ([], []))
            locals_.append(local)
            positions.append(position)
        return [(w, locals_, positions) for w, (locals_, positions) in out.items()]

    def _ask(self, indices: VecEnvIndices, cmd: str, make: Callable[[list[int]], Any]) -> list[Any]:
        plan = self._by_worker(indices)
        for worker, locals_, _ in plan:
            self.remotes[worker].send((cmd, make(locals_)))
        answers: list[Any] = [None] * sum(len(p) for _, _, p in plan)
        for worker, _, positions in plan:
            for position, value in zip(positions, self.remotes[worker].recv(), strict=True):
                answers[position] = value
        return answers

    def has_attr(self, attr_name: str) -> bool:
        for remote in self.remotes:
            remote.send(("has_attr", attr_name))
        return all([remote.recv() for remote in self.remotes])

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return self._ask(indices, "get_attr", lambda local: (attr_name, local))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        plan = self._by_worker(indices)
        for worker, locals_, _ in plan:
            self.remotes[worker].send(("set_attr", (attr_name, value, locals_)))
        for worker, _, _ in plan:
            self.remotes[worker].recv()

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        return self._ask(indices, "env_method", lambda local: (method_name, method_args, method_kwargs, local))

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return self._ask(indices, "is_wrapped", lambda local: (wrapper_class, local))
