"""The operator's SigV4 signer and STS client (``kubegym_operator.sts``), without a network.

The signer is checked two ways: against AWS's published example (the IAM ``ListUsers`` request
of the Signature Version 4 documentation and the test suite's ``get-vanilla``: canonical request
digest, signing key, signature), and against botocore's own signer on requests with awkward
query strings, headers and bodies. The STS side: the request it sends (a form body, no query
string, what MinIO's router and AWS expect) and the answers it parses.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import urllib.parse

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kubegym_operator import sts

EXAMPLE_KEY = sts.AccessKey("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
EXAMPLE_TIME = dt.datetime(2015, 8, 30, 12, 36, tzinfo=dt.UTC)
FORM = "application/x-www-form-urlencoded; charset=utf-8"


@pytest.mark.parametrize(
    ("method", "url", "headers", "service", "request_digest", "signing_key", "signature"),
    [
        pytest.param(
            "GET",
            "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08",
            {"Content-Type": FORM},
            "iam",
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59",
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9",
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
            id="docs-iam-list-users",
        ),
        pytest.param(
            "GET",
            "https://example.amazonaws.com/",
            {},
            "service",
            None,
            None,
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            id="suite-get-vanilla",
        ),
    ],
)
def test_aws_published_examples(
    method: str,
    url: str,
    headers: dict[str, str],
    service: str,
    request_digest: str | None,
    signing_key: str | None,
    signature: str,
) -> None:
    signed = sts.sign(method, url, headers, b"", key=EXAMPLE_KEY, region="us-east-1", service=service, now=EXAMPLE_TIME)
    assert signed["X-Amz-Date"] == "20150830T123600Z"
    assert signed["Host"] == urllib.parse.urlsplit(url).netloc
    signed_headers = ";".join(sorted(h.lower() for h in [*headers, "Host", "X-Amz-Date"]))
    assert signed["Authorization"] == (
        f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/{service}/aws4_request, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    if request_digest is not None:
        unsigned = {k: v for k, v in signed.items() if k != "Authorization"}
        canonical = sts.canonical_request(method, url, unsigned, b"", service)
        assert hashlib.sha256(canonical.encode()).hexdigest() == request_digest
    if signing_key is not None:
        assert sts.signing_key(EXAMPLE_KEY.secret_access_key, EXAMPLE_TIME, "us-east-1", service).hex() == signing_key


def _botocore_signature(
    method: str, url: str, headers: dict[str, str], body: bytes, service: str, region: str, now: dt.datetime
) -> str:
    """botocore's signature of the same request at the same time (its lower-level steps, so that
    the timestamp is ours and not the wall clock)."""
    request = AWSRequest(method=method, url=url, data=body, headers={**headers, "X-Amz-Date": sts.amz_date(now)})
    request.context["timestamp"] = sts.amz_date(now)
    auth = SigV4Auth(Credentials(EXAMPLE_KEY.access_key_id, EXAMPLE_KEY.secret_access_key), service, region)
    canonical = auth.canonical_request(request)
    return str(auth.signature(auth.string_to_sign(request, canonical), request))


@pytest.mark.parametrize(
    ("method", "url", "headers", "body"),
    [
        (
            "POST",
            "https://sts.eu-west-1.amazonaws.com/",
            {"Content-Type": FORM},
            b"Action=AssumeRole&Version=2011-06-15",
        ),
        ("POST", "http://127.0.0.1:9000/", {"Content-Type": FORM}, b"Policy=%7B%22Version%22%3A%222012%22%7D"),
        ("GET", "https://example.amazonaws.com/?b=2&a=1&a=0&empty=", {}, b""),
        ("GET", "https://example.amazonaws.com/?k=a%20b%2Fc~d%2Ae", {"X-Custom": "  many   spaces  "}, b""),
        ("PUT", "https://example.amazonaws.com/a%20folder/obj-1.json", {"Content-Type": "application/json"}, b"{}"),
    ],
    ids=["sts-aws", "sts-minio", "sorted-query", "encoded-query-and-header", "path"],
)
def test_signatures_equal_botocores(method: str, url: str, headers: dict[str, str], body: bytes) -> None:
    now = dt.datetime(2026, 3, 1, 12, 34, 56, tzinfo=dt.UTC)
    signed = sts.sign(method, url, headers, body, key=EXAMPLE_KEY, region="eu-west-1", service="sts", now=now)
    ours = signed["Authorization"].rsplit("Signature=", 1)[1]
    theirs = _botocore_signature(method, url, {**headers, "Host": signed["Host"]}, body, "sts", "eu-west-1", now)
    assert ours == theirs


def test_assume_role_request_is_a_signed_form_post_without_a_query() -> None:
    client = sts.StsClient(
        "http://127.0.0.1:9000", sts.AccessKey("operator", "secret"), role_arn="arn:aws:iam::1:role/runs"
    )
    request = client.request('{"Version":"2012-10-17"}', "kubegym.team-a.run/1", 3600, EXAMPLE_TIME)
    assert request.get_method() == "POST"
    assert request.full_url == "http://127.0.0.1:9000/"  # MinIO routes AssumeRole only without a query
    assert isinstance(request.data, bytes)
    form = dict(urllib.parse.parse_qsl(request.data.decode()))
    assert form == {
        "Action": "AssumeRole",
        "Version": "2011-06-15",
        "DurationSeconds": "3600",
        "Policy": '{"Version":"2012-10-17"}',
        "RoleSessionName": "kubegym.team-a.run-1",
        "RoleArn": "arn:aws:iam::1:role/runs",
    }
    headers = {k.lower(): v for k, v in request.header_items()}
    assert headers["content-type"] == FORM
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=operator/20150830/us-east-1/sts/")
    assert "secret" not in repr(client)  # the key's secret never shows in a repr


ANSWER = b"""<?xml version="1.0" encoding="UTF-8"?>
<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>
<AssumedRoleUser><Arn></Arn><AssumeRoleId></AssumeRoleId></AssumedRoleUser>
<Credentials><AccessKeyId>TEMPKEY</AccessKeyId><SecretAccessKey>tempsecret</SecretAccessKey>
<SessionToken>token.jwt</SessionToken><Expiration>2026-03-01T13:00:00Z</Expiration></Credentials>
</AssumeRoleResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></AssumeRoleResponse>"""


def test_assume_role_answer_and_errors() -> None:
    creds = sts.parse_assume_role_response(ANSWER)
    assert (creds.access_key_id, creds.secret_access_key, creds.session_token) == ("TEMPKEY", "tempsecret", "token.jwt")
    assert creds.expiration == dt.datetime(2026, 3, 1, 13, tzinfo=dt.UTC)
    assert "tempsecret" not in repr(creds) and "token.jwt" not in repr(creds)

    with pytest.raises(sts.StsError, match="lacks SessionToken") as lacking:
        sts.parse_assume_role_response(ANSWER.replace(b"token.jwt", b""))
    assert lacking.value.retryable
    with pytest.raises(sts.StsError, match="not XML"):
        sts.parse_assume_role_response(b"<html")

    denied = sts.parse_error(
        403,
        b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        b"<Code>AccessDenied</Code><Message>Access denied</Message></Error></ErrorResponse>",
    )
    assert (denied.code, denied.message, denied.retryable) == ("AccessDenied", "Access denied", False)
    too_large = sts.parse_error(
        400, b"<ErrorResponse><Error><Code>InvalidParameterValue</Code></Error></ErrorResponse>"
    )
    assert (too_large.code, too_large.retryable) == ("InvalidParameterValue", False)
    outage = sts.parse_error(503, b"Service Unavailable")
    assert (outage.code, outage.retryable) == ("HTTP503", True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kubegym.team-a.cartpole", "kubegym.team-a.cartpole"),
        ("kubegym.team a/x:y", "kubegym.team-a-x-y"),
        ("x", "x-"),
    ],
)
def test_session_names_are_valid(text: str, expected: str) -> None:
    assert sts.session_name(text) == expected


def test_long_session_names_stay_distinct() -> None:
    a, b = sts.session_name("kubegym." + "a" * 80 + ".one"), sts.session_name("kubegym." + "a" * 80 + ".two")
    assert len(a) == len(b) == 64 and a != b


@pytest.mark.parametrize(
    ("path", "service", "expected"),
    [
        ("/", "sts", "/"),
        ("", "sts", "/"),
        ("/a%20b/c", "sts", "/a%2520b/c"),  # every service but S3: the encoded path, encoded again
        ("/a%20b/c", "s3", "/a%20b/c"),  # S3: once
    ],
)
def test_canonical_uri(path: str, service: str, expected: str) -> None:
    assert sts.canonical_uri(path, service) == expected
