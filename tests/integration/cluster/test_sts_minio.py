"""The operator's STS client and session policies against the local cluster's real MinIO.

The operator's own key (a MinIO user the local cluster makes with ``mc`` at ``up``, with a policy
on the bucket) mints credentials through ``AssumeRole``; what they can do is what the session
policy of the runner configuration allows and nothing else: its own folder read and written
(multipart uploads included), what it names read-only, listing only with a prefix, every other
namespace's objects refused with AccessDenied. The operator's user is itself bounded to the
bucket, so even a session policy that allowed everything would reach nothing else; a wrong key is
refused, and a policy over STS's limit is refused by MinIO as the builder expects.
"""

from __future__ import annotations

import io
import uuid
from typing import Any

import boto3
import botocore.exceptions
import pytest
from boto3.s3.transfer import TransferConfig

from kubegym_api.runnerconfig import TrainConfig
from kubegym_api.storage import S3Storage, SessionCredentials
from kubegym_localcluster import layout
from kubegym_localcluster.cluster import LocalCluster
from kubegym_operator.builders import credentials as build
from kubegym_operator.sts import AccessKey, StsClient, StsError

BUCKET = layout.BUCKET


def _client(cluster: LocalCluster, creds: SessionCredentials | None = None) -> Any:
    env = cluster.storage_env()
    if creds is None:  # the admin
        keys = {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}
    else:
        keys = {
            "aws_access_key_id": creds.access_key_id,
            "aws_secret_access_key": creds.secret_access_key,
            "aws_session_token": creds.session_token,
        }
    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1", **keys)


def _operator(cluster: LocalCluster) -> StsClient:
    key = cluster.storage_operator_key()
    return StsClient(key["endpoint"], AccessKey(key["access_key"], key["secret_key"]))


def _code(call: Any) -> str:
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return str(e.response["Error"]["Code"])
    return "OK"


def test_minted_credentials_reach_their_run_and_nothing_else(cluster: LocalCluster) -> None:
    tag = uuid.uuid4().hex[:8]
    mine, other, victim = f"team-{tag}/cartpole", f"team-{tag}/old", f"victim-{tag}/run"
    admin = _client(cluster)
    admin.put_object(Bucket=BUCKET, Key=f"{other}/checkpoints/000000000512/manifest.json", Body=b"{}")
    admin.put_object(Bucket=BUCKET, Key=f"{victim}/final/model.zip", Body=b"victim")
    config = TrainConfig.model_validate(
        {
            "algorithm": "PPO",
            "environment": {"id": "CartPole-v1"},
            "totalTimesteps": 1000,
            "storage": S3Storage(bucket=BUCKET),
            "runPrefix": mine,
            "resumeFrom": f"s3://{BUCKET}/{other}/checkpoints/000000000512/",
        }
    )
    policy = build.session_policy(build.access_of(config, f"team-{tag}"))
    creds = _operator(cluster).assume_role(policy, f"kubegym.team-{tag}.cartpole", 900)
    s3 = _client(cluster, creds)

    assert _code(lambda: s3.put_object(Bucket=BUCKET, Key=f"{mine}/checkpoints/1/model.zip", Body=b"m")) == "OK"
    assert s3.get_object(Bucket=BUCKET, Key=f"{mine}/checkpoints/1/model.zip")["Body"].read() == b"m"
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{mine}/")["KeyCount"] == 1
    assert _code(lambda: s3.get_object(Bucket=BUCKET, Key=f"{mine}/missing.json")) == "NoSuchKey"
    big = io.BytesIO(b"x" * (6 << 20))
    chunks = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    assert _code(lambda: s3.upload_fileobj(big, BUCKET, f"{mine}/final/replay.pkl", Config=chunks)) == "OK"
    assert _code(lambda: s3.delete_object(Bucket=BUCKET, Key=f"{mine}/checkpoints/1/model.zip")) == "OK"
    # What it names: read, never written.
    resume = f"{other}/checkpoints/000000000512/manifest.json"
    assert s3.get_object(Bucket=BUCKET, Key=resume)["Body"].read() == b"{}"
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{other}/checkpoints/000000000512/")["KeyCount"] == 1
    assert _code(lambda: s3.put_object(Bucket=BUCKET, Key=resume, Body=b"overwritten")) == "AccessDenied"
    # Everything else: denied.
    for call in (
        lambda: s3.get_object(Bucket=BUCKET, Key=f"{victim}/final/model.zip"),
        lambda: s3.put_object(Bucket=BUCKET, Key=f"{victim}/final/model.zip", Body=b"planted"),
        lambda: s3.delete_object(Bucket=BUCKET, Key=f"{victim}/final/model.zip"),
        lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix=f"victim-{tag}/"),
        lambda: s3.list_objects_v2(Bucket=BUCKET),
        lambda: s3.put_object(Bucket=BUCKET, Key=f"{mine}-sibling/x", Body=b"x"),  # a prefix is a folder
        lambda: s3.get_object(Bucket=BUCKET, Key=f"{other}/checkpoints/000000001024/manifest.json"),
        lambda: s3.create_bucket(Bucket=f"new-{tag}"),
    ):
        assert _code(call) == "AccessDenied"
    assert admin.get_object(Bucket=BUCKET, Key=f"{victim}/final/model.zip")["Body"].read() == b"victim"


def test_the_operators_key_is_bounded_to_the_bucket_and_must_be_right(cluster: LocalCluster) -> None:
    tag = uuid.uuid4().hex[:8]
    endpoint = cluster.storage_operator_key()["endpoint"]
    everything = (
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"]}]}'
    )
    admin = _client(cluster)
    admin.create_bucket(Bucket=f"other-{tag}")
    try:
        s3 = _client(cluster, _operator(cluster).assume_role(everything, "kubegym.all", 900))
        assert _code(lambda: s3.put_object(Bucket=BUCKET, Key=f"anywhere-{tag}/x", Body=b"x")) == "OK"  # the bucket
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [BUCKET]  # and nothing else
        assert _code(lambda: s3.put_object(Bucket=f"other-{tag}", Key="x", Body=b"x")) == "AccessDenied"
        assert _code(lambda: s3.create_bucket(Bucket=f"new-{tag}")) == "AccessDenied"
    finally:
        admin.delete_bucket(Bucket=f"other-{tag}")

    policy = build.session_policy(build.StorageAccess(build.Folder(BUCKET, "team/run")))
    with pytest.raises(StsError) as wrong:
        StsClient(endpoint, AccessKey(cluster.storage_operator_key()["access_key"], "wrong")).assume_role(
            policy, "kubegym.team.run", 900
        )
    assert wrong.value.code in ("AccessDenied", "SignatureDoesNotMatch") and not wrong.value.retryable
    with pytest.raises(StsError) as down:
        StsClient("http://127.0.0.1:1", AccessKey("a", "b"), timeout=2).assume_role(policy, "x", 900)
    assert down.value.code == "Unreachable" and down.value.retryable


def test_policies_at_stss_limit(cluster: LocalCluster) -> None:
    """The builder's budget holds against MinIO's own count, and MinIO refuses a policy past 2,048."""
    write = build.Folder(BUCKET, "team/benchmarks/b")
    reads = [build.Folder(BUCKET, f"elsewhere-{i}/run-{i:03d}/final") for i in range(60)]
    exact = build.dump_policy(build.policy_document(write, reads))
    assert len(exact) > build.MAX_POLICY_CHARS
    with pytest.raises(StsError, match="2048") as too_large:
        _operator(cluster).assume_role(exact, "kubegym.team.b", 900)
    assert too_large.value.code == "InvalidParameterValue"
    fitting = reads[:1]
    while len(build.dump_policy(build.policy_document(write, [*fitting, reads[len(fitting)]]))) <= build.POLICY_BUDGET:
        fitting.append(reads[len(fitting)])
    policy = build.dump_policy(build.policy_document(write, fitting))
    assert build.POLICY_BUDGET - 100 < len(policy) <= build.POLICY_BUDGET
    assert _operator(cluster).assume_role(policy, "kubegym.team.b", 900).session_token
