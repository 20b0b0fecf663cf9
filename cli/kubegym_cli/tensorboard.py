"""``kubectl gym tensorboard``: a real TensorBoard over a run's, or an Experiment's, curves.

    kubectl gym tensorboard NAME [-n NAMESPACE] [--port P] [--dir DIR] [--sync-only] [--endpoint URL]

Why: each runner keeps SB3's TensorBoard event files in its run's folder,
``<status.artifacts.uri>tensorboard/`` (:mod:`kubegym_runner.curves`), every 30 s and at the end.
This command finds the runs — the TrainingRun ``NAME``, or every run of the Experiment ``NAME``
(``status.runs``), or the runs a Benchmark's models come from (``trainingRunRef``) — copies their
event files into a local cache, one folder per run (``DIR``, default
``~/.cache/kubegym/tensorboard/<namespace>/<NAME>``), starts TensorBoard (PyPI ``tensorboard``) on
``127.0.0.1:P`` over that cache, prints its URL, and copies what grew every
:data:`SYNC_SECONDS` until Ctrl-C; TensorBoard reloads it by itself. ``--sync-only`` copies once
and prints the folder (for a notebook's own TensorBoard, or for pandas).

S3 is read with boto3's usual credentials (as ``kubectl gym report``); the endpoint is
``--endpoint``, else the run's storage endpoint, else ``AWS_ENDPOINT_URL``. Errors — unknown name,
no permission, storage unreachable, no curves yet, the port in use — are one line and exit 1.
:func:`run_folders` and :func:`to_sync` are the pure parts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from kubegym_cli.errors import CliError, api_error
from kubegym_cli.status import find

Obj = Mapping[str, Any]
GROUP, VERSION, TRAINING_RUNS = "kubegym.io", "v1alpha1", "trainingruns"
#: The runner's folder of event files under a run's folder (``kubegym_runner.curves.TENSORBOARD_FOLDER``).
TENSORBOARD_FOLDER = "tensorboard"
#: Seconds between two copies from S3 while TensorBoard runs.
SYNC_SECONDS = 15.0
DEFAULT_PORT = 6006


def curves_uri(run: Obj) -> str | None:
    """``s3://…/<run folder>/tensorboard/`` of a TrainingRun, or None before its folder is chosen."""
    uri = ((run.get("status") or {}).get("artifacts") or {}).get("uri")
    return f"{str(uri).rstrip('/')}/{TENSORBOARD_FOLDER}/" if uri else None


def run_names(kind: str, obj: Obj) -> list[str]:
    """The TrainingRuns whose curves an object has: itself, an Experiment's runs, a Benchmark's models' runs."""
    if kind == "TrainingRun":
        return [str(obj["metadata"]["name"])]
    if kind == "Experiment":
        return [str(r["name"]) for r in (obj.get("status") or {}).get("runs") or [] if r.get("name")]
    refs = ((m.get("trainingRunRef") or {}).get("name") for m in (obj.get("spec") or {}).get("models") or [])
    return list(dict.fromkeys(str(r) for r in refs if r))


def run_folders(runs: Iterable[Obj]) -> dict[str, str]:
    """``{run name: its curves' s3:// folder}`` for the runs that have one."""
    folders = {}
    for run in runs:
        uri = curves_uri(run)
        if uri:
            folders[str(run["metadata"]["name"])] = uri
    return folders


def to_sync(remote: Mapping[str, int], local: Mapping[str, int]) -> list[str]:
    """The object names (``{name: size}`` in S3) to copy: new ones and those whose size changed."""
    return sorted(name for name, size in remote.items() if local.get(name) != size)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``host:port`` can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def add_parser(commands: Any, handler: Callable[[argparse.Namespace], int]) -> None:
    """Register ``tensorboard``; ``handler`` connects and calls :func:`run`."""
    p = commands.add_parser("tensorboard", help="TensorBoard over a TrainingRun's or an Experiment's curves")
    p.add_argument("name", help="TrainingRun, Experiment or Benchmark (or kind/name)")
    p.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TensorBoard's port (default: {DEFAULT_PORT})")
    p.add_argument("--dir", help="local cache (default: ~/.cache/kubegym/tensorboard/<namespace>/<name>)")
    p.add_argument("--sync-only", action="store_true", help="copy the curves once, print the folder, start nothing")
    p.add_argument("--endpoint", help="S3 endpoint URL (default: the run's storage endpoint, else $AWS_ENDPOINT_URL)")
    p.set_defaults(handler=handler)


class Sync:
    """Copies the event files of ``folders`` (``{run: s3 folder}``) into ``cache/<run>/``."""

    def __init__(self, folders: Mapping[str, str], cache: Path, endpoint: str | None) -> None:
        from kubegym_api.storage import S3Storage
        from kubegym_runner.storage import S3Uri, Storage

        self.folders = {run: S3Uri.parse(uri) for run, uri in folders.items()}
        self.cache = cache
        buckets = {uri.bucket for uri in self.folders.values()}
        self.storage = {b: Storage.from_config(S3Storage(bucket=b, endpoint=endpoint)) for b in buckets}

    def once(self) -> int:
        """Copy what is new or grew; returns how many event files the cache holds."""
        from kubegym_runner.errors import RunnerError

        held = 0
        for run, folder in self.folders.items():
            target = self.cache / run
            target.mkdir(parents=True, exist_ok=True)
            storage = self.storage[folder.bucket]
            try:
                listed = storage.list_objects(folder.folder())
                prefix = folder.folder().key
                remote = {o.key[len(prefix) :]: o.size for o in listed if "/" not in o.key[len(prefix) :]}
                local = {p.name: p.stat().st_size for p in target.iterdir() if p.is_file()}
                for name in to_sync(remote, local):
                    partial = target / f".{name}.part"
                    storage.download_file(folder.join(name), partial)
                    partial.replace(target / name)  # TensorBoard never reads half a copy
            except RunnerError as e:
                raise CliError(f"cannot read the curves of {run} in {folder}: {e}") from None
            held += len(remote)
        return held


def run(args: argparse.Namespace, api: Any, namespace: str) -> int:
    """The subcommand with a CustomObjectsApi: find the runs, copy their curves, serve them."""
    from kubernetes.client.exceptions import ApiException

    ns = args.namespace or namespace
    found = find(api, ns, args.name)
    runs = []
    for name in run_names(found.kind, found.obj):
        if found.kind == "TrainingRun":
            runs.append(found.obj)
            continue
        try:
            runs.append(api.get_namespaced_custom_object(GROUP, VERSION, ns, TRAINING_RUNS, name))
        except ApiException as e:
            if e.status != 404:  # a run of an Experiment can have been deleted: its curves went with it
                raise api_error(e, TRAINING_RUNS, name, ns) from None
    label = f"{found.kind.lower()} {ns}/{found.obj['metadata']['name']}"
    folders = run_folders(runs)
    if not folders:
        raise CliError(f"{label} has no TensorBoard curves yet (no run of it has started)")
    if not args.sync_only and not port_free(args.port):
        raise CliError(f"port {args.port} is in use: choose another with --port")
    first = runs[0]
    spec_storage = ((first.get("spec") or {}).get("checkpoint") or {}).get("storage") or {}
    endpoint = args.endpoint or spec_storage.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL") or None
    cache = Path(args.dir) if args.dir else Path.home() / ".cache" / "kubegym" / "tensorboard" / ns / args.name
    sync = Sync(folders, cache, endpoint)
    if sync.once() == 0:
        raise CliError(f"{label} has no TensorBoard curves yet (nothing in {', '.join(folders.values())})")
    if args.sync_only:
        print(cache)
        return 0
    return serve(sync, cache, args.port)


def serve(sync: Sync, cache: Path, port: int) -> int:
    """TensorBoard over ``cache`` on ``127.0.0.1:port``, synced every :data:`SYNC_SECONDS` until it ends."""
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(cache), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--reload_interval", "5"]
    log_path = cache.parent / f"{cache.name}.tensorboard.log"  # beside the cache: not a run of it
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    print(f"TensorBoard on {url} (runs: {', '.join(sorted(sync.folders))}); Ctrl-C stops it", flush=True)
    try:
        while proc.poll() is None:
            time.sleep(SYNC_SECONDS)
            if proc.poll() is None:
                with contextlib.suppress(CliError):  # storage away for a while: the next copy catches up
                    sync.once()
    except KeyboardInterrupt:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        return 0
    lines = log_path.read_text(errors="replace").strip().splitlines()
    raise CliError(f"TensorBoard exited ({proc.returncode}): {lines[-1] if lines else 'no message'} (log: {log_path})")
