"""``kubectl gym download``: a TrainingRun's final (or best, or latest) model, checked, and how to load it.

    kubectl gym download RUN [-n NAMESPACE] [--dir DIR] [--endpoint URL] [--checkpoint final|best|latest]

The run's ``final/`` folder (``status.result.modelUri``, else ``<status.artifacts>/final/``) holds
``model.zip``, ``vecnormalize.pkl`` when the run normalised observations, and ``manifest.json``
last, with the sha256 and size of every object (the runner's checkpoint format,
:class:`~kubegym_runner.checkpoints.Manifest`). Every object the manifest lists is downloaded into
``DIR`` (default ``./<run>``) with the manifest, and its sha256 is checked against the manifest: a
file that does not match is deleted and the command fails with one line, so a corrupted copy is
never loaded. It then prints the two Python lines that load the model. ``--checkpoint best`` takes
the model of the run's best periodic evaluation instead (``status.best.uri``, ``best/``), ``latest``
its newest checkpoint (``status.checkpoints.latestUri``): the same choice as a Benchmark model's.

S3 access as ``kubectl gym report`` (boto3's usual credentials; ``--endpoint``, else the run's
storage endpoint, else ``AWS_ENDPOINT_URL``). :func:`verify` and :func:`load_lines` are pure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubegym_api.trainingrun import ModelSelection
from kubegym_cli.errors import CliError, api_error

Obj = Mapping[str, Any]
GROUP, VERSION, TRAINING_RUNS = "kubegym.io", "v1alpha1", "trainingruns"
MANIFEST_NAME = "manifest.json"
MODEL_NAME = "model.zip"
VECNORMALIZE_NAME = "vecnormalize.pkl"
#: Algorithms of sb3-contrib (the others are stable-baselines3's).
SB3_CONTRIB = frozenset({"RecurrentPPO", "QRDQN", "TQC", "TRPO", "MaskablePPO", "ARS", "CrossQ"})


class ChecksumError(CliError):
    """A downloaded object is not what the manifest says."""


def verify(name: str, expected: Obj, actual_sha256: str, actual_size: int) -> None:
    """Raise :class:`ChecksumError` when a file's sha256 or size differs from its manifest entry."""
    if actual_sha256 != expected.get("sha256"):
        raise ChecksumError(
            f"{name}: sha256 {actual_sha256[:16]}... does not match the manifest's {str(expected.get('sha256'))[:16]}... "
            "(the stored object is corrupted or was changed); the file was deleted"
        )
    size = expected.get("size")
    if size is not None and actual_size != size:
        raise ChecksumError(f"{name}: {actual_size} bytes, the manifest says {size}; the file was deleted")


def load_lines(algorithm: str, model: Path) -> list[str]:
    """The two Python lines that load the downloaded model."""
    package = "sb3_contrib" if algorithm in SB3_CONTRIB else "stable_baselines3"
    return [f"from {package} import {algorithm}", f"model = {algorithm}.load({str(model)!r})"]


def final_folder(run: Obj) -> str | None:
    """The s3:// URI of the run's ``final/`` folder, or None when it has none yet."""
    st = run.get("status") or {}
    uri = (st.get("result") or {}).get("modelUri")
    if uri:
        return str(uri).rstrip("/") + "/"
    artifacts = st.get("artifacts") or {}
    if st.get("phase") == "Succeeded" and artifacts.get("uri"):
        return str(artifacts["uri"]).rstrip("/") + "/final/"
    return None


def model_folder(run: Obj, checkpoint: ModelSelection = ModelSelection.final) -> str | None:
    """The s3:// URI of the run's folder of the ``checkpoint`` model, or None when it has none (yet)."""
    if checkpoint == ModelSelection.final:
        return final_folder(run)
    st = run.get("status") or {}
    uri = (st.get("best") or {}).get("uri") if checkpoint == ModelSelection.best else None
    if checkpoint == ModelSelection.latest:
        uri = (st.get("checkpoints") or {}).get("latestUri")
    return str(uri).rstrip("/") + "/" if uri else None


def add_parser(commands: Any, handler: Callable[[argparse.Namespace], int]) -> None:
    """Register ``download``; ``handler`` connects and calls :func:`run`."""
    p = commands.add_parser(
        "download", help="a TrainingRun's final (or best) model, statistics and manifest, sha256-checked"
    )
    p.add_argument("run", help="name of the TrainingRun")
    p.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    p.add_argument("--dir", help="where to put the files (default: ./<run>)")
    p.add_argument("--endpoint", help="S3 endpoint URL (default: the run's storage endpoint, else $AWS_ENDPOINT_URL)")
    p.add_argument(
        "--checkpoint",
        choices=[c.value for c in ModelSelection],
        default=ModelSelection.final.value,
        help="which model: final (default), best (the best periodic evaluation's) or latest (the newest checkpoint)",
    )
    p.set_defaults(handler=handler)


def download(
    run: Obj, directory: Path, endpoint: str | None, checkpoint: ModelSelection = ModelSelection.final
) -> tuple[str, dict[str, Path]]:
    """Download and check the chosen model's folder; returns the manifest's algorithm and the files by name."""
    from kubegym_api.storage import S3Storage
    from kubegym_runner.errors import RunnerError
    from kubegym_runner.storage import S3Uri, Storage, sha256_file

    meta = run.get("metadata") or {}
    folder_uri = model_folder(run, checkpoint)
    if folder_uri is None:
        phase = (run.get("status") or {}).get("phase") or "Pending"
        what = {ModelSelection.final: "final model", ModelSelection.best: "best model"}.get(checkpoint, "checkpoint")
        raise CliError(f"trainingrun {meta.get('namespace')}/{meta.get('name')} has no {what} yet ({phase})")
    folder = S3Uri.parse(folder_uri)
    try:
        storage = Storage.from_config(S3Storage(bucket=folder.bucket, endpoint=endpoint))
        data = storage.get_bytes(folder.join(MANIFEST_NAME))
        if data is None:
            raise CliError(f"{folder_uri} has no {MANIFEST_NAME}: the model is not complete")
        manifest = json.loads(data)
        objects: Mapping[str, Any] = manifest.get("objects") or {}
        directory.mkdir(parents=True, exist_ok=True)
        files: dict[str, Path] = {}
        for name, expected in sorted(objects.items()):
            if "/" in name or name in ("", ".", ".."):
                raise CliError(f"{folder_uri}{MANIFEST_NAME} names an object outside its folder: {name!r}")
            path = directory / name
            storage.download_file(folder.join(name), path)
            try:
                verify(f"{folder_uri}{name}", expected, sha256_file(path), path.stat().st_size)
            except ChecksumError:
                path.unlink(missing_ok=True)
                raise
            files[name] = path
    except RunnerError as e:
        raise CliError(f"cannot download {folder_uri}: {e}") from None
    except json.JSONDecodeError as e:
        raise CliError(f"{folder_uri}{MANIFEST_NAME} is not JSON: {e}") from None
    (directory / MANIFEST_NAME).write_bytes(data)
    files[MANIFEST_NAME] = directory / MANIFEST_NAME
    return str(manifest.get("algorithm") or (run.get("spec") or {}).get("algorithm") or "PPO"), files


def run(args: argparse.Namespace, api: Any, namespace: str) -> int:
    """The subcommand with a CustomObjectsApi: download, check, print the lines that load the model."""
    from kubernetes.client.exceptions import ApiException

    ns = args.namespace or namespace
    try:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, ns, TRAINING_RUNS, args.run)
    except ApiException as e:
        raise api_error(e, TRAINING_RUNS, args.run, ns) from None
    spec_storage = ((obj.get("spec") or {}).get("checkpoint") or {}).get("storage") or {}
    endpoint = args.endpoint or spec_storage.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL") or None
    directory = Path(args.dir or args.run)
    algorithm, files = download(obj, directory, endpoint, ModelSelection(getattr(args, "checkpoint", "final")))
    for name, path in files.items():
        print(f"{path}{'  (sha256 checked)' if name != MANIFEST_NAME else ''}", file=sys.stderr)
    if MODEL_NAME not in files:
        raise CliError(f"the model folder of {ns}/{args.run} has no {MODEL_NAME}")
    print("\n".join(load_lines(algorithm, files[MODEL_NAME].resolve())))
    if VECNORMALIZE_NAME in files:
        print(
            f"# observations were normalised: VecNormalize.load({str(files[VECNORMALIZE_NAME].resolve())!r}, venv)",
            file=sys.stderr,
        )
    return 0
