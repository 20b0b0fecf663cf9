"""The safe literal parser: what it accepts (rl-zoo3's forms), what it refuses (anything that
would run), and that every refusal names the field."""

from __future__ import annotations

from typing import Any

import pytest

from kubegym_api.hyperparameters import ImportPath, parse_hyperparameters
from kubegym_api.pyliteral import MAX_DEPTH, MAX_LENGTH, SYMBOLS, LiteralError, Symbol, parse_literal, symbols_in

RELU = Symbol("nn.ReLU", "torch.nn:ReLU")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("dict(net_arch=[64, 64])", {"net_arch": [64, 64]}),
        ("dict(log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU)", {"log_std_init": -2, "ortho_init": False, "activation_fn": RELU}),
        ("dict(net_arch=dict(pi=[256], vf=[256]))", {"net_arch": {"pi": [256], "vf": [256]}}),
        ("{'norm_obs': True, 'norm_reward': False}", {"norm_obs": True, "norm_reward": False}),
        ("dict(optimizer_class=RMSpropTFLike, optimizer_kwargs=dict(eps=1e-5))", {"optimizer_class": Symbol("RMSpropTFLike", "stable_baselines3.common.sb2_compat.rmsprop_tf_like:RMSpropTFLike"), "optimizer_kwargs": {"eps": 1e-5}}),
        ("dict(goal_selection_strategy='future', n_sampled_goal=4)", {"goal_selection_strategy": "future", "n_sampled_goal": 4}),
        ("th.nn.Tanh", Symbol("th.nn.Tanh", "torch.nn:Tanh")),
        ("HerReplayBuffer", Symbol("HerReplayBuffer", "stable_baselines3:HerReplayBuffer")),
        ("(64, 64)", (64, 64)),
        ("-3e-4", -3e-4),
        ("+5", 5),
        ("None", None),
        ("  dict(a='b')  ", {"a": "b"}),
    ],
    ids=[
        "net-arch", "zoo-pendulum", "nested-dict", "normalize", "optimizer", "her-kwargs", "dotted-name",
        "her-buffer", "tuple", "negative-float", "plus-int", "none", "whitespace",
    ],
)  # fmt: skip
def test_accepted(text: str, value: Any) -> None:
    assert parse_literal(text, "f") == value


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "__import__('os').system('touch /tmp/x') or dict(net_arch=[64])",
            "(calling __import__('os').system(), __import__())",
        ),
        ("__import__('os').system('id')", "a call to __import__('os').system()"),
        ("eval('1')", "a call to eval()"),
        ("exec('import os')", "a call to exec()"),
        ("open('/etc/passwd').read()", "open()"),
        ("os.system", "name 'os.system' is not allowed"),
        ("dict(net_arch=[64], activation_fn=os.system)", "name 'os.system' is not allowed"),
        ("nn.ReLU.__subclasses__()", "a call to nn.ReLU.__subclasses__()"),
        ("().__class__.__base__", "name"),
        ("[1] * 10**9", "an arithmetic operation"),
        ("2 + 2", "an arithmetic operation"),
        ("lambda: 0", "a lambda"),
        ("[x for x in range(9)]", "a comprehension"),
        ("{'a': 1}['a']", "a subscript"),
        ("f'{1}'", "an f-string"),
        ("dict(**{'a': 1})", "'**' unpacking"),
        ("{**{'a': 1}}", "'**' unpacking"),
        ("dict([('a', 1)])", "only keyword arguments"),
        ("{1, 2}", "a set"),
        ("1 if True else 2", "a conditional expression"),
        ("(x := 1)", "an assignment"),
        ("-'a'", "a sign is allowed only before a number"),
        ("b'bytes'", "bytes constants"),
        ("dict(net_arch=[64]", "not a Python literal"),
        ("import os", "not a Python literal"),
        ("", "not a Python literal"),
        ("{None: 1}", "dict keys"),
        ("[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2), f"deeper than {MAX_DEPTH}"),
        ("[" + "1," * MAX_LENGTH + "]", f"longer than {MAX_LENGTH}"),
    ],
    ids=lambda v: v[:40] if isinstance(v, str) else None,
)
def test_refused_with_the_field_named(text: str, problem: str) -> None:
    with pytest.raises(LiteralError) as err:
        parse_literal(text, "spec.hyperparameters.policy_kwargs")
    assert str(err.value).startswith("spec.hyperparameters.policy_kwargs: ")
    assert problem in str(err.value), str(err.value)


def test_the_exploit_of_the_issue_is_refused_with_what_it_would_have_run() -> None:
    with pytest.raises(LiteralError) as err:
        parse_literal("__import__('os').system('touch /tmp/x') or dict(net_arch=[64])", "f")
    assert "never evaluated" in str(err.value) and "__import__" in str(err.value)


@pytest.mark.parametrize(
    ("name", "hint"), [("Relu", "did you mean ReLU?"), ("nn.Tahn", "did you mean Tanh"), ("os.system", "")]
)
def test_an_unknown_name_suggests_the_near_ones(name: str, hint: str) -> None:
    with pytest.raises(LiteralError) as err:
        parse_literal(name, "f")
    assert hint in str(err.value) and ("did you mean" in str(err.value)) == bool(hint)


def test_every_symbol_names_a_module_and_attribute_and_spellings_agree() -> None:
    for name, target in SYMBOLS.items():
        module, _, attr = target.partition(":")
        assert module and attr == name.rsplit(".", 1)[-1], (name, target)


def test_symbols_in_walks_nested_values() -> None:
    value = parse_literal("dict(a=[nn.ReLU, dict(b=Adam)], c=1)", "f")
    assert [s.name for s in symbols_in(value)] == ["nn.ReLU", "Adam"]


@pytest.mark.parametrize(
    ("hyperparameters", "expected"),
    [
        ({"policy_kwargs": "dict(net_arch=[8])"}, {"policy_kwargs": {"net_arch": [8]}}),
        ({"policy_kwargs": {"activation_fn": "Tanh"}}, {"policy_kwargs": {"activation_fn": Symbol("Tanh", "torch.nn:Tanh")}}),
        ({"policy_kwargs": {"activation_fn": "my_pkg.layers:Swish"}}, {"policy_kwargs": {"activation_fn": ImportPath("my_pkg.layers:Swish")}}),
        ({"replay_buffer_class": "HerReplayBuffer"}, {"replay_buffer_class": Symbol("HerReplayBuffer", "stable_baselines3:HerReplayBuffer")}),
        ({"normalize": "{'norm_obs': False}"}, {"normalize": {"norm_obs": False}}),
        ({"learning_rate": "lin_3e-4", "gamma": 0.9}, {"learning_rate": "lin_3e-4", "gamma": 0.9}),
        ({"policy_kwargs": {"net_arch": "dict(a=1)"}}, {"policy_kwargs": {"net_arch": "dict(a=1)"}}),
        ({"env_wrapper": [{"rl_zoo3.wrappers.HistoryWrapper": {"horizon": 2}}]}, {"env_wrapper": [{"rl_zoo3.wrappers.HistoryWrapper": {"horizon": 2}}]}),
        ({"policy": "sb3_contrib.ppo_mask.MlpPolicy"}, {"policy": "sb3_contrib.ppo_mask.MlpPolicy"}),
    ],
    ids=["literal-kwargs", "class-in-json", "import-path", "buffer-class", "normalize", "plain-strings-untouched", "nested-plain-string", "zoo-wrapper", "zoo-policy"],
)  # fmt: skip
def test_parse_hyperparameters(hyperparameters: dict[str, Any], expected: dict[str, Any]) -> None:
    assert parse_hyperparameters(hyperparameters, "spec.hyperparameters") == expected


@pytest.mark.parametrize(
    ("hyperparameters", "field", "problem"),
    [
        ({"policy_kwargs": "exec('x')"}, "spec.hyperparameters.policy_kwargs", "a call to exec()"),
        ({"policy_kwargs": {"activation_fn": "os.system"}}, "spec.hyperparameters.policy_kwargs.activation_fn", "not allowed"),
        ({"replay_buffer_class": "subprocess.Popen"}, "spec.hyperparameters.replay_buffer_class", "not allowed"),
        ({"replay_buffer_kwargs": "__import__('x')"}, "spec.hyperparameters.replay_buffer_kwargs", "__import__"),
        ({"monitor_kwargs": "print(1)"}, "spec.hyperparameters.monitor_kwargs", "print()"),
        ({"env_wrapper": "os.system"}, "spec.hyperparameters.env_wrapper", "is not under"),
        ({"callback": [{"subprocess.Popen": {"args": "id"}}]}, "spec.hyperparameters.callback", "is not under"),
        ({"policy": "os.system"}, "spec.hyperparameters.policy", "is not under"),
    ],
    ids=["literal-call", "class-name", "buffer-class", "buffer-kwargs", "monitor-kwargs", "zoo-wrapper", "zoo-callback", "zoo-policy"],
)  # fmt: skip
def test_parse_hyperparameters_refuses_naming_the_field(
    hyperparameters: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(LiteralError) as err:
        parse_hyperparameters(hyperparameters, "spec.hyperparameters")
    assert err.value.field == field and problem in err.value.problem, str(err.value)
