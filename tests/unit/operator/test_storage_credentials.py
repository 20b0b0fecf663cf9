"""Per-run storage credentials, the pure parts (``kubegym_operator.builders.credentials``): what each
runner configuration may touch, the session policy that says so, how it stays under STS's 2,048
characters, the per-run Secret, when a refresh is due, and how the runner pods get it.

The policy's effect on a real store is proven against MinIO in
``tests/integration/cluster/test_sts_minio.py`` and ``tests/integration/trainingrun/test_storage_isolation.py``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest

from kubegym_api.envvars import CONFIG_ENV, STORAGE_CREDENTIALS_FILE_ENV
from kubegym_api.runnerconfig import (
    BenchmarkModel,
    EvaluateConfig,
    ExperimentReportConfig,
    ReportConfiguration,
    ReportRun,
    RunOutcome,
    TrainConfig,
)
from kubegym_api.storage import SESSION_CREDENTIALS_KEY, S3Storage, SessionCredentials
from kubegym_operator.builders import credentials as c
from kubegym_operator.builders.benchmark import render_job as render_benchmark_job
from kubegym_operator.builders.errors import RenderError
from kubegym_operator.builders.job import render_job
from kubegym_operator.settings import Settings, SettingsError, StorageCredentials, load_settings
from tests.unit.operator.builders import make_benchmark, make_run

Obj = dict[str, Any]
BUCKET = "kubegym"
STORAGE = S3Storage(bucket=BUCKET, prefix="runs")
STS = Settings(default_storage=S3Storage(bucket=BUCKET, prefix="runs", endpoint="http://minio:9000"))
STATIC = Settings(
    default_storage=S3Storage(bucket=BUCKET, prefix="runs", endpoint="http://minio:9000", secret_ref="kubegym-s3"),
    storage_credentials=StorageCredentials.static,
)


def train(prefix: str = "runs/team-a/cartpole", resume_from: str | None = None) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "algorithm": "PPO",
            "environment": {"id": "CartPole-v1"},
            "totalTimesteps": 1000,
            "storage": STORAGE,
            "runPrefix": prefix,
            "resumeFrom": resume_from,
        }
    )


def evaluate(*uris: str, prefix: str = "runs/team-a/benchmarks/compare") -> EvaluateConfig:
    return EvaluateConfig.model_validate(
        {
            "models": [BenchmarkModel(name=f"m{i}", uri=uri) for i, uri in enumerate(uris)],
            "environments": [{"id": "CartPole-v1"}],
            "storage": STORAGE,
            "runPrefix": prefix,
        }
    )


def report(runs: list[str], benchmarks: list[str]) -> ExperimentReportConfig:
    return ExperimentReportConfig(
        experiment="sweep",
        configurations=[ReportConfiguration(id="c0")],
        runs=[
            ReportRun(name=r, configuration="c0", seed=0, outcome=RunOutcome.Succeeded, run_prefix=p)
            for r, p in runs_of(runs)
        ],
        benchmark_prefixes=benchmarks,
        storage=STORAGE,
        run_prefix="runs/team-a/experiments/sweep",
    )


def runs_of(prefixes: list[str]) -> list[tuple[str, str]]:
    return [(p.rsplit("/", 1)[-1], p) for p in prefixes]


def statements(policy: str) -> tuple[Obj, Obj | None, dict[str, Obj]]:
    """The policy's write statement, its read statement (None without reads), and its listings by bucket."""
    doc = json.loads(policy)
    assert doc["Version"] == "2012-10-17"
    write, *rest = doc["Statement"]
    read = rest.pop(0) if rest and rest[0]["Action"] == ["s3:GetObject"] else None
    listings = {s["Resource"][0].removeprefix("arn:aws:s3:::"): s for s in rest}
    assert all(s["Action"] == ["s3:ListBucket"] and s["Effect"] == "Allow" for s in listings.values())
    return write, read, listings


# --- what each configuration may touch ------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "write", "reads"),
    [
        pytest.param(train(), "kubegym/runs/team-a/cartpole/*", [], id="train"),
        pytest.param(
            train(resume_from="s3://kubegym/runs/team-a/old/checkpoints/000000050000/"),
            "kubegym/runs/team-a/cartpole/*",
            ["kubegym/runs/team-a/old/checkpoints/000000050000/*"],
            id="train-resume-from-a-checkpoint",
        ),
        pytest.param(
            train(resume_from="s3://kubegym/runs/team-a/old"),
            "kubegym/runs/team-a/cartpole/*",
            ["kubegym/runs/team-a/old/*"],
            id="train-resume-from-a-run-folder",
        ),
        pytest.param(
            train(resume_from="s3://kubegym/runs/team-a/cartpole/checkpoints/000000001000/"),
            "kubegym/runs/team-a/cartpole/*",
            [],
            id="train-resume-inside-its-own-folder",
        ),
        pytest.param(
            evaluate("s3://kubegym/runs/team-a/strong/final/", "s3://kubegym/uploads/abc/model.zip"),
            "kubegym/runs/team-a/benchmarks/compare/*",
            ["kubegym/runs/team-a/strong/final/*", "kubegym/uploads/abc/*"],  # a .zip: its folder
            id="evaluate",
        ),
        pytest.param(
            evaluate(
                "s3://kubegym/runs/team-a/a/final/", "s3://kubegym/runs/team-a/a/final/", "s3://kubegym/runs/team-a/a/"
            ),
            "kubegym/runs/team-a/benchmarks/compare/*",
            ["kubegym/runs/team-a/a/*"],  # duplicates and folders inside another are dropped
            id="evaluate-overlapping",
        ),
        pytest.param(
            report(["runs/team-a/sweep-c0-s0", "runs/team-a/sweep-c0-s1"], ["runs/team-a/benchmarks/sweep-benchmark"]),
            "kubegym/runs/team-a/experiments/sweep/*",
            [
                "kubegym/runs/team-a/sweep-c0-s0/*",
                "kubegym/runs/team-a/sweep-c0-s1/*",
                "kubegym/runs/team-a/benchmarks/sweep-benchmark/*",
            ],
            id="experiment-report",
        ),
    ],
)
def test_each_configuration_writes_its_prefix_and_reads_what_it_names(
    config: c.RunnerConfig, write: str, reads: list[str]
) -> None:
    policy = c.session_policy(c.access_of(config, "team-a"))
    write_statement, read_statement, listings = statements(policy)
    assert write_statement["Resource"] == [f"arn:aws:s3:::{write}"]
    assert write_statement["Action"] == list(c.WRITE_ACTIONS)
    assert {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"} <= set(write_statement["Action"])
    if reads:
        assert read_statement is not None
        assert read_statement["Resource"] == [f"arn:aws:s3:::{r}" for r in reads]
    else:
        assert read_statement is None
    # Listing only with a prefix condition, on exactly these folders; nothing else in the policy.
    assert list(listings) == [BUCKET]
    assert listings[BUCKET]["Condition"] == {"StringLike": {"s3:prefix": [w.split("/", 1)[1] for w in [write, *reads]]}}
    assert len(json.loads(policy)["Statement"]) == 2 + bool(reads)


def test_a_read_in_another_bucket_gets_its_own_listing() -> None:
    _, read, listings = statements(c.session_policy(c.access_of(evaluate("s3://models/zoo/ppo/final/"), "team-a")))
    assert read is not None and read["Resource"] == ["arn:aws:s3:::models/zoo/ppo/final/*"]
    assert listings["models"]["Condition"] == {"StringLike": {"s3:prefix": ["zoo/ppo/final/*"]}}
    assert listings[BUCKET]["Condition"] == {"StringLike": {"s3:prefix": ["runs/team-a/benchmarks/compare/*"]}}


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (train(resume_from="s3://kubegym/"), "InvalidStorageURI"),  # a whole bucket is never granted
        (train(resume_from="s3://kubegym/model.zip"), "InvalidStorageURI"),  # nor is its root folder
        (train(resume_from="https://example.com/x"), "InvalidStorageURI"),
        (train(prefix="/"), "StorageNotConfigured"),
    ],
)
def test_access_that_would_be_too_broad_is_refused(config: c.RunnerConfig, reason: str) -> None:
    with pytest.raises(RenderError) as err:
        c.access_of(config, "team-a")
    assert err.value.reason == reason


# --- 2,048 characters -----------------------------------------------------------------------------


def _read_patterns(policy: str) -> list[str]:
    doc = json.loads(policy)
    return [r.removeprefix(f"arn:aws:s3:::{BUCKET}/") for r in doc["Statement"][1]["Resource"]]


def test_32_models_of_an_experiment_fit_in_wildcards_inside_the_namespace() -> None:
    uris = [f"s3://kubegym/runs/team-a/sweep-lr{i % 4}-s{i}/final/" for i in range(32)]
    exact = c.dump_policy(
        c.policy_document(c.Folder(BUCKET, "runs/team-a/benchmarks/b"), [c.parse_uri(u, "m") for u in uris])
    )
    assert len(exact) > c.MAX_POLICY_CHARS  # as written out, it would not fit
    policy = c.session_policy(c.access_of(evaluate(*uris, prefix="runs/team-a/benchmarks/b"), "team-a"))
    assert len(policy) <= c.POLICY_BUDGET < c.MAX_POLICY_CHARS
    patterns = _read_patterns(policy)
    assert all(p.startswith("runs/team-a/sweep-lr") for p in patterns)  # never wider than the namespace
    covered = [u.removeprefix("s3://kubegym/") for u in uris]
    assert all(any(_matches(p, key + "model.zip") for p in patterns) for key in covered)
    assert not any(_matches(p, "runs/team-a/other/final/model.zip") for p in patterns)
    assert not any(_matches(p, "runs/team-b/sweep-lr0-s0/final/model.zip") for p in patterns)


def test_an_experiment_report_over_many_trials_fits() -> None:
    runs = [f"runs/team-a/sweep-c{c_}-s{s}" for c_ in range(12) for s in range(10)]
    policy = c.session_policy(c.access_of(report(runs, ["runs/team-a/benchmarks/sweep-benchmark"]), "team-a"))
    patterns = _read_patterns(policy)
    assert len(policy) <= c.POLICY_BUDGET
    assert all(any(_matches(p, f"{r}/eval/evaluations.json") for p in patterns) for r in runs)
    assert any(_matches(p, "runs/team-a/benchmarks/sweep-benchmark/report/episodes.csv") for p in patterns)
    assert not any(_matches(p, "runs/team-b/sweep-c0-s0/eval/evaluations.json") for p in patterns)


def test_reads_outside_the_namespace_are_never_merged() -> None:
    uris = [f"s3://kubegym/runs/team-{i}/run-with-a-long-name-{i}/final/" for i in range(32)]
    with pytest.raises(RenderError) as err:
        c.session_policy(c.access_of(evaluate(*uris), "team-a"))
    assert err.value.reason == "StoragePolicyTooLarge"
    assert "split" in err.value.message


def _matches(pattern: str, key: str) -> bool:
    """IAM's wildcard match of a key pattern whose only wildcard is a trailing ``*``."""
    return key.startswith(pattern[:-1]) if pattern.endswith("*") else key == pattern


# --- the Secret, and when to refresh ----------------------------------------------------------------

ISSUED = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
MINTED = SessionCredentials(
    access_key_id="TEMP",
    secret_access_key="temp-secret",
    session_token="token",
    expiration=ISSUED + dt.timedelta(hours=1),
)


def test_the_secret_holds_one_file_and_is_owned_by_the_run() -> None:
    job = render_job(make_run(checkpoint={"everySteps": 1000}), STS)
    owner = job["metadata"]["ownerReferences"][0]
    secret = c.credentials_secret(job, owner, MINTED)
    assert secret["metadata"]["name"] == "cartpole-train-storage" == c.credentials_secret_name("cartpole-train")
    assert secret["metadata"]["ownerReferences"] == [owner] and owner["kind"] == "TrainingRun"
    assert secret["metadata"]["labels"][c.CREDENTIALS_LABEL] == "true"
    (key,) = secret["data"]
    assert key == SESSION_CREDENTIALS_KEY
    assert SessionCredentials.model_validate_json(base64.b64decode(secret["data"][key])) == MINTED
    assert json.loads(base64.b64decode(secret["data"][key]))["Version"] == 1  # credential_process format


@pytest.mark.parametrize(
    ("annotations", "at", "due"),
    [
        ({}, 0, True),  # mounted but never recorded: mint now
        (c.issued_annotations(ISSUED, MINTED), 0, False),
        (c.issued_annotations(ISSUED, MINTED), 39 * 60, False),  # 21 minutes of 60 left
        (c.issued_annotations(ISSUED, MINTED), 40 * 60 + 1, True),  # under a third left
        (c.issued_annotations(ISSUED, MINTED), 2 * 3600, True),  # expired
        ({c.ISSUED_ANNOTATION: "garbage", c.EXPIRATION_ANNOTATION: "2026-03-01T13:00:00Z"}, 0, True),
    ],
)
def test_refresh_is_due_with_a_third_of_the_lifetime_left(annotations: dict[str, str], at: float, due: bool) -> None:
    job = render_job(make_run(checkpoint={"everySteps": 1000}), STS)
    job["metadata"]["annotations"].update(annotations)
    assert c.refresh_due(job, ISSUED + dt.timedelta(seconds=at)) is due


def test_a_job_with_credentials_by_reference_is_never_due() -> None:
    job = render_job(make_run(), STS)  # its own storage, with a secretRef
    assert not c.minted_for(job)
    assert not c.refresh_due(job, ISSUED + dt.timedelta(days=30))


# --- how runner pods get them ---------------------------------------------------------------------


def _pod(job: Obj) -> Obj:
    return dict(job["spec"]["template"]["spec"])


def _env(job: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in _pod(job)["containers"][0]["env"]}


@pytest.mark.parametrize(
    "job",
    [
        pytest.param(render_job(make_run(checkpoint={"everySteps": 1000}), STS), id="trainingrun"),
        pytest.param(
            render_benchmark_job(
                make_benchmark(storage=None), STS, [BenchmarkModel(name="m", uri="s3://kubegym/uploads/a/")]
            ),
            id="benchmark",
        ),
    ],
)
def test_sts_mode_mounts_the_runs_own_secret_and_no_key(job: Obj) -> None:
    env = _env(job)
    assert not any(name.startswith("AWS_") for name in env)  # no key, not even by reference
    assert env[STORAGE_CREDENTIALS_FILE_ENV]["value"] == f"{c.MOUNT_PATH}/{SESSION_CREDENTIALS_KEY}"
    name = job["metadata"]["name"]
    assert {"name": c.VOLUME_NAME, "secret": {"secretName": f"{name}-storage", "defaultMode": 0o440}} in _pod(job)[
        "volumes"
    ]
    mounts = _pod(job)["containers"][0]["volumeMounts"]
    assert {"name": c.VOLUME_NAME, "mountPath": c.MOUNT_PATH, "readOnly": True} in mounts
    config = json.loads(env[CONFIG_ENV]["value"])
    assert "secretRef" not in config["storage"]


def test_static_mode_and_a_specs_own_storage_pass_keys_by_reference() -> None:
    static = render_job(make_run(checkpoint={"everySteps": 1000}), STATIC)
    own = render_job(make_run(), STS)  # the spec names its own bucket and Secret: passed as it is
    for job, secret in ((static, "kubegym-s3"), (own, "minio-creds")):
        env = _env(job)
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "AWS_ACCESS_KEY_ID"}
        assert STORAGE_CREDENTIALS_FILE_ENV not in env
        assert all(v["name"] != c.VOLUME_NAME for v in _pod(job)["volumes"])


# --- settings -------------------------------------------------------------------------------------


def test_sts_is_the_default_and_static_is_opt_in() -> None:
    sts = load_settings({"KUBEGYM_STORAGE_BUCKET": "kubegym", "KUBEGYM_STORAGE_ENDPOINT": "http://minio:9000"})
    assert sts.storage_credentials == StorageCredentials.sts and sts.mints_credentials
    assert sts.sts_endpoint() == "http://minio:9000"  # MinIO serves STS on its S3 endpoint
    assert sts.storage_credentials_duration_seconds == 3600
    static = load_settings(
        {"KUBEGYM_STORAGE_BUCKET": "kubegym", "KUBEGYM_STORAGE_CREDENTIALS": "static", "KUBEGYM_STORAGE_SECRET": "s"}
    )
    assert not static.mints_credentials
    aws = load_settings(
        {
            "KUBEGYM_STORAGE_BUCKET": "kubegym",
            "KUBEGYM_STORAGE_REGION": "eu-west-1",
            "KUBEGYM_STORAGE_ROLE_ARN": "arn:aws:iam::123456789012:role/kubegym-runs",
            "KUBEGYM_STORAGE_CREDENTIALS_DURATION_SECONDS": "7200",
        }
    )
    assert aws.sts_endpoint() == "https://sts.eu-west-1.amazonaws.com"
    assert aws.storage_credentials_duration_seconds == 7200


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KUBEGYM_STORAGE_SECRET": "kubegym-s3"}, "KUBEGYM_STORAGE_SECRET is for KUBEGYM_STORAGE_CREDENTIALS=static"),
        ({"KUBEGYM_STORAGE_ENDPOINT": ""}, "KUBEGYM_STORAGE_ROLE_ARN"),  # AWS without a role
        ({"KUBEGYM_STORAGE_CREDENTIALS": "vault"}, "KUBEGYM_STORAGE_CREDENTIALS"),
        ({"KUBEGYM_STORAGE_CREDENTIALS_DURATION_SECONDS": "60"}, "KUBEGYM_STORAGE_CREDENTIALS_DURATION_SECONDS"),
        ({"KUBEGYM_STORAGE_STS_ENDPOINT": "sts.local"}, "KUBEGYM_STORAGE_STS_ENDPOINT"),
    ],
)
def test_bad_storage_credentials_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    base = {"KUBEGYM_STORAGE_BUCKET": "kubegym", "KUBEGYM_STORAGE_ENDPOINT": "http://minio:9000"}
    with pytest.raises(SettingsError, match=message):
        load_settings({**base, **env})


def test_the_operator_key_is_required_to_mint_and_stays_out_of_settings() -> None:
    from kubegym_operator.settings import load_storage_key

    with pytest.raises(SettingsError, match="KUBEGYM_STORAGE_ACCESS_KEY_ID and KUBEGYM_STORAGE_SECRET_ACCESS_KEY"):
        load_storage_key({}, STS)
    key = load_storage_key({"KUBEGYM_STORAGE_ACCESS_KEY_ID": "op", "KUBEGYM_STORAGE_SECRET_ACCESS_KEY": "s3cr3t"}, STS)
    assert key is not None and key.access_key_id == "op" and "s3cr3t" not in repr(key)
    assert load_storage_key({}, STATIC) is None and load_storage_key({}, Settings()) is None
    assert "s3cr3t" not in STS.model_dump_json()
