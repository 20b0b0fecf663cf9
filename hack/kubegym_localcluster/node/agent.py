"""The local node: a kubelet-less Node that runs its pods as local processes.

It registers a Node with this machine's capacity (and ``nvidia.com/gpu`` when
configured or when ``nvidia-smi`` lists GPUs), keeps its Lease and Ready condition
fresh, watches the pods bound to it and gives each a :class:`PodWorker`. A small
HTTPS server answers the API server's ``/containerLogs`` calls, so ``kubectl logs``
works as on any cluster.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from .. import layout
from ..kube import ApiError, Credentials, Kube
from .logserver import LogServer
from .runtime import PodWorker
from .status import now

Obj = dict[str, Any]
log = logging.getLogger("kubegym.node")

LEASE_SECONDS = 40
HEARTBEAT = 10.0
EVICT_ANNOTATION = "kubegym.io/evict"


def detected_gpus() -> int:
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


class NodeConfig:
    """``<state>/node/config.json``: capacity overrides, re-read at every heartbeat."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> Obj:
        try:
            return dict(json.loads(self.path.read_text()))
        except (OSError, ValueError):
            return {}

    def write(self, **values: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cfg = {**self.read(), **values}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cfg))
        tmp.replace(self.path)


class NodeAgent:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.name = layout.NODE_NAME
        self.kube = Kube(Credentials.from_kubeconfig(state / "node.kubeconfig"))
        self.ports = layout.Ports.load_or_pick(state)
        self.pods_dir = state / "node" / "pods"
        self.config = NodeConfig(state / "node" / "config.json")
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.boot_id = str(uuid.uuid4())
        #: nvidia-smi is asked once: capacity() runs twice a second in the heartbeat loop.
        self.detected_gpus = detected_gpus()
        self.service_env = {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.ports.apiserver),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.ports.apiserver),
            "KUBERNETES_PORT": f"tcp://127.0.0.1:{self.ports.apiserver}",
            "KUBERNETES_PORT_443_TCP": f"tcp://127.0.0.1:{self.ports.apiserver}",
            "KUBERNETES_PORT_443_TCP_ADDR": "127.0.0.1",
            "KUBERNETES_PORT_443_TCP_PORT": str(self.ports.apiserver),
            "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        }

    # --- node object ------------------------------------------------------------------------
    def capacity(self) -> dict[str, str]:
        cfg = self.config.read()
        gpus = cfg.get("gpus")
        if gpus is None:
            gpus = self.detected_gpus
        cap = {
            "cpu": str(cfg.get("cpu", os.cpu_count() or 1)),
            "memory": f"{memory_bytes() // 1024}Ki",
            "pods": str(cfg.get("pods", 110)),
            "ephemeral-storage": f"{shutil.disk_usage(self.state).total // 1024}Ki",
        }
        if int(gpus) > 0:
            cap["nvidia.com/gpu"] = str(int(gpus))
        return cap

    def node_status(self) -> Obj:
        cap = self.capacity()
        ts = now()
        cond = [
            {"type": t, "status": "False", "reason": r, "message": m, "lastHeartbeatTime": ts, "lastTransitionTime": ts}
            for t, r, m in (
                ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            )
        ]
        cond.append(
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "local node is posting ready status",
                "lastHeartbeatTime": ts,
                "lastTransitionTime": ts,
            }
        )
        version = layout.versions()["KUBERNETES_VERSION"]
        return {
            "capacity": cap,
            "allocatable": cap,
            "conditions": cond,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.ports.kubelet}},
            "nodeInfo": {
                "machineID": self.boot_id.replace("-", ""),
                "systemUUID": self.boot_id,
                "bootID": self.boot_id,
                "kernelVersion": platform.release(),
                "osImage": "kubegym local node",
                "containerRuntimeVersion": "kubegym-local://0.1.0",
                "kubeletVersion": version,
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()),
            },
        }

    def register(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "node.kubernetes.io/instance-type": "kubegym-local",
                    "kubegym.io/local-node": "true",
                },
            },
            "spec": {},
        }
        try:
            self.kube.create("/api/v1/nodes", body)
        except ApiError as e:
            if e.status != 409:
                raise
        self.post_status()

    def post_status(self) -> None:
        status = self.node_status()
        if "nvidia.com/gpu" not in status["capacity"]:
            # A merge patch keeps map keys it does not mention: a GPU count that went away is
            # removed explicitly, as a kubelet drops a device plugin's resource.
            for key in ("capacity", "allocatable"):
                status[key] = {**status[key], "nvidia.com/gpu": None}
        self.kube.strategic_patch(f"/api/v1/nodes/{self.name}/status", {"status": status})

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        ts = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": ts}
        try:
            self.kube.merge_patch(path, {"spec": spec})
        except ApiError as e:
            if e.status != 404:
                raise
            node = self.kube.get(f"/api/v1/nodes/{self.name}")
            self.kube.create(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": self.name,
                        "namespace": "kube-node-lease",
                        "ownerReferences": [
                            {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": node["metadata"]["uid"]}
                        ],
                    },
                    "spec": spec,
                },
            )

    def heartbeat_loop(self) -> None:
        last_status = 0.0
        last_cap: dict[str, str] = {}
        failing = False
        while not self.stopping.is_set():
            try:
                self.renew_lease()
                cap = self.capacity()
                # After an outage the node controller may have marked the node NotReady (its
                # lease went stale): post Ready at once rather than at the next minute.
                if failing or cap != last_cap or time.monotonic() - last_status > 60:
                    self.post_status()
                    last_status, last_cap = time.monotonic(), cap
                if failing:
                    log.info("heartbeat: the API server answers again; node status posted")
                failing = False
            except Exception as e:  # noqa: BLE001 - keep beating through API hiccups
                if not failing:
                    log.warning("heartbeat failed: %s", e)
                failing = True
            # Capacity changes (config.json) should show quickly; the lease needs only HEARTBEAT.
            for _ in range(int(HEARTBEAT / 0.5)):
                if self.stopping.wait(0.5) or self.capacity() != last_cap:
                    break

    # --- pods -------------------------------------------------------------------------------
    def handle(self, pod: Obj) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        with self.lock:
            worker = self.workers.get(uid)
            phase = pod.get("status", {}).get("phase")
            if worker is None:
                if phase in ("Succeeded", "Failed"):
                    return
                if meta.get("deletionTimestamp"):
                    self._delete_now(pod)
                    return
                worker = PodWorker(self.kube, pod, self.pods_dir / uid, self.service_env, self.name, self.stopping)
                self.workers[uid] = worker
                log.info("pod %s/%s: starting", meta["namespace"], meta["name"])
                worker.start()
                return
        if meta.get("deletionTimestamp") and not worker.terminate_requested.is_set():
            grace = meta.get("deletionGracePeriodSeconds", pod["spec"].get("terminationGracePeriodSeconds", 30))
            log.info("pod %s/%s: terminating (grace %ss)", meta["namespace"], meta["name"], grace)
            worker.request_termination(float(grace))
        elif meta.get("deletionTimestamp") and worker.finished.is_set():
            worker._delete_object()
        ev = meta.get("annotations", {}).get(EVICT_ANNOTATION)
        if ev and worker.evict_message is None and not worker.finished.is_set():
            log.info("pod %s/%s: evicting: %s", meta["namespace"], meta["name"], ev)
            worker.request_eviction(ev)

    def _delete_now(self, pod: Obj) -> None:
        m = pod["metadata"]
        try:
            self.kube.delete(
                f"/api/v1/namespaces/{m['namespace']}/pods/{m['name']}",
                {
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": m["uid"]},
                },
            )
        except ApiError as e:
            if e.status not in (404, 409):
                log.warning("delete %s: %s", m["name"], e)

    def forget(self, pod: Obj) -> None:
        """The pod object is gone (force-deleted, or deleted while we could not see it): stop it."""
        with self.lock:
            worker = self.workers.pop(pod["metadata"]["uid"], None)
        if worker is not None and not worker.finished.is_set() and not worker.terminate_requested.is_set():
            log.info("pod %s/%s: deleted from the API; stopping its containers", worker.ns, worker.name)
            worker.request_termination(float(pod["spec"].get("terminationGracePeriodSeconds", 30)))

    def sync(self, pods: list[Obj]) -> None:
        """After a (re-)list: start or update every listed pod, stop workers of pods that vanished.

        A watch that broke (the API server restarted) may have missed DELETED events; the list
        is the truth, as a kubelet's SyncPods treats it.
        """
        listed = {p["metadata"]["uid"] for p in pods}
        for pod in pods:
            self.handle(pod)
        with self.lock:
            vanished = [w.pod for uid, w in self.workers.items() if uid not in listed]
        for pod in vanished:
            self.forget(pod)

    def worker_for(self, namespace: str, name: str) -> PodWorker | None:
        with self.lock:
            for w in self.workers.values():
                if w.ns == namespace and w.name == name:
                    return w
        return None

    def watch_loop(self) -> None:
        selector = {"fieldSelector": f"spec.nodeName={self.name}"}
        while not self.stopping.is_set():
            try:
                lst = self.kube.get("/api/v1/pods", **selector)
                rv = lst["metadata"]["resourceVersion"]
                self.sync(lst["items"])
                for ev in self.kube.watch(
                    "/api/v1/pods",
                    resourceVersion=rv,
                    allowWatchBookmarks="true",
                    fieldSelector=selector["fieldSelector"],
                ):
                    if self.stopping.is_set():
                        return
                    typ, obj = ev["type"], ev["object"]
                    if typ == "ERROR":
                        break  # 410 Gone or similar: list again
                    if typ == "BOOKMARK":
                        continue
                    if typ == "DELETED":
                        self.forget(obj)
                    else:
                        self.handle(obj)
            except Exception as e:  # noqa: BLE001 - the API server may be restarting
                log.warning("pod watch: %s; listing again", e)
                self.stopping.wait(1.0)

    # --- lifecycle --------------------------------------------------------------------------
    def run(self) -> None:
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self._reap_leftovers()
        while True:
            try:
                self.register()
                break
            except Exception as e:  # noqa: BLE001
                log.warning("register: %s", e)
                time.sleep(1)
        LogServer(self, self.state / "pki", self.ports.kubelet).start()
        threading.Thread(target=self.heartbeat_loop, name="heartbeat", daemon=True).start()
        log.info("node %s registered; capacity %s", self.name, self.capacity())
        self.watch_loop()

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            workers = list(self.workers.values())
        for w in workers:
            w.grace = 5.0
            w._kill_all()

    def _reap_leftovers(self) -> None:
        """Processes of pods from an earlier run of the node are not ours to keep."""
        from ..procs import kill_group

        for pidfile in self.pods_dir.glob("*/pids/*"):
            with contextlib.suppress(OSError, ValueError):
                kill_group(int(pidfile.read_text()), 2.0)
            pidfile.unlink(missing_ok=True)
