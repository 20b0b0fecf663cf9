"""Each runner pod's own storage credentials, issued before its Job exists and refreshed while it runs.

The pure parts — what a pod may touch, the session policy, the Secret, when to refresh — are
:mod:`kubegym_operator.builders.credentials`'; this module does the two steps with I/O, for the
reconciles (:mod:`kubegym_operator.reconciler`, the Experiment's report in
:mod:`kubegym_operator.controllers.experiment`):

- :func:`issue`: mint credentials (STS ``AssumeRole`` through a :class:`Minter`), write them into
  the Job's per-run Secret (created, or replaced if one is left from an earlier Job), and return
  the Job manifest with the record of when they were issued and expire, to create;
- :func:`refresh`: the same for a live Job whose credentials have a third of their lifetime
  left — the Secret is replaced in place (the kubelet updates the pod's volume, the runner's S3
  client re-reads the file) and the Job's record patched, so the next check is a lifetime later.

The operator writes Secrets but never reads one (its RBAC has no ``get`` on Secrets), so the
record lives on the Job, which it watches anyway. A :class:`Minter` is what signs with the
operator's own key: :class:`~kubegym_operator.sts.StsClient` on a running operator, a fake in
unit tests. STS failures are :class:`~kubegym_operator.sts.StsError`.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kubegym_api.storage import SessionCredentials
from kubegym_operator.builders import credentials as build
from kubegym_operator.clusterapi import ClusterAPI
from kubegym_operator.kubeapi import Obj
from kubegym_operator.watched import Kind

log = logging.getLogger("kubegym.credentials")


class Minter(Protocol):
    """Turns the operator's key into credentials limited by a session policy (STS AssumeRole)."""

    def assume_role(self, policy: str, name: str, duration_seconds: int) -> SessionCredentials:
        """Credentials allowed what ``policy`` (JSON) allows, for ``duration_seconds``; ``name``
        names the session (the run). Raises :class:`~kubegym_operator.sts.StsError`."""
        ...


@dataclass(frozen=True)
class Issuer:
    """A :class:`Minter` and the lifetime of what it mints (``KUBEGYM_STORAGE_CREDENTIALS_DURATION_SECONDS``)."""

    minter: Minter
    duration_seconds: int


def _session(job: Mapping[str, Any]) -> str:
    meta = job["metadata"]
    return f"kubegym.{meta['namespace']}.{meta['name']}"


def _mint(issuer: Issuer, job: Mapping[str, Any], access: build.StorageAccess) -> SessionCredentials:
    policy = build.session_policy(access)
    return issuer.minter.assume_role(policy, _session(job), issuer.duration_seconds)


def _secret(job: Mapping[str, Any], minted: SessionCredentials) -> Obj:
    owners = (job.get("metadata") or {}).get("ownerReferences") or []
    return build.credentials_secret(job, copy.deepcopy(owners[0]), minted)


def issue(api: ClusterAPI, issuer: Issuer, job: Obj, access: build.StorageAccess, now: dt.datetime) -> Obj:
    """Mint the credentials of ``job``'s pod and write its Secret; returns ``job`` (a manifest to
    create) with the issued/expiration record in its annotations."""
    minted = _mint(issuer, job, access)
    api.put(_secret(job, minted))
    out = copy.deepcopy(job)
    out["metadata"].setdefault("annotations", {}).update(build.issued_annotations(now, minted))
    meta = job["metadata"]
    log.info(
        "%s/%s: storage credentials issued until %s",
        meta["namespace"],
        meta["name"],
        build.rfc3339(minted.expiration),
    )
    return out


def refresh(api: ClusterAPI, issuer: Issuer, job: Obj, access: build.StorageAccess, now: dt.datetime) -> Obj:
    """Mint new credentials for the live ``job``'s pod, replace its Secret's and record them on the
    Job; returns the patched Job."""
    minted = _mint(issuer, job, access)
    api.put(_secret(job, minted))
    meta = job["metadata"]
    patched = api.merge_patch(
        Kind.JOB,
        meta["namespace"],
        meta["name"],
        {"metadata": {"annotations": build.issued_annotations(now, minted)}},
    )
    log.info(
        "%s/%s: storage credentials refreshed until %s",
        meta["namespace"],
        meta["name"],
        build.rfc3339(minted.expiration),
    )
    return patched
