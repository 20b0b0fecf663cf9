"""Turning a pod spec into what a process needs: environment variables and mounted files.

The volume rule: every volume of a pod is materialised as a directory under the pod's
folder (``<state>/node/pods/<uid>/volumes/<volume>``), and each container runs in a
private mount namespace in which those directories are bind-mounted at the
containers' ``mountPath`` (read-only where asked). A program inside the pod therefore
finds ``/var/run/secrets/kubernetes.io/serviceaccount/token`` and its ConfigMaps at
the paths it was written for, and no other pod sees them.

Like a kubelet, the node keeps those files current while the pod runs: ServiceAccount tokens
are rotated at 80% of their lifetime, and Secret and ConfigMap volumes (and projected sources)
are read again every :data:`VOLUME_SYNC_SECONDS` (a kubelet's sync period is a minute), a
changed file replaced atomically (write, then rename; the bind mount shows the new one), a key
that is gone removed. Environment variables from them never change, as on a kubelet. A Secret
that disappeared leaves the files as they were.
"""

from __future__ import annotations

import base64
import contextlib
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..kube import Kube

Obj = dict[str, Any]

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
#: How often Secret and ConfigMap volumes of a running pod are read again (a kubelet's sync period).
VOLUME_SYNC_SECONDS = 60.0


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, $$ escapes, unknown stay."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _VAR_REF.sub(sub, value)


class SpecError(Exception):
    """The pod cannot start as specified (missing Secret key, ...): CreateContainerConfigError."""


@dataclass
class Mount:
    source: Path
    target: str
    read_only: bool


@dataclass
class Materialised:
    env: dict[str, str]
    mounts: list[Mount] = field(default_factory=list)


def field_ref(pod: Obj, path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str(meta.get(m.group(1), {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP", "127.0.0.1"),
        "status.podIP": status.get("podIP", "127.0.0.1"),
        "status.podIPs": status.get("podIP", "127.0.0.1"),
        "status.hostIPs": status.get("hostIP", "127.0.0.1"),
    }
    if path not in simple:
        raise SpecError(f"unsupported fieldRef {path!r}")
    return str(simple[path] or "")


class Resolver:
    """Reads the objects a pod references, with the node's own (Node-authorized) identity."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.ns = namespace
        self._cache: dict[tuple[str, str], Obj] = {}

    def _get(self, kind: str, name: str, optional: bool, fresh: bool = False) -> Obj | None:
        key = (kind, name)
        if fresh:
            self._cache.pop(key, None)
        if key not in self._cache:
            # The Node authorizer learns of a new pod's references a moment after binding.
            for attempt in range(20):
                try:
                    self._cache[key] = self.kube.get(f"/api/v1/namespaces/{self.ns}/{kind}/{name}")
                    break
                except Exception as e:
                    status = getattr(e, "status", 0)
                    if status == 404:
                        if optional:
                            return None
                        raise SpecError(f'{kind[:-1]} "{name}" not found') from None
                    if status == 403 and attempt < 19:
                        time.sleep(0.25)
                        continue
                    raise
        return self._cache[key]

    def data(self, kind: str, name: str, optional: bool = False, fresh: bool = False) -> dict[str, bytes]:
        """The object's data by key (decoded); ``fresh`` reads it again instead of the cached copy."""
        obj = self._get(kind, name, optional, fresh)
        if obj is None:
            return {}
        if kind == "secrets":
            return {k: base64.b64decode(v) for k, v in obj.get("data", {}).items()}
        out = {k: v.encode() for k, v in obj.get("data", {}).items()}
        out.update({k: base64.b64decode(v) for k, v in obj.get("binaryData", {}).items()})
        return out

    def key(self, kind: str, ref: Obj) -> str | None:
        data = self.data(kind, ref["name"], ref.get("optional", False))
        if ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise SpecError(f"couldn't find key {ref['key']} in {kind[:-1]} {self.ns}/{ref['name']}")
        return data[ref["key"]].decode()

    def token(self, pod: Obj, audience: str | None, seconds: int) -> tuple[str, float]:
        sa = pod["spec"].get("serviceAccountName", "default")
        body: Obj = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            },
        }
        if audience:
            body["spec"]["audiences"] = [audience]
        res = self.kube.create(f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token", body)
        return res["status"]["token"], time.time() + seconds


def parse_quantity(q: str | int | float) -> int:
    """Bytes of a memory quantity (Ki/Mi/Gi/k/M/G or plain)."""
    s = str(q)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, mult in units.items():
        if s.endswith(suffix):
            return int(float(s[: -len(suffix)]) * mult)
    return int(float(s))


def parse_cpu(q: str | int | float) -> float:
    """Cores of a CPU quantity (``500m``, ``2``, ``1.5``)."""
    s = str(q)
    return float(s[:-1]) / 1000 if s.endswith("m") else float(s)


def resource_field(container: Obj, resource: str, divisor: str | None) -> str:
    """A ``resourceFieldRef`` value as a kubelet computes it: the quantity divided by
    ``divisor`` and rounded up; an unset limit is the node's allocatable, an unset request 0."""
    kind, _, name = resource.partition(".")
    resources = container.get("resources", {})
    value = resources.get(kind, {}).get(name)
    if name == "cpu":
        cores = parse_cpu(value) if value is not None else (float(os.cpu_count() or 1) if kind == "limits" else 0.0)
        return str(math.ceil(round(cores / parse_cpu(divisor or "1"), 9)))
    if name in ("memory", "ephemeral-storage"):
        if value is None:
            return str(_memory_total() if kind == "limits" and name == "memory" else 0)
        return str(math.ceil(parse_quantity(value) / parse_quantity(divisor or "1")))
    raise SpecError(f"unsupported resourceFieldRef resource {resource!r}")


def _memory_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def container_env(
    pod: Obj, container: Obj, resolver: Resolver, base: dict[str, str], service_env: dict[str, str]
) -> dict[str, str]:
    env = {**base, **service_env, "HOSTNAME": pod["metadata"]["name"]}
    for src in container.get("envFrom", []):
        prefix = src.get("prefix", "")
        if "secretRef" in src:
            data = resolver.data("secrets", src["secretRef"]["name"], src["secretRef"].get("optional", False))
        else:
            data = resolver.data("configmaps", src["configMapRef"]["name"], src["configMapRef"].get("optional", False))
        env.update({prefix + k: v.decode() for k, v in data.items()})
    for var in container.get("env", []):
        if "valueFrom" not in var:
            env[var["name"]] = expand(var.get("value", ""), env)
            continue
        vf = var["valueFrom"]
        value: str | None
        if "secretKeyRef" in vf:
            value = resolver.key("secrets", vf["secretKeyRef"])
        elif "configMapKeyRef" in vf:
            value = resolver.key("configmaps", vf["configMapKeyRef"])
        elif "fieldRef" in vf:
            value = field_ref(pod, vf["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in vf:
            ref = vf["resourceFieldRef"]
            value = resource_field(container, ref["resource"], ref.get("divisor"))
        else:
            raise SpecError(f"unsupported valueFrom in env {var['name']}")
        if value is not None:
            env[var["name"]] = value
    return env


def _write_items(
    target: Path, data: dict[str, bytes], items: list[Obj] | None, mode: int | None, prune: bool = False
) -> bool:
    """Write ``data``'s keys (or ``items``' key→path) as files, each atomically, skipping files that
    already hold the value; ``prune`` removes files of keys no longer in ``data`` (a whole Secret
    or ConfigMap volume). Returns whether a file changed."""
    target.mkdir(parents=True, exist_ok=True)
    pairs = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
    changed = False
    for key, rel in pairs:
        if key not in data:
            continue
        f = target / rel
        with contextlib.suppress(OSError):
            if f.read_bytes() == data[key]:
                continue
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_name(f".{f.name}.tmp")
        tmp.write_bytes(data[key])
        tmp.chmod(mode if mode is not None else 0o644)
        tmp.replace(f)
        changed = True
    if prune and not items:
        for f in target.iterdir():
            if f.is_file() and not f.name.startswith(".") and f.name not in data:
                f.unlink()
                changed = True
    return changed


class Volumes:
    """Materialises a pod's volumes and refreshes its projected ServiceAccount tokens."""

    def __init__(self, pod: Obj, root: Path, resolver: Resolver, sync_seconds: float = VOLUME_SYNC_SECONDS) -> None:
        self.pod = pod
        self.root = root
        self.resolver = resolver
        self.sync_seconds = sync_seconds
        self._tokens: list[tuple[Path, str | None, int, float]] = []  # (file, audience, ttl, expiry)
        self._next_sync = time.monotonic() + sync_seconds

    def path(self, name: str) -> Path:
        return self.root / name

    def materialise(self) -> None:
        self._tokens = []  # idempotent: a retried set-up starts over
        for vol in self.pod["spec"].get("volumes", []):
            target = self.path(vol["name"])
            target.mkdir(parents=True, exist_ok=True)
            if "emptyDir" in vol:
                continue
            if "secret" in vol:
                s = vol["secret"]
                data = self.resolver.data("secrets", s["secretName"], s.get("optional", False))
                _write_items(target, data, s.get("items"), s.get("defaultMode"))
            elif "configMap" in vol:
                c = vol["configMap"]
                data = self.resolver.data("configmaps", c["name"], c.get("optional", False))
                _write_items(target, data, c.get("items"), c.get("defaultMode"))
            elif "downwardAPI" in vol:
                self._downward(target, vol["downwardAPI"].get("items", []))
            elif "projected" in vol:
                self._projected(target, vol["projected"])
            elif "hostPath" in vol:
                continue  # mounted straight from its path; see mounts()
            else:
                raise SpecError(f"volume {vol['name']}: this volume type is not supported by the local node")

    def _downward(self, target: Path, items: list[Obj]) -> None:
        data = {i["path"]: field_ref(self.pod, i["fieldRef"]["fieldPath"]).encode() for i in items if "fieldRef" in i}
        _write_items(target, data, None, None)

    def _projected(self, target: Path, proj: Obj) -> None:
        for src in proj.get("sources", []):
            if "serviceAccountToken" in src:
                t = src["serviceAccountToken"]
                ttl = int(t.get("expirationSeconds", 3607))
                f = target / t["path"]
                token, expiry = self.resolver.token(self.pod, t.get("audience"), ttl)
                _write_items(target, {t["path"]: token.encode()}, None, 0o644)
                self._tokens.append((f, t.get("audience"), ttl, expiry))
            elif "configMap" in src:
                c = src["configMap"]
                _write_items(
                    target, self.resolver.data("configmaps", c["name"], c.get("optional", False)), c.get("items"), None
                )
            elif "secret" in src:
                s = src["secret"]
                _write_items(
                    target, self.resolver.data("secrets", s["name"], s.get("optional", False)), s.get("items"), None
                )
            elif "downwardAPI" in src:
                self._downward(target, src["downwardAPI"].get("items", []))

    def sync_sources(self, now: float | None = None) -> bool:
        """Every ``sync_seconds`` (by the monotonic clock, or ``now``): read the pod's Secret and
        ConfigMap volumes (and projected sources) again and rewrite what changed. Returns whether
        a file changed. A source that is gone keeps its files; other errors propagate (the next
        sync tries again)."""
        now = time.monotonic() if now is None else now
        if now < self._next_sync:
            return False
        self._next_sync = now + self.sync_seconds
        changed = False
        for vol in self.pod["spec"].get("volumes", []):
            target = self.path(vol["name"])
            if "secret" in vol:
                s = vol["secret"]
                changed |= self._sync(target, "secrets", s["secretName"], s, s.get("defaultMode"), prune=True)
            elif "configMap" in vol:
                c = vol["configMap"]
                changed |= self._sync(target, "configmaps", c["name"], c, c.get("defaultMode"), prune=True)
            elif "projected" in vol:
                for src in vol["projected"].get("sources", []):
                    if "secret" in src:
                        changed |= self._sync(target, "secrets", src["secret"]["name"], src["secret"], None)
                    elif "configMap" in src:
                        changed |= self._sync(target, "configmaps", src["configMap"]["name"], src["configMap"], None)
        return changed

    def _sync(self, target: Path, kind: str, name: str, source: Obj, mode: int | None, prune: bool = False) -> bool:
        try:
            data = self.resolver.data(kind, name, source.get("optional", False), fresh=True)
        except SpecError:
            return False  # deleted meanwhile: the files stay as they were
        return _write_items(target, data, source.get("items"), mode, prune=prune and bool(data))

    def refresh_tokens(self) -> None:
        """Rotate tokens at 80% of their lifetime, as the kubelet does."""
        now = time.time()
        for i, (f, aud, ttl, expiry) in enumerate(self._tokens):
            if now > expiry - 0.2 * ttl:
                token, new_expiry = self.resolver.token(self.pod, aud, ttl)
                _write_items(f.parent, {f.name: token.encode()}, None, 0o644)
                self._tokens[i] = (f, aud, ttl, new_expiry)

    def mounts(self, container: Obj) -> list[Mount]:
        by_name = {v["name"]: v for v in self.pod["spec"].get("volumes", [])}
        out = []
        for vm in container.get("volumeMounts", []):
            vol = by_name.get(vm["name"])
            if vol is None:
                raise SpecError(f"volumeMount {vm['name']} names no volume")
            src = Path(vol["hostPath"]["path"]) if "hostPath" in vol else self.path(vm["name"])
            if vm.get("subPath"):
                src = src / vm["subPath"]
                src.mkdir(parents=True, exist_ok=True)
            out.append(Mount(src, vm["mountPath"], bool(vm.get("readOnly", False))))
        return out
