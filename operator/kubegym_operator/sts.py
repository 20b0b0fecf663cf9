"""Short-lived storage credentials: an AWS Signature Version 4 signer and an STS ``AssumeRole``
client, on the standard library alone.

Why not boto3: the operator image carries no boto3 (botocore's service data alone is tens of
megabytes on disk and in memory, for one API call), and the operator never touches S3 objects.
It makes exactly one kind of storage call: ``AssumeRole`` with a session policy, which turns the
operator's long-lived key into credentials that can do only what one run needs
(:mod:`kubegym_operator.builders.credentials` writes the policy). This module is that call and
nothing else — the operator's one I/O path besides :mod:`kubegym_operator.kubeapi`.

The signer follows the published algorithm (canonical request → string to sign → HMAC-SHA256
chain of date, region, service → signature) and is checked against AWS's documented example
signatures and against botocore's own signer in the unit tests. The canonical URI follows the
published rule: the URL's (already encoded) path is encoded once more, except for S3 (STS is
called on ``/`` anyway).

On AWS, ``endpoint`` is the regional STS endpoint (``https://sts.<region>.amazonaws.com``) and a
``role_arn`` is required: the session policy narrows that role. On MinIO the STS endpoint is the
S3 endpoint itself, and the role is the calling user: the session policy narrows that user's
policy, so the operator's key is a regular user's whose policy allows the bucket and nothing else
(root's would bound nothing but the session policy).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field

from kubegym_api.storage import SessionCredentials

ALGORITHM = "AWS4-HMAC-SHA256"
#: STS's API version, as every AssumeRole request names it.
STS_VERSION = "2011-06-15"
#: What STS accepts as DurationSeconds (AWS: up to the role's maximum, 1 h by default).
MIN_DURATION_SECONDS = 900
MAX_DURATION_SECONDS = 43_200
#: Seconds an AssumeRole request may take before it fails.
REQUEST_TIMEOUT_SECONDS = 10.0
#: RoleSessionName: 2-64 characters of ``[\w+=,.@-]``.
_SESSION_NAME_BAD = re.compile(r"[^\w+=,.@-]")
_UNRESERVED = "-_.~"


@dataclass(frozen=True)
class AccessKey:
    """A long-lived access key; the secret never appears in a repr or a log line."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


class StsError(Exception):
    """AssumeRole failed. ``code`` is STS's error code (``AccessDenied``, ``InvalidParameterValue``)
    or ``Unreachable``/``BadResponse``; ``retryable`` when trying again later can help (an outage)."""

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable


# --- Signature Version 4 -------------------------------------------------------------------------


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe=_UNRESERVED)


def amz_date(now: dt.datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` in UTC, the X-Amz-Date format."""
    return now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def canonical_uri(path: str, service: str) -> str:
    """The canonical form of a URL's ``path`` (as it is in the URL, encoded): encoded again for
    every service but S3, whose keys are encoded once (``/`` when empty)."""
    if service == "s3":
        path = urllib.parse.unquote(path)
    return urllib.parse.quote(path or "/", safe="/" + _UNRESERVED)


def canonical_query(query: str) -> str:
    """The query's parameters encoded and sorted by name, then value."""
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{k}={v}" for k, v in sorted((_quote(k), _quote(v)) for k, v in pairs))


def _header_value(value: str) -> str:
    return " ".join(value.strip().split())


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """(canonical header block, signed header names): lower-case names, trimmed values, sorted."""
    items = sorted((name.lower().strip(), _header_value(value)) for name, value in headers.items())
    block = "".join(f"{name}:{value}\n" for name, value in items)
    return block, ";".join(name for name, _ in items)


def canonical_request(method: str, url: str, headers: Mapping[str, str], body: bytes, service: str = "sts") -> str:
    """The canonical form of a request to ``service``; ``headers`` are the ones to sign (Host among them)."""
    parts = urllib.parse.urlsplit(url)
    block, signed = canonical_headers(headers)
    return "\n".join(
        (
            method.upper(),
            canonical_uri(parts.path, service),
            canonical_query(parts.query),
            block,
            signed,
            hashlib.sha256(body).hexdigest(),
        )
    )


def credential_scope(now: dt.datetime, region: str, service: str) -> str:
    return f"{now.astimezone(dt.UTC):%Y%m%d}/{region}/{service}/aws4_request"


def string_to_sign(request: str, now: dt.datetime, region: str, service: str) -> str:
    digest = hashlib.sha256(request.encode()).hexdigest()
    return "\n".join((ALGORITHM, amz_date(now), credential_scope(now, region, service), digest))


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def signing_key(secret_access_key: str, now: dt.datetime, region: str, service: str) -> bytes:
    """The key of the day, region and service: HMAC-SHA256 chained from ``AWS4`` + the secret."""
    key = _hmac(f"AWS4{secret_access_key}".encode(), f"{now.astimezone(dt.UTC):%Y%m%d}")
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    key: AccessKey,
    region: str,
    service: str,
    now: dt.datetime,
) -> dict[str, str]:
    """``headers`` plus Host, X-Amz-Date and the Authorization header that signs them all.

    ``url`` is the full request URL, ``body`` the exact bytes sent, ``now`` the signing time
    (timezone-aware), ``region`` and ``service`` the credential scope's (``us-east-1``, ``sts``).
    """
    out = {name: value for name, value in headers.items() if name.lower() not in ("host", "x-amz-date")}
    out["Host"] = urllib.parse.urlsplit(url).netloc
    out["X-Amz-Date"] = amz_date(now)
    request = canonical_request(method, url, out, body, service)
    _, signed = canonical_headers(out)
    signature = hmac.new(
        signing_key(key.secret_access_key, now, region, service),
        string_to_sign(request, now, region, service).encode(),
        hashlib.sha256,
    ).hexdigest()
    scope = credential_scope(now, region, service)
    out["Authorization"] = (
        f"{ALGORITHM} Credential={key.access_key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return out


# --- STS AssumeRole -------------------------------------------------------------------------------


def session_name(text: str) -> str:
    """A valid RoleSessionName from ``text`` (a run's namespace and name): characters STS refuses
    become ``-``, cut to 64 with a digest so distinct runs stay distinct."""
    name = _SESSION_NAME_BAD.sub("-", text) or "kubegym"
    if len(name) > 64:
        name = f"{name[:55]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return name if len(name) >= 2 else f"{name}-"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(root: ET.Element, name: str) -> str | None:
    for element in root.iter():
        if _local(element.tag) == name:
            return (element.text or "").strip()
    return None


def parse_assume_role_response(body: bytes) -> SessionCredentials:
    """The credentials of an AssumeRole answer (STS's XML); :class:`StsError` if it holds none."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise StsError("BadResponse", f"AssumeRole answered with something that is not XML: {e}", retryable=True) from e
    fields = {name: _find(root, name) for name in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")}
    missing = [name for name, value in fields.items() if not value]
    if missing:
        raise StsError("BadResponse", f"AssumeRole answer lacks {', '.join(missing)}", retryable=True)
    try:
        return SessionCredentials.model_validate(fields)
    except ValueError as e:
        raise StsError("BadResponse", f"AssumeRole answer is malformed: {e}", retryable=True) from e


def parse_error(status: int, body: bytes) -> StsError:
    """The error of a refused request: STS's code and message when the body is its ErrorResponse."""
    code, message = f"HTTP{status}", body[:200].decode(errors="replace").strip()
    try:
        root = ET.fromstring(body)
        code = _find(root, "Code") or code
        message = _find(root, "Message") or message
    except ET.ParseError:
        pass
    # 5xx and throttling may pass; a refused key, role or policy will not.
    retryable = status >= 500 or code in ("Throttling", "RequestLimitExceeded", "ServiceUnavailable")
    return StsError(code, message, retryable=retryable)


@dataclass(frozen=True)
class StsClient:
    """``AssumeRole`` at ``endpoint`` with the operator's ``key``, signed for ``region``.

    ``role_arn`` is required by AWS (the role the session policy narrows) and ignored by MinIO.
    Implements :class:`kubegym_operator.credentials.Minter`.
    """

    endpoint: str
    key: AccessKey
    region: str = "us-east-1"
    role_arn: str | None = None
    timeout: float = REQUEST_TIMEOUT_SECONDS

    def request(self, policy: str, name: str, duration_seconds: int, now: dt.datetime) -> urllib.request.Request:
        """The signed POST (form-encoded body, as STS and MinIO expect it; no query string)."""
        params = {
            "Action": "AssumeRole",
            "Version": STS_VERSION,
            "DurationSeconds": str(duration_seconds),
            "Policy": policy,
            "RoleSessionName": session_name(name),
        }
        if self.role_arn:
            params["RoleArn"] = self.role_arn
        body = urllib.parse.urlencode(params).encode()
        url = self.endpoint.rstrip("/") + "/"
        headers = sign(
            "POST",
            url,
            {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            body,
            key=self.key,
            region=self.region,
            service="sts",
            now=now,
        )
        return urllib.request.Request(url, data=body, headers=headers, method="POST")

    def assume_role(self, policy: str, name: str, duration_seconds: int) -> SessionCredentials:
        """Credentials limited by the session ``policy`` (JSON), valid ``duration_seconds``;
        ``name`` identifies the session in the store's audit log (a run's namespace/name)."""
        request = self.request(policy, name, duration_seconds, dt.datetime.now(dt.UTC))
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return parse_assume_role_response(response.read())
        except urllib.error.HTTPError as e:
            raise parse_error(e.code, e.read()) from e
        except (urllib.error.URLError, OSError) as e:
            raise StsError("Unreachable", f"AssumeRole at {self.endpoint}: {e}", retryable=True) from e
