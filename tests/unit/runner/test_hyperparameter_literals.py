"""Hyperparameter strings reach the runner's objects only through the safe parser: rl-zoo3's
``eval`` never runs, neither for the spec nor for a preset, and code in a string never runs."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from kubegym_api.pyliteral import SYMBOLS
from kubegym_api.runnerconfig import TrainConfig
from kubegym_runner.algorithms import resolve_hyperparameters, resolve_policy
from kubegym_runner.envs import import_object, resolve_wrapper
from kubegym_runner.errors import UserError
from kubegym_runner.plan import build_plan

#: Entries of rl-zoo3's tables that name a wrapper outside the trusted packages (an autoencoder
#: module that only exists in its author's checkout); refused, never imported.
UNTRUSTED_ZOO_ENTRIES = {("tqc.yml", "CarRacing-v0"), ("sac.yml", "CarRacing-v3")}


def _config(**extra: Any) -> TrainConfig:
    return TrainConfig.model_validate(
        {"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "totalTimesteps": 100, "storage": {"bucket": "kubegym"}, "runPrefix": "p", **extra}
    )  # fmt: skip


@pytest.fixture
def no_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    """rl-zoo3's ``eval`` (in the two modules that call it) fails the test."""
    import rl_zoo3.exp_manager
    import rl_zoo3.utils

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"rl-zoo3 evaluated {args!r}")

    for module in (rl_zoo3.exp_manager, rl_zoo3.utils):
        assert "eval(" in Path(str(module.__file__)).read_text()  # still the calls this guards
        monkeypatch.setattr(module, "eval", refuse, raising=False)


@pytest.mark.parametrize("name", sorted(SYMBOLS))
def test_every_allowed_name_is_a_class_that_exists(name: str) -> None:
    assert isinstance(import_object(SYMBOLS[name], name), type)


def test_every_rl_zoo3_table_entry_parses_except_the_untrusted_wrappers() -> None:
    refused = set()
    tables = resources.files("rl_zoo3") / "hyperparams"
    for table in tables.iterdir():
        if not table.name.endswith(".yml"):
            continue
        for entry, raw in yaml.safe_load(table.read_text()).items():
            try:
                resolve_hyperparameters(raw, f"preset {entry}")
            except UserError as e:
                assert "is not under" in str(e), (table.name, entry, e)
                refused.add((table.name, entry))
    assert refused == UNTRUSTED_ZOO_ENTRIES


def test_code_in_policy_kwargs_never_runs(tmp_path: Path, no_eval: None) -> None:
    marker = tmp_path / "x"
    exploit = f"__import__('os').system('touch {marker}') or dict(net_arch=[64])"
    with pytest.raises(UserError, match=r"spec.hyperparameters.policy_kwargs: .*never evaluated"):
        build_plan(_config(hyperparameters={"policy_kwargs": exploit}))
    assert not marker.exists()


def test_a_literal_policy_kwargs_string_becomes_objects_without_eval(no_eval: None) -> None:
    plan = build_plan(_config(hyperparameters={"policy_kwargs": "dict(net_arch=[16], activation_fn=th.nn.Tanh)"}))
    assert plan.hyperparameters["policy_kwargs"] == {"net_arch": [16], "activation_fn": torch.nn.Tanh}


def test_a_preset_with_a_literal_string_goes_through_the_same_parser(no_eval: None) -> None:
    # rl-zoo3's TD3 Pendulum-v1 entry holds policy_kwargs: "dict(net_arch=[400, 300])".
    plan = build_plan(_config(algorithm="TD3", environment={"id": "Pendulum-v1"}, preset="rl-zoo3"))
    assert plan.hyperparameters["policy_kwargs"] == {"net_arch": [400, 300]}


def test_a_preset_string_naming_a_torch_class(no_eval: None) -> None:
    entry = next(
        name
        for name, raw in yaml.safe_load((resources.files("rl_zoo3") / "hyperparams" / "ppo.yml").read_text()).items()
        if "nn.ReLU" in str(raw.get("policy_kwargs", "")) and "env_wrapper" not in raw
    )
    plan = build_plan(_config(environment={"id": "Pendulum-v1"}, preset=f"rl-zoo3:{entry}"))
    assert plan.hyperparameters["policy_kwargs"]["activation_fn"] is torch.nn.ReLU


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        ({"policy_kwargs": {"activation_fn": "builtins:print"}}, "is not a class"),
        ({"policy_kwargs": {"activation_fn": "collections:OrderedDict"}}, "is not a torch.nn.modules.module.Module"),
        ({"replay_buffer_class": "subprocess:Popen"}, "is not a stable_baselines3.common.buffers.BaseBuffer"),
        ({"policy_kwargs": {"optimizer_class": "ReLU"}}, "is not a torch.optim.optimizer.Optimizer"),
    ],
    ids=["function", "wrong-base", "popen-as-buffer", "activation-as-optimizer"],
)
def test_import_paths_must_be_classes_of_the_expected_kind(hyperparameters: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        resolve_hyperparameters(hyperparameters, "spec.hyperparameters")


def test_a_policy_or_wrapper_by_path_must_be_a_policy_or_wrapper_class() -> None:
    from gymnasium import spaces

    with pytest.raises(UserError, match="not a stable-baselines3 policy class"):
        resolve_policy(__import__("stable_baselines3").PPO, "os:system", spaces.Discrete(2))
    with pytest.raises(UserError, match=r"not a gymnasium\.Wrapper class"):
        resolve_wrapper("os:system")
