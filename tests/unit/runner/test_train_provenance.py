"""A run's checkpoints are its own: manifests record the run's uid, algorithm and spaces, and the
runner loads only its own checkpoints, or a ``resumeFrom`` of the same algorithm and spaces.

The tables check the pure parts (:mod:`kubegym_runner.provenance`); the rest runs ``kubegym-runner
train`` for real (CartPole, a few dozen steps) against an in-memory store, among them the bug of
issue 12: a run of another algorithm in the folder of a deleted one must not resume from it.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.save_util import data_to_json

from kubegym_api.base import Algorithm
from kubegym_api.environment import EnvironmentConfig
from kubegym_api.envvars import CONFIG_ENV
from kubegym_api.exitcodes import EXIT_USER_ERROR
from kubegym_api.runnerconfig import RunRef, TrainConfig, dump_config
from kubegym_api.storage import S3Storage
from kubegym_api.trainingrun import CheckpointPolicy
from kubegym_runner import cli, progress, storage
from kubegym_runner.checkpoints import MANIFEST_FORMAT_VERSION, MANIFEST_NAME, Manifest
from kubegym_runner.provenance import (
    Provenance,
    archive_spaces,
    describe_serialized_space,
    describe_space,
    foreign_reason,
    resume_mismatch,
)
from kubegym_runner.storage import S3Uri
from tests.unit.runner.test_train_final_report import ApiDown, MemoryStorage, signal_handlers

__all__ = ["signal_handlers"]  # the fixture, used by name

BOX = "Box(shape=(4,), dtype=float32)"
TWO = "Discrete(2)"

# --- spaces ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "described", "from_archive"),
    [
        (gym.spaces.Box(-1.0, 1.0, (4,), np.float32), BOX, True),
        (gym.spaces.Box(0, 255, (84, 84, 4), np.uint8), "Box(shape=(84, 84, 4), dtype=uint8)", True),
        (gym.spaces.Discrete(2), TWO, True),
        (gym.spaces.Discrete(3, start=1), "Discrete(3, start=1)", True),
        (gym.spaces.MultiDiscrete([3, 4]), "MultiDiscrete(shape=(2,), nvec=[3, 4])", True),
        (gym.spaces.MultiDiscrete(np.array([[2, 3], [4, 5]])), "MultiDiscrete(shape=(2, 2), nvec=[2, 3, 4, 5])", True),
        (gym.spaces.MultiBinary(4), "MultiBinary(shape=(4,))", True),
        (gym.spaces.MultiBinary([2, 3]), "MultiBinary(shape=(2, 3))", True),
        (
            gym.spaces.Dict({"b": gym.spaces.Discrete(2), "a": gym.spaces.Box(0, 1, (3,), np.float32)}),
            "Dict(a: Box(shape=(3,), dtype=float32), b: Discrete(2))",
            False,  # the archive holds only a repr of the members: not compared from there
        ),
        (gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3))), "Tuple(Discrete(2), Discrete(3))", False),
    ],
    ids=[
        "box",
        "image",
        "discrete",
        "discrete-start",
        "multidiscrete",
        "multidiscrete-2d",
        "multibinary",
        "multibinary-2d",
        "dict",
        "tuple",
    ],
)
def test_a_space_is_described_alike_live_and_from_an_archive(
    space: gym.Space[Any], described: str, from_archive: bool
) -> None:
    assert describe_space(space) == described
    # What stable-baselines3 writes for it in a model archive's data JSON.
    serialized = json.loads(data_to_json({"space": space}))["space"]
    assert describe_serialized_space(serialized) == (described if from_archive else None)


def test_bounds_do_not_matter_shape_and_dtype_do() -> None:
    assert describe_space(gym.spaces.Box(-1, 1, (4,), np.float32)) == describe_space(
        gym.spaces.Box(-9, 9, (4,), np.float32)
    )
    assert describe_space(gym.spaces.Box(-1, 1, (4,), np.float32)) != describe_space(
        gym.spaces.Box(-1, 1, (6,), np.float32)
    )
    assert describe_space(gym.spaces.Box(-1, 1, (4,), np.float32)) != describe_space(
        gym.spaces.Box(-1, 1, (4,), np.float64)
    )


@pytest.mark.parametrize(
    "entry",
    [
        None,
        "Box",
        {},
        {":type:": "<class 'gymnasium.spaces.box.Box'>"},
        {":type:": "nonsense", "_shape": [4]},
        {":type:": "<class 'gymnasium.spaces.discrete.Discrete'>", "_shape": [], "n": "many"},
    ],
)
def test_what_an_archive_cannot_tell_is_unknown(entry: Any) -> None:
    assert describe_serialized_space(entry) is None


def test_archive_spaces(tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, device="cpu")
    model.save(tmp_path / "model.zip")
    assert archive_spaces(tmp_path / "model.zip") == (BOX, TWO)
    (tmp_path / "not.zip").write_bytes(b"PK not really")
    assert archive_spaces(tmp_path / "not.zip") == (None, None)
    with zipfile.ZipFile(tmp_path / "nodata.zip", "w") as zf:
        zf.writestr("policy.pth", b"")
    assert archive_spaces(tmp_path / "nodata.zip") == (None, None)
    assert archive_spaces(tmp_path / "missing.zip") == (None, None)


# --- whose is it, and may it be loaded ----------------------------------------------------------------

MINE = Provenance("uid-mine", "PPO", "CartPole-v1", BOX, TWO)


@pytest.mark.parametrize(
    ("theirs", "mine", "reason"),
    [
        (MINE, MINE, None),
        # Format 1 (no uid, no spaces): the run's own when algorithm and env agree.
        (Provenance(None, "PPO", "CartPole-v1"), MINE, None),
        (
            Provenance("uid-other", "PPO", "CartPole-v1", BOX, TWO),
            MINE,
            "belongs to run uid uid-other, this run is uid uid-mine",
        ),
        (
            Provenance("uid-mine", "PPO", "CartPole-v1"),
            Provenance(None, "PPO", "CartPole-v1"),
            "this run is uid (not recorded)",
        ),
        (Provenance(None, "A2C", "CartPole-v1"), MINE, "saved by A2C, this run trains PPO"),
        (Provenance(None, "PPO", "Acrobot-v1"), MINE, "saved on 'Acrobot-v1', this run trains on 'CartPole-v1'"),
        (
            Provenance(None, "PPO", "CartPole-v1", "Box(shape=(6,), dtype=float32)", TWO),
            MINE,
            "observation space is Box(shape=(6,)",
        ),
        (
            Provenance(None, "PPO", "CartPole-v1", BOX, "Discrete(3)"),
            MINE,
            "action space is Discrete(3), this run's is Discrete(2)",
        ),
    ],
    ids=[
        "same",
        "format-1",
        "other-uid",
        "uid-unknown-here",
        "other-algorithm",
        "other-env",
        "other-observations",
        "other-actions",
    ],
)
def test_foreign_reason(theirs: Provenance, mine: Provenance, reason: str | None) -> None:
    found = foreign_reason(theirs, mine)
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


@pytest.mark.parametrize(
    ("theirs", "problems"),
    [
        (MINE, []),
        # Another run's uid and env are what resumeFrom is for.
        (Provenance("uid-other", "PPO", "CartPole-v0", BOX, TWO), []),
        (Provenance(None, "PPO", "CartPole-v1"), []),  # spaces unknown: stable-baselines3's own check decides
        (
            Provenance("uid-other", "A2C", "CartPole-v1", BOX, TWO),
            ["the checkpoint was saved by A2C, this run trains PPO"],
        ),
        (
            Provenance("uid-other", "DQN", "Acrobot-v1", "Box(shape=(6,), dtype=float32)", "Discrete(3)"),
            [
                "the checkpoint was saved by DQN, this run trains PPO",
                f"its observation space is Box(shape=(6,), dtype=float32), this run's (CartPole-v1) is {BOX}",
                f"its action space is Discrete(3), this run's (CartPole-v1) is {TWO}",
            ],
        ),
    ],
    ids=["same", "other-run-same-fit", "spaces-unknown", "other-algorithm", "nothing-fits"],
)
def test_resume_mismatch(theirs: Provenance, problems: list[str]) -> None:
    assert resume_mismatch(theirs, MINE) == problems


# --- the train command -------------------------------------------------------------------------------

BUCKET = "kubegym"


def train(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    memory: MemoryStorage,
    *,
    prefix: str,
    uid: str | None,
    algorithm: Algorithm = Algorithm.PPO,
    total: int = 64,
    env_id: str = "CartPole-v1",
    resume_from: str | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[int, str]:
    """Run ``kubegym-runner train`` (``extra`` hyperparameters over the small defaults); its exit
    code and termination message."""
    monkeypatch.setattr(storage.Storage, "from_config", lambda config: memory)
    monkeypatch.setattr(progress.KubernetesStatusWriter, "connect", lambda ref: ApiDown())
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    log = tmp_path / f"termination-log-{uid}-{algorithm}"
    monkeypatch.setenv(cli.TERMINATION_LOG_ENV, str(log))
    hyperparameters: dict[str, Any] = {"n_steps": 16}
    if algorithm is Algorithm.PPO:
        hyperparameters.update(batch_size=32, n_epochs=1)
    hyperparameters.update(extra or {})
    config = TrainConfig(
        algorithm=algorithm,
        environment=EnvironmentConfig(id=env_id, n_envs=2),
        hyperparameters=hyperparameters,
        total_timesteps=total,
        checkpoint=CheckpointPolicy(every_steps=32, keep_last=1),
        storage=S3Storage(bucket=BUCKET),
        run_prefix=prefix,
        run_uid=uid,
        resume_from=resume_from,
        report_to=RunRef(plural="trainingruns", namespace="ns", name="run"),
        final_report_timeout_seconds=0,
    )
    monkeypatch.setenv(CONFIG_ENV, dump_config(config))
    code = cli.main(["train"])
    return code, log.read_text() if log.exists() else ""


def manifests(memory: MemoryStorage, prefix: str) -> dict[str, dict[str, Any]]:
    """Every manifest under ``prefix``, by key."""
    return {
        key: json.loads(data)
        for (bucket, key), data in memory.objects.items()
        if bucket == BUCKET and key.startswith(f"{prefix}/") and key.endswith(MANIFEST_NAME)
    }


def final_timesteps(memory: MemoryStorage, prefix: str) -> int:
    final = Manifest.model_validate_json(memory.objects[(BUCKET, f"{prefix}/final/{MANIFEST_NAME}")])
    assert final.result is not None and final.result.timesteps is not None
    return final.result.timesteps


@pytest.mark.usefixtures("signal_handlers")
def test_manifests_record_the_runs_uid_algorithm_and_spaces(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    memory = MemoryStorage()
    code, _ = train(monkeypatch, tmp_path, memory, prefix="runs/ns/run/uid-1", uid="uid-1")
    assert code == 0
    found = manifests(memory, "runs/ns/run/uid-1")
    assert f"runs/ns/run/uid-1/checkpoints/000000000064/{MANIFEST_NAME}" in found
    assert f"runs/ns/run/uid-1/final/{MANIFEST_NAME}" in found
    for manifest in found.values():
        assert manifest["formatVersion"] == MANIFEST_FORMAT_VERSION == 2
        assert (manifest["runUid"], manifest["algorithm"], manifest["envId"]) == ("uid-1", "PPO", "CartPole-v1")
        assert (manifest["observationSpace"], manifest["actionSpace"]) == (BOX, TWO)


@pytest.mark.usefixtures("signal_handlers")
def test_a_restarted_pod_resumes_from_its_own_checkpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    memory = MemoryStorage()
    assert train(monkeypatch, tmp_path, memory, prefix="p/uid-1", uid="uid-1", total=64)[0] == 0
    del memory.objects[(BUCKET, f"p/uid-1/final/{MANIFEST_NAME}")]
    capfd.readouterr()
    assert train(monkeypatch, tmp_path, memory, prefix="p/uid-1", uid="uid-1", total=128)[0] == 0
    log = capfd.readouterr().err
    assert "resuming from s3://kubegym/p/uid-1/checkpoints/000000000064 (timestep 64)" in log
    assert final_timesteps(memory, "p/uid-1") == 128


@pytest.mark.usefixtures("signal_handlers")
def test_a_new_run_of_another_algorithm_in_a_predecessors_folder_starts_from_zero(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Issue 12's bug in the old layout, where both runs share <namespace>/<name>: PPO trained 64
    steps there and was deleted; an A2C run of the same name must not load its weights."""
    memory = MemoryStorage()
    assert train(monkeypatch, tmp_path, memory, prefix="p/ns/run", uid="uid-ppo", total=64)[0] == 0
    ppo_checkpoint = (BUCKET, f"p/ns/run/checkpoints/000000000064/{MANIFEST_NAME}")
    capfd.readouterr()
    code, _ = train(monkeypatch, tmp_path, memory, prefix="p/ns/run", uid="uid-a2c", algorithm=Algorithm.A2C, total=96)
    assert code == 0
    log = capfd.readouterr().err
    assert "resuming from" not in log and "training 96 timesteps (from 0 to 96)" in log
    assert "not this run's (it belongs to run uid uid-ppo, this run is uid uid-a2c)" in log
    assert final_timesteps(memory, "p/ns/run") == 96
    assert ppo_checkpoint in memory.objects  # never pruned: not the A2C run's to delete
    a2c = [m for m in manifests(memory, "p/ns/run/checkpoints").values() if m["runUid"] == "uid-a2c"]
    assert [m["step"] for m in a2c] == [96] and all(m["algorithm"] == "A2C" for m in a2c)


@pytest.mark.usefixtures("signal_handlers")
def test_a_format_1_checkpoint_resumes_its_run_and_no_other(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Checkpoints written before manifests carried uid and spaces: the run resumes from them when
    the algorithm and env agree (a pod of an older run restarting), another algorithm's are skipped."""
    memory = MemoryStorage()
    assert train(monkeypatch, tmp_path, memory, prefix="old/ns/run", uid=None, total=64)[0] == 0
    key = (BUCKET, f"old/ns/run/checkpoints/000000000064/{MANIFEST_NAME}")
    legacy = json.loads(memory.objects[key])
    for field in ("runUid", "observationSpace", "actionSpace"):
        legacy.pop(field, None)
    legacy["formatVersion"] = 1
    memory.objects[key] = json.dumps(legacy).encode()
    del memory.objects[(BUCKET, f"old/ns/run/final/{MANIFEST_NAME}")]
    snapshot = dict(memory.objects)

    capfd.readouterr()
    code, message = train(
        monkeypatch, tmp_path, memory, prefix="old/ns/run", uid="uid-new", algorithm=Algorithm.A2C, total=96
    )
    assert code == 0, message
    log = capfd.readouterr().err
    assert "not this run's (it was saved by PPO, this run trains A2C)" in log
    assert final_timesteps(memory, "old/ns/run") == 96

    memory.objects = snapshot
    capfd.readouterr()
    assert train(monkeypatch, tmp_path, memory, prefix="old/ns/run", uid="uid-new", total=128)[0] == 0
    log = capfd.readouterr().err
    assert "resuming from s3://kubegym/old/ns/run/checkpoints/000000000064 (timestep 64)" in log
    assert final_timesteps(memory, "old/ns/run") == 128


@pytest.mark.parametrize(
    ("algorithm", "env_id", "legacy", "expected"),
    [
        (Algorithm.A2C, "CartPole-v1", False, ["the checkpoint was saved by PPO, this run trains A2C"]),
        (
            Algorithm.PPO,
            "Acrobot-v1",
            False,
            [f"its observation space is {BOX}, this run's (Acrobot-v1) is Box(shape=(6,), dtype=float32)"],
        ),
        # A format-1 source: the spaces are read from the model archive.
        (
            Algorithm.PPO,
            "Acrobot-v1",
            True,
            [f"its action space is {TWO}, this run's (Acrobot-v1) is Discrete(3)"],
        ),
    ],
    ids=["other-algorithm", "other-spaces", "other-spaces-format-1"],
)
@pytest.mark.usefixtures("signal_handlers")
def test_resume_from_a_checkpoint_that_does_not_fit_fails_before_training(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    algorithm: Algorithm,
    env_id: str,
    legacy: bool,
    expected: list[str],
) -> None:
    memory = MemoryStorage()
    assert train(monkeypatch, tmp_path, memory, prefix="p/ns/source/uid-src", uid="uid-src", total=64)[0] == 0
    source = "s3://kubegym/p/ns/source/uid-src/checkpoints/000000000064"
    if legacy:
        key = (BUCKET, f"p/ns/source/uid-src/checkpoints/000000000064/{MANIFEST_NAME}")
        manifest = json.loads(memory.objects[key])
        for field in ("runUid", "observationSpace", "actionSpace"):
            del manifest[field]
        memory.objects[key] = json.dumps(manifest).encode()
    code, message = train(
        monkeypatch,
        tmp_path,
        memory,
        prefix="p/ns/heir/uid-heir",
        uid="uid-heir",
        algorithm=algorithm,
        env_id=env_id,
        total=96,
        resume_from=source,
    )
    assert code == EXIT_USER_ERROR
    assert message.startswith(f"resumeFrom {source} does not fit this run: ")
    for problem in expected:
        assert problem in message
    assert "resumeFrom must name a checkpoint of the same algorithm and spaces" in message
    # Nothing trained, nothing written but the attempt's log, which ends with the error it exits with.
    written = [key for (_, key) in memory.objects if key.startswith("p/ns/heir/")]
    assert len(written) == 1 and written[0].startswith("p/ns/heir/uid-heir/logs/"), written
    stored = memory.objects[(BUCKET, written[0])].decode().splitlines()
    assert stored[-1] == f"kubegym-runner: error: {message}"


@pytest.mark.usefixtures("signal_handlers")
def test_resume_from_a_fitting_checkpoint_of_another_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    memory = MemoryStorage()
    assert train(monkeypatch, tmp_path, memory, prefix="p/ns/source/uid-src", uid="uid-src", total=64)[0] == 0
    code, message = train(
        monkeypatch,
        tmp_path,
        memory,
        prefix="p/ns/heir/uid-heir",
        uid="uid-heir",
        total=96,
        resume_from="s3://kubegym/p/ns/source/uid-src/",
    )
    assert code == 0, message
    assert final_timesteps(memory, "p/ns/heir/uid-heir") == 96
    heirs = manifests(memory, "p/ns/heir/uid-heir")
    assert heirs and all(m["runUid"] == "uid-heir" for m in heirs.values())
    assert S3Uri(BUCKET, "p/ns/source/uid-src/final/manifest.json").key in {k for (_, k) in memory.objects}


def _saved_data(memory: MemoryStorage, key: str) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(memory.objects[(BUCKET, key)])) as archive:
        return dict(json.loads(archive.read("data")))


@pytest.mark.usefixtures("signal_handlers")
def test_a_run_resumed_from_another_runs_model_trains_with_its_own_hyperparameters(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What a PBT member does when it copies another: the weights come from the source, the
    hyperparameters from the run's own spec; the network must fit."""
    memory = MemoryStorage()
    assert train(monkeypatch, tmp_path, memory, prefix="p/ns/src/uid-src", uid="uid-src", total=64)[0] == 0
    code, message = train(
        monkeypatch,
        tmp_path,
        memory,
        prefix="p/ns/heir/uid-heir",
        uid="uid-heir",
        total=96,
        resume_from="s3://kubegym/p/ns/src/uid-src/final/",
        extra={"learning_rate": 0.0123, "n_epochs": 3, "gae_lambda": 0.8},
    )
    assert code == 0, message
    source = _saved_data(memory, "p/ns/src/uid-src/final/model.zip")
    heir = _saved_data(memory, "p/ns/heir/uid-heir/final/model.zip")

    def rate(value: Any) -> Any:  # a constant schedule is saved as its object, with its value beside
        return value["val"] if isinstance(value, dict) else value

    assert (rate(source["learning_rate"]), source["n_epochs"], source["gae_lambda"]) == (0.0003, 1, 0.95)
    assert (rate(heir["learning_rate"]), heir["n_epochs"], heir["gae_lambda"]) == (0.0123, 3, 0.8)
    assert heir["num_timesteps"] == 96

    code, message = train(
        monkeypatch,
        tmp_path,
        memory,
        prefix="p/ns/wide/uid-wide",
        uid="uid-wide",
        total=96,
        resume_from="s3://kubegym/p/ns/src/uid-src/final/",
        extra={"policy_kwargs": {"net_arch": [8]}},
    )
    assert code == 42, "a network of another shape cannot take the source's weights"
    assert "policy kwargs" in message.lower(), message


def test_an_upload_records_the_archives_spaces(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``kubectl gym upload --algorithm``: the manifest says what the archive fits, so a
    ``resumeFrom`` of the upload is checked like a checkpoint."""
    from stable_baselines3 import PPO

    from kubegym_cli.upload import upload

    memory = MemoryStorage()
    monkeypatch.setattr(storage.Storage, "from_config", lambda config: memory)
    PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, device="cpu").save(tmp_path / "agent.zip")
    uploaded = upload(
        tmp_path / "agent.zip", bucket=BUCKET, prefix="uploads", endpoint=None, algorithm="PPO", vecnormalize=None
    )
    folder = S3Uri.parse(uploaded.uri)
    manifest = Manifest.model_validate_json(memory.objects[(BUCKET, folder.join(MANIFEST_NAME).key)])
    assert Provenance.of(manifest) == Provenance(None, "PPO", "", BOX, TWO)


class _Camera(gym.Env[Any, Any]):
    """A channel-last image env, as Atari's are before SB3 transposes them."""

    observation_space = gym.spaces.Box(0, 255, (64, 48, 3), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        return self.observation_space.sample(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        return self.observation_space.sample(), 0.0, True, False, {}


@pytest.mark.parametrize("make", [_Camera, lambda: gym.make("CartPole-v1")], ids=["image", "vector"])
def test_the_runs_spaces_are_its_models(make: Any) -> None:
    """What a run compares a checkpoint with is what its model (and so its manifests) records, also
    where stable-baselines3 transposes the images."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from kubegym_runner.train import model_spaces

    policy = "CnnPolicy" if make is _Camera else "MlpPolicy"
    model = PPO(policy, DummyVecEnv([make]), n_steps=16, batch_size=16, device="cpu")
    expected = (describe_space(model.observation_space), describe_space(model.action_space))
    assert model_spaces(DummyVecEnv([make])) == expected
    if make is _Camera:
        assert expected[0] == "Box(shape=(3, 64, 48), dtype=uint8)"
