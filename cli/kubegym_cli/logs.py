"""``kubectl gym logs``: a TrainingRun's log, from its live pod or, once pods are gone, from S3.

    kubectl gym logs RUN [-n NAMESPACE] [-f] [--previous] [--endpoint URL]

Why: the runner's pod log is gone with the pod (a finished Job's TTL, a deleted or preempted pod),
so the runner also keeps its log in the run's folder, ``logs/<start>-<pod>.log``, every 30 s and at
exit (:mod:`kubegym_runner.runlog`). This command reads the live pod through the Kubernetes API,
like ``kubectl logs``, while there is one, and the stored copies otherwise:

- **live**: the newest pod of the run's Job (label ``batch.kubernetes.io/job-name``) whose container
  has started; ``-f`` follows it, and goes on across container restarts and pod re-creations: when
  the pod goes, it waits for the run's next pod, until the run is Succeeded or Failed.
- **--previous**: the attempt before: the newest pod's previous container when it restarted, else
  the pod before it, else the stored copy of the attempt before the last.
- **stored**: no pod has a log any more: every stored attempt in start order (the previous one with
  ``--previous``), each after a header line on stderr saying that it is the stored copy.

The stored copies are read with boto3's usual credentials (as ``kubectl gym report``); the endpoint
is ``--endpoint``, else the run's storage endpoint, else ``AWS_ENDPOINT_URL``. Storage is only
touched when no pod has the log. Errors (unknown run, no permission, storage unreachable, no pod
and no stored log) are one line and exit 1.

:func:`choose_source` and :func:`select_stored` are the pure choice; the rest reads and prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from kubegym_cli.errors import CliError, api_error

Obj = Mapping[str, Any]
GROUP, VERSION, TRAINING_RUNS = "kubegym.io", "v1alpha1", "trainingruns"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LOGS_FOLDER = "logs"
TERMINAL = ("Succeeded", "Failed")
#: Seconds between two looks for the next pod while following.
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class PodLog:
    """Read the log of ``pod`` (its ``previous`` container instance when asked)."""

    pod: str
    uid: str
    restarts: int
    previous: bool = False


@dataclass(frozen=True)
class Stored:
    """No pod has the log: read the stored copies (except those of ``live_pod``, when one is live)."""

    live_pod: str | None = None


def _runner_state(pod: Obj) -> Obj:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def _started(pod: Obj) -> bool:
    """The pod's container has run (running now, terminated, or restarted): it has a log."""
    st = _runner_state(pod)
    state = st.get("state") or {}
    return "running" in state or "terminated" in state or bool(st.get("restartCount"))


def _created(pod: Obj) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


def _pod_log(pod: Obj, previous: bool = False) -> PodLog:
    meta = pod.get("metadata") or {}
    return PodLog(
        str(meta.get("name")), str(meta.get("uid")), int(_runner_state(pod).get("restartCount") or 0), previous
    )


def choose_source(pods: Sequence[Obj], *, previous: bool) -> PodLog | Stored:
    """Where the log is read from: a live pod's log, or the stored copies (module docstring)."""
    ordered = sorted(pods, key=_created)
    newest = ordered[-1] if ordered else None
    live = str((newest.get("metadata") or {}).get("name")) if newest is not None and _started(newest) else None
    if not previous:
        return _pod_log(newest) if newest is not None and live else Stored()
    if newest is not None and int(_runner_state(newest).get("restartCount") or 0) > 0:
        return _pod_log(newest, previous=True)
    older = [p for p in ordered[:-1] if _started(p)]
    if older:
        return _pod_log(older[-1])
    return Stored(live_pod=live)


def attempt_of(key: str) -> str:
    """``<start>-<pod>`` of a stored copy's key (``.../logs/<start>-<pod>.log``)."""
    name = key.rsplit("/", 1)[-1]
    return name[: -len(".log")] if name.endswith(".log") else name


def select_stored(keys: Sequence[str], *, previous: bool, live_pod: str | None = None) -> list[str]:
    """The stored copies to print, in start order: all of them, or (``previous``) the attempt before
    the last — or before the live pod's, whose own copy is not the previous attempt."""
    ordered = sorted(k for k in keys if k.endswith(".log"))
    if not previous:
        return ordered
    if live_pod is not None:
        ordered = [k for k in ordered if not attempt_of(k).endswith(f"-{live_pod}")]
        return ordered[-1:]
    return ordered[-2:-1]


# --- reading -------------------------------------------------------------------------------------


def add_parser(commands: Any, handler: Callable[[argparse.Namespace], int]) -> None:
    """Register ``logs``; ``handler`` connects and calls :func:`run`."""
    p = commands.add_parser("logs", help="a TrainingRun's log: the live pod's (-f follows it), else the stored copy")
    p.add_argument("run", help="name of the TrainingRun")
    p.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    p.add_argument("-f", "--follow", action="store_true", help="follow the live log across restarts and new pods")
    p.add_argument("--previous", action="store_true", help="the previous attempt's log")
    p.add_argument("--endpoint", help="S3 endpoint URL for stored logs (default: the run's, else $AWS_ENDPOINT_URL)")
    p.set_defaults(handler=handler)


class _Reader:
    """The run, its pods and their logs through the API; its stored copies through S3."""

    def __init__(self, custom: Any, core: Any, namespace: str, name: str, endpoint: str | None, out: BinaryIO) -> None:
        self.custom, self.core, self.namespace, self.name = custom, core, namespace, name
        self.endpoint = endpoint
        self.out = out

    def run(self) -> Obj:
        from kubernetes.client.exceptions import ApiException

        try:
            obj: Obj = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, TRAINING_RUNS, self.name
            )
        except ApiException as e:
            raise api_error(e, TRAINING_RUNS, self.name, self.namespace) from None
        return obj

    def pods(self, run: Obj) -> list[Obj]:
        from kubernetes.client.exceptions import ApiException

        job = (run.get("status") or {}).get("jobName")
        if not job:
            return []
        try:
            listed = self.core.list_namespaced_pod(self.namespace, label_selector=f"{JOB_NAME_LABEL}={job}")
        except ApiException as e:
            raise api_error(e, "pods", job, self.namespace) from None
        pods: list[Obj] = self.core.api_client.sanitize_for_serialization(listed).get("items") or []
        return pods

    def pod_log(self, source: PodLog, *, follow: bool) -> bool:
        """Copy the pod's log to ``out``; False when the API had none (the pod went, no previous)."""
        from kubernetes.client.exceptions import ApiException

        try:
            response = self.core.read_namespaced_pod_log(
                source.pod, self.namespace, follow=follow, previous=source.previous, _preload_content=False
            )
        except ApiException as e:
            if e.status == 403:
                raise api_error(e, "pods/log", source.pod, self.namespace) from None
            return False
        try:
            for chunk in response.stream(64 * 1024):
                self.out.write(chunk)
                self.out.flush()
        finally:
            response.release_conn()
        return True

    def stored(self, run: Obj, *, previous: bool, live_pod: str | None) -> list[tuple[str, bytes]]:
        from kubegym_api.storage import S3Storage
        from kubegym_runner.errors import RunnerError
        from kubegym_runner.storage import S3Uri, Storage

        artifacts = (run.get("status") or {}).get("artifacts") or {}
        if not artifacts.get("bucket"):
            return []
        spec_storage = ((run.get("spec") or {}).get("checkpoint") or {}).get("storage") or {}
        endpoint = self.endpoint or spec_storage.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL") or None
        folder = S3Uri(artifacts["bucket"], f"{artifacts['prefix'].strip('/')}/{LOGS_FOLDER}/")
        try:
            storage = Storage.from_config(S3Storage(bucket=folder.bucket, endpoint=endpoint))
            keys = select_stored([o.key for o in storage.list_objects(folder)], previous=previous, live_pod=live_pod)
            return [(key, storage.get_bytes(S3Uri(folder.bucket, key)) or b"") for key in keys]
        except RunnerError as e:
            raise CliError(f"cannot read the stored logs of {self.namespace}/{self.name} in {folder}: {e}") from None

    def print_stored(self, run: Obj, *, previous: bool, live_pod: str | None = None) -> None:
        copies = self.stored(run, previous=previous, live_pod=live_pod)
        if not copies:
            what = "no previous attempt" if previous else "no pod and no stored log"
            raise CliError(f"trainingrun {self.namespace}/{self.name} has {what}")
        bucket = ((run.get("status") or {}).get("artifacts") or {}).get("bucket")
        for key, data in copies:
            print(
                f"==> stored copy of attempt {attempt_of(key)} (s3://{bucket}/{key}) <==", file=sys.stderr, flush=True
            )
            self.out.write(data)
            self.out.flush()


def run(args: argparse.Namespace, custom: Any, core: Any, namespace: str) -> int:
    """The subcommand with a CustomObjectsApi and a CoreV1Api (module docstring)."""
    reader = _Reader(custom, core, args.namespace or namespace, args.run, args.endpoint, sys.stdout.buffer)
    obj = reader.run()
    if not args.follow or args.previous:
        source = choose_source(reader.pods(obj), previous=args.previous)
        if isinstance(source, PodLog) and reader.pod_log(source, follow=args.follow):
            return 0
        reader.print_stored(obj, previous=args.previous, live_pod=getattr(source, "live_pod", None))
        return 0
    return follow(reader, obj)


def follow(reader: _Reader, obj: Obj) -> int:
    """Follow the live log across container restarts and new pods until the run ends; a run whose
    pods are gone shows its stored copies instead."""
    streamed: set[tuple[str, int]] = set()
    while True:
        source = choose_source(reader.pods(obj), previous=False)
        if isinstance(source, PodLog) and (source.uid, source.restarts) not in streamed:
            if streamed:
                print(f"==> pod {source.pod} (restarts: {source.restarts}) <==", file=sys.stderr, flush=True)
            reader.pod_log(source, follow=True)
            streamed.add((source.uid, source.restarts))
            obj = reader.run()
            continue
        if (obj.get("status") or {}).get("phase") in TERMINAL:
            if not streamed:
                reader.print_stored(obj, previous=False)
            return 0
        time.sleep(POLL_SECONDS)  # the pod restarts, or the run's next pod is on its way
        obj = reader.run()
