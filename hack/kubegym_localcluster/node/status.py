"""Pod status as a kubelet reports it, computed from what the node knows of each container."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exit_code(returncode: int) -> int:
    """Popen's -N (killed by signal N) becomes 128+N, as container runtimes report it."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class ContainerState:
    """The node's record of one container; ``state`` is the API's oneOf (waiting/running/terminated)."""

    name: str
    image: str
    image_id: str
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    restart_count: int = 0
    container_id: str = ""

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def terminated(self) -> Obj | None:
        return self.state.get("terminated")

    def to_api(self) -> Obj:
        out: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": self.running,
            "started": self.running,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out


def condition(ctype: str, ok: bool, reason: str | None = None, message: str | None = None) -> Obj:
    c: Obj = {"type": ctype, "status": "True" if ok else "False", "lastTransitionTime": now()}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def phase(restart_policy: str, init: list[ContainerState], main: list[ContainerState], failed_init: bool) -> str:
    """The pod phase rules of the kubelet for the states the local node produces."""
    if failed_init:
        return "Failed"
    if any(c.running for c in main):
        return "Running"
    terms = [c.terminated for c in main]
    if main and all(t is not None for t in terms):
        codes = [t["exitCode"] for t in terms if t is not None]
        if all(code == 0 for code in codes):
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"  # waiting for a restart
    if any(c.restart_count > 0 for c in main):
        return "Running"
    return "Pending"


def pod_status(
    restart_policy: str,
    init: list[ContainerState],
    main: list[ContainerState],
    start_time: str,
    failed_init: bool = False,
    extra_conditions: list[Obj] | None = None,
    reason: str | None = None,
    message: str | None = None,
) -> Obj:
    ph = phase(restart_policy, init, main, failed_init)
    initialized = all(c.terminated is not None and c.terminated["exitCode"] == 0 for c in init)
    ready = bool(main) and all(c.running for c in main)
    ready_reason = None if ready else ("PodCompleted" if ph in ("Succeeded", "Failed") else "ContainersNotReady")
    conditions = [
        condition("PodReadyToStartContainers", True),
        condition("Initialized", initialized, None if initialized else "ContainersNotInitialized"),
        condition("ContainersReady", ready, ready_reason),
        condition("Ready", ready, ready_reason),
        *list(extra_conditions or []),
    ]
    status: Obj = {
        "phase": ph,
        "conditions": conditions,
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}],
        "startTime": start_time,
        "containerStatuses": [c.to_api() for c in main],
    }
    if init:
        status["initContainerStatuses"] = [c.to_api() for c in init]
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    return status
