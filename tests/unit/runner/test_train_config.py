"""The operator→runner contract: TrainConfig on the wire, and how the CLI reports failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubegym_api.environment import EnvironmentConfig, Wrapper
from kubegym_api.envvars import CONFIG_ENV
from kubegym_api.exitcodes import EXIT_STORAGE_ERROR, EXIT_USER_ERROR
from kubegym_api.runnerconfig import RunRef, TrainConfig, dump_config
from kubegym_api.storage import S3Storage
from kubegym_api.trainingrun import EvaluationConfig
from kubegym_runner import cli
from kubegym_runner.errors import UserError
from kubegym_runner.logs import redact


def _config(**overrides: object) -> TrainConfig:
    fields: dict[str, object] = {
        "algorithm": "PPO",
        "environment": EnvironmentConfig(
            id="CartPole-v1", n_envs=2, wrappers=[Wrapper(name="TimeLimit", kwargs={"max_episode_steps": 50})]
        ),
        "hyperparameters": {"n_steps": 64, "learning_rate": "lin_3e-4"},
        "total_timesteps": 1000,
        "evaluation": EvaluationConfig(every_steps=500, episodes=2),
        "storage": S3Storage(bucket="kubegym", endpoint="http://127.0.0.1:9"),
        "run_prefix": "runs/ns/name",
        "report_to": RunRef(plural="trainingruns", namespace="ns", name="name"),
    }
    fields.update(overrides)
    return TrainConfig.model_validate(fields)


def test_config_round_trips_through_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config()
    wire = dump_config(config)
    body = json.loads(wire)
    # camelCase on the wire, as in the CRD.
    assert body["environment"]["nEnvs"] == 2
    assert body["totalTimesteps"] == 1000
    assert body["runPrefix"] == "runs/ns/name"
    assert body["reportTo"]["plural"] == "trainingruns"
    monkeypatch.setenv(CONFIG_ENV, wire)
    assert cli.load_config(TrainConfig, None) == config


def test_config_file_wins_over_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    path = tmp_path / "config.json"
    path.write_text(dump_config(_config()))
    assert cli.load_config(TrainConfig, str(path)).total_timesteps == 1000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "no configuration"),
        ("{not json", "invalid TrainConfig"),
        ('{"algorithm": "PPO"}', "environment"),
        (
            '{"algorithm": "NotAnAlgo", "environment": {"id": "x"}, "storage": {"bucket": "abc"}, "runPrefix": "p"}',
            "algorithm",
        ),
    ],
)
def test_bad_config_is_a_user_error(monkeypatch: pytest.MonkeyPatch, text: str, expected: str) -> None:
    monkeypatch.setenv(CONFIG_ENV, text)
    with pytest.raises(UserError, match=expected):
        cli.load_config(TrainConfig, None)


def test_validation_message_does_not_echo_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        CONFIG_ENV,
        '{"algorithm": "PPO", "environment": {"id": "x"}, "storage": '
        '{"bucket": "s3cr3t-value-that-must-not-leak", "region": 5}, "runPrefix": "p"}',
    )
    with pytest.raises(UserError) as info:
        cli.load_config(TrainConfig, None)
    assert "s3cr3t" not in str(info.value)
    assert "storage.region" in str(info.value)


def test_termination_log_gets_the_one_line_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "termination-log"
    monkeypatch.setenv(cli.TERMINATION_LOG_ENV, str(log))
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    assert cli.main(["train"]) == EXIT_USER_ERROR
    assert "no configuration" in log.read_text()
    err = capsys.readouterr().err
    assert "kubegym-runner: error: no configuration" in err


def test_bad_arguments_are_user_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.TERMINATION_LOG_ENV, str(tmp_path / "log"))
    assert cli.main(["train", "--no-such-flag"]) == EXIT_USER_ERROR
    assert cli.main([]) == EXIT_USER_ERROR


def test_unknown_environment_fails_before_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The endpoint is unreachable: the plan must fail first, with exit code 42.
    monkeypatch.setenv(cli.TERMINATION_LOG_ENV, str(tmp_path / "log"))
    monkeypatch.setenv(CONFIG_ENV, dump_config(_config(environment=EnvironmentConfig(id="CartPol-v1"), report_to=None)))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cli.main(["train"]) == EXIT_USER_ERROR
    message = (tmp_path / "log").read_text()
    assert "unknown environment id 'CartPol-v1'" in message and "CartPole-v1" in message


def test_unreachable_storage_is_a_storage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv(cli.TERMINATION_LOG_ENV, str(tmp_path / "log"))
    monkeypatch.setenv(CONFIG_ENV, dump_config(_config(report_to=None)))  # endpoint 127.0.0.1:9: closed
    assert cli.main(["train"]) == EXIT_STORAGE_ERROR
    message = (tmp_path / "log").read_text()
    assert "127.0.0.1:9" in message
    assert secret not in message


def test_redact_hides_credential_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "topsecretvalue")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA1234")
    assert redact("key AKIA1234 secret topsecretvalue!") == "key *** secret ***!"


def test_default_termination_log_is_only_written_where_the_kubelet_made_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(cli.TERMINATION_LOG_ENV, raising=False)
    monkeypatch.setattr(cli, "DEFAULT_TERMINATION_LOG", tmp_path / "absent")
    assert cli.termination_log_path() is None
    present = tmp_path / "present"
    present.touch()
    monkeypatch.setattr(cli, "DEFAULT_TERMINATION_LOG", present)
    assert cli.termination_log_path() == present
    cli.write_termination_message("x" * 10_000)
    assert len(present.read_bytes()) == cli.TERMINATION_MESSAGE_LIMIT
