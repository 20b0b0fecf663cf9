"""kubegym's Python client, ``kubegym.Client``: the researcher's loop from a notebook or a script.

Anchor: Kubeflow Trainer's ``TrainerClient``. The resources are built from the same typed models
the CRDs are generated from (:mod:`kubegym_api`), so a wrong field or value fails in Python, with
pydantic's message, before anything reaches the cluster; the API server's own validation (CEL
rules) still answers what only it can know. Results come back as pandas DataFrames::

    from kubegym import Client

    gym = Client(namespace="research")
    gym.train("cartpole", algorithm="PPO", environment={"id": "CartPole-v1"}, total_timesteps=50_000)
    gym.wait("cartpole")                      # a progress bar; raises RunFailedError on Failed
    gym.evaluations("cartpole")               # the periodic evaluations, one row each
    gym.curves("cartpole", "rollout/ep_rew_mean")   # the TensorBoard curve
    model = gym.load_model("cartpole")        # the trained SB3 model, sha256-checked

Storage is read as ``kubectl gym`` reads it: boto3's usual credentials, the endpoint given to the
client, else the run's storage endpoint, else ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from kubegym_api import GROUP, VERSION
from kubegym_api.benchmark import BenchmarkSpec
from kubegym_api.experiment import ExperimentSpec
from kubegym_api.trainingrun import ModelSelection, TrainingRunSpec
from kubegym_cli import download, tensorboard
from kubegym_cli.connect import connect
from kubegym_cli.errors import CliError, api_error

if TYPE_CHECKING:
    import pandas as pd
    from stable_baselines3.common.base_class import BaseAlgorithm

Obj = dict[str, Any]
#: Each kind: its plural and the model of its spec.
KINDS: dict[str, tuple[str, type[BaseModel]]] = {
    "TrainingRun": ("trainingruns", TrainingRunSpec),
    "Benchmark": ("benchmarks", BenchmarkSpec),
    "Experiment": ("experiments", ExperimentSpec),
}
DONE = ("Succeeded", "Failed")


class RunFailedError(CliError):
    """The resource ended Failed; the message is its reason and message."""


def manifest(kind: str, name: str, namespace: str, spec: BaseModel | Mapping[str, Any] | None, **fields: Any) -> Obj:
    """The resource ``kind``/``name`` as the API takes it: ``spec`` (a model, or a mapping in
    camelCase or snake_case) or ``fields`` (snake_case keyword arguments), validated by the kind's
    spec model and dumped in camelCase without the unset fields (the API server applies defaults)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    if spec is not None and fields:
        raise ValueError("give either spec or keyword fields, not both")
    model_cls = KINDS[kind][1]
    model = spec if isinstance(spec, model_cls) else model_cls.model_validate(dict(spec or fields))
    body = model.model_dump(by_alias=True, exclude_unset=True, exclude_none=True, mode="json")
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def failure(obj: Mapping[str, Any]) -> str:
    """Why a Failed resource failed: its Failed (else Ready) condition's reason and message."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    for wanted in ("Failed", "Ready", "Succeeded"):
        for c in conditions:
            if c.get("type") == wanted and (c.get("reason") or c.get("message")):
                return f"{c.get('reason') or ''}: {c.get('message') or ''}".strip(": ")
    return "no reason given"


class Client:
    """The kubegym resources of one namespace.

    ``namespace``: default namespace of every call (default: the kubeconfig context's);
    ``kubeconfig`` and ``context``: as kubectl takes them (default: ``$KUBECONFIG`` or
    ``~/.kube/config``, its current context); ``endpoint``: the S3 endpoint for results (default:
    the run's storage endpoint, else ``$AWS_ENDPOINT_URL``).
    """

    def __init__(
        self,
        namespace: str | None = None,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.api, default_namespace = connect(kubeconfig, context)
        self.namespace = namespace or default_namespace
        self.endpoint = endpoint

    # --- resources --------------------------------------------------------------------------

    def create(self, kind: str, name: str, spec: BaseModel | Mapping[str, Any] | None = None, **fields: Any) -> Obj:
        """Create ``kind``/``name`` from a spec model, a mapping or keyword fields (see :func:`manifest`)."""
        from kubernetes.client.exceptions import ApiException

        body = manifest(kind, name, self.namespace, spec, **fields)
        plural = KINDS[kind][0]
        try:
            created: Obj = self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, body)
        except ApiException as e:
            if e.status in (400, 409, 422):
                raise CliError(f"{kind} {self.namespace}/{name}: {_api_message(e)}") from None
            raise api_error(e, plural, name, self.namespace) from None
        return created

    def train(self, name: str, spec: TrainingRunSpec | Mapping[str, Any] | None = None, **fields: Any) -> Obj:
        """Create a TrainingRun (``algorithm``, ``environment``, ``total_timesteps``, ...)."""
        return self.create("TrainingRun", name, spec, **fields)

    def benchmark(self, name: str, spec: BenchmarkSpec | Mapping[str, Any] | None = None, **fields: Any) -> Obj:
        """Create a Benchmark (``models``, ``environments``, ...)."""
        return self.create("Benchmark", name, spec, **fields)

    def experiment(self, name: str, spec: ExperimentSpec | Mapping[str, Any] | None = None, **fields: Any) -> Obj:
        """Create an Experiment (``template``, ``search``, ...)."""
        return self.create("Experiment", name, spec, **fields)

    def get(self, name: str, kind: str = "TrainingRun") -> Obj:
        """The resource as the API server has it now."""
        from kubernetes.client.exceptions import ApiException

        plural = KINDS[kind][0]
        try:
            obj: Obj = self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)
        except ApiException as e:
            raise api_error(e, plural, name, self.namespace) from None
        return obj

    def delete(self, name: str, kind: str = "TrainingRun") -> None:
        """Delete the resource (its Jobs and pods go with it; its folder in S3 stays)."""
        from kubernetes.client.exceptions import ApiException

        plural = KINDS[kind][0]
        try:
            self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)
        except ApiException as e:
            raise api_error(e, plural, name, self.namespace) from None

    def wait(
        self,
        name: str,
        kind: str = "TrainingRun",
        *,
        timeout: float = 3600.0,
        interval: float = 2.0,
        progress: bool = True,
    ) -> Obj:
        """Wait until the resource is Succeeded (returned) or Failed (:class:`RunFailedError`), showing a
        progress bar (steps for a TrainingRun, runs for an Experiment) unless ``progress`` is false;
        ``TimeoutError`` after ``timeout`` seconds."""
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        deadline = time.monotonic() + timeout
        bar = None
        try:
            while True:
                obj = self.get(name, kind)
                st = obj.get("status") or {}
                done, total = _done_and_total(kind, obj)
                if progress and total:
                    if bar is None:
                        unit = "step" if kind == "TrainingRun" else "run"
                        bar = tqdm(total=total, desc=f"{kind} {name}", unit=unit, file=sys.stderr)
                    bar.n = min(done, total)
                    bar.set_postfix_str(str(st.get("phase") or "Pending"), refresh=True)
                if st.get("phase") == "Succeeded":
                    return obj
                if st.get("phase") == "Failed":
                    raise RunFailedError(f"{kind} {self.namespace}/{name} failed: {failure(obj)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{kind} {self.namespace}/{name} is still {st.get('phase') or 'Pending'}")
                time.sleep(interval)
        finally:
            if bar is not None:
                bar.close()

    # --- results ----------------------------------------------------------------------------

    def evaluations(self, name: str) -> pd.DataFrame:
        """A TrainingRun's periodic evaluations (``eval/evaluations.json``), one row each:
        ``timesteps``, ``mean_reward``, ``std_reward`` and what else the runner recorded."""
        import pandas as pd

        run = self.get(name)
        root = _run_folder(run, self.namespace, name)
        data = self._read(run, f"{root}eval/evaluations.json")
        rows = json.loads(data) if data else []
        return pd.DataFrame([{_snake(k): v for k, v in row.items()} for row in rows])

    def curves(self, name: str, tag: str | None = None) -> pd.DataFrame:
        """A TrainingRun's TensorBoard scalars (``rollout/ep_rew_mean``, ``train/loss``, ...): one
        row per point, ``tag``, ``step``, ``value``, ``wall_time``; only ``tag`` when given. The
        points a resumed attempt logged again replace the earlier ones, as TensorBoard draws them."""
        import pandas as pd
        from tensorboard.backend.event_processing.event_accumulator import (  # type: ignore[import-untyped]
            EventAccumulator,
        )

        run = self.get(name)
        folders = tensorboard.run_folders([run])
        if not folders:
            raise CliError(f"trainingrun {self.namespace}/{name} has no TensorBoard curves yet")
        with tempfile.TemporaryDirectory(prefix="kubegym-curves-") as cache:
            tensorboard.Sync(folders, Path(cache), self._endpoint(run)).once()
            acc = EventAccumulator(str(Path(cache) / name), size_guidance={"scalars": 0})
            acc.Reload()
            tags = [tag] if tag else acc.Tags()["scalars"]
            rows = [
                {"tag": t, "step": e.step, "value": e.value, "wall_time": e.wall_time}
                for t in tags
                if t in acc.Tags()["scalars"]
                for e in acc.Scalars(t)
            ]
        return pd.DataFrame(rows, columns=["tag", "step", "value", "wall_time"])

    def trials(self, experiment: str) -> pd.DataFrame:
        """An Experiment's runs (``status.runs``), one row each: name, configuration, seed, phase,
        steps, last and final evaluation, why it stopped."""
        import pandas as pd

        runs = (self.get(experiment, "Experiment").get("status") or {}).get("runs") or []
        return pd.DataFrame([{_snake(k): v for k, v in r.items()} for r in runs])

    def episodes(self, benchmark: str) -> pd.DataFrame:
        """A finished Benchmark's every evaluation episode (its ``episodes.csv``), one row each."""
        import io

        import pandas as pd

        bench = self.get(benchmark, "Benchmark")
        uri = ((bench.get("status") or {}).get("artifacts") or {}).get("episodes")
        if not uri:
            phase = (bench.get("status") or {}).get("phase") or "Pending"
            raise CliError(f"benchmark {self.namespace}/{benchmark} has no episodes yet ({phase})")
        return pd.read_csv(io.BytesIO(self._read(bench, str(uri)) or b""))

    def load_model(
        self, name: str, directory: str | Path | None = None, checkpoint: ModelSelection | str = ModelSelection.final
    ) -> BaseAlgorithm:
        """The TrainingRun's final model (``checkpoint="best"``: its best periodic evaluation's, ``"latest"``:
        its newest checkpoint), loaded: its folder downloaded into ``directory`` (default: a temporary
        one), every file's sha256 checked against the manifest first."""
        import importlib

        run = self.get(name)
        with tempfile.TemporaryDirectory(prefix="kubegym-model-") as tmp:
            target = Path(directory) if directory else Path(tmp)
            algorithm, files = download.download(run, target, self._endpoint(run), ModelSelection(checkpoint))
            if download.MODEL_NAME not in files:
                raise CliError(f"the model folder of {self.namespace}/{name} has no {download.MODEL_NAME}")
            package = "sb3_contrib" if algorithm in download.SB3_CONTRIB else "stable_baselines3"
            model: BaseAlgorithm = getattr(importlib.import_module(package), algorithm).load(
                files[download.MODEL_NAME], device="cpu"
            )
        return model

    # --- storage ----------------------------------------------------------------------------

    def _endpoint(self, obj: Mapping[str, Any]) -> str | None:
        storage = ((obj.get("spec") or {}).get("checkpoint") or {}).get("storage") or {}
        return self.endpoint or storage.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL") or None

    def _read(self, obj: Mapping[str, Any], uri: str) -> bytes | None:
        from kubegym_api.storage import S3Storage
        from kubegym_runner.errors import RunnerError
        from kubegym_runner.storage import S3Uri, Storage

        where = S3Uri.parse(uri)
        try:
            return Storage.from_config(S3Storage(bucket=where.bucket, endpoint=self._endpoint(obj))).get_bytes(where)
        except RunnerError as e:
            raise CliError(f"cannot read {uri}: {e}") from None


def _done_and_total(kind: str, obj: Mapping[str, Any]) -> tuple[int, int]:
    st, spec = obj.get("status") or {}, obj.get("spec") or {}
    if kind == "TrainingRun":
        p = st.get("progress") or {}
        return int(p.get("timesteps") or 0), int(p.get("totalTimesteps") or spec.get("totalTimesteps") or 0)
    if kind == "Experiment":
        done, _, total = str(st.get("completions") or "0/0").partition("/")
        return (int(done), int(total)) if done.isdigit() and total.isdigit() else (0, 0)
    return 0, 0


def _run_folder(run: Mapping[str, Any], namespace: str, name: str) -> str:
    uri = ((run.get("status") or {}).get("artifacts") or {}).get("uri")
    if not uri:
        raise CliError(f"trainingrun {namespace}/{name} has no folder yet (it has not started)")
    return str(uri).rstrip("/") + "/"


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def _api_message(error: Any) -> str:
    try:
        return str(json.loads(error.body).get("message"))
    except (TypeError, ValueError, AttributeError):
        return f"{error.status} {error.reason}"
