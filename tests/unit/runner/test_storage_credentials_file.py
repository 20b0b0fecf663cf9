"""The runner's S3 client on operator-minted credentials (``kubegym_runner.storage.CredentialsFile``):
it reads the mounted file, and a file the operator (through the kubelet) replaced is picked up
without a restart once the credentials near their expiry — with botocore's own refresh windows,
on a fake clock.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from kubegym_api.envvars import STORAGE_CREDENTIALS_FILE_ENV
from kubegym_api.storage import SessionCredentials
from kubegym_runner.errors import StorageError
from kubegym_runner.storage import CredentialsFile, session_for

T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> dt.datetime:
        return self.at


def write(path: Path, key: str, expires_in: float, start: dt.datetime = T0) -> None:
    creds = SessionCredentials(
        access_key_id=key,
        secret_access_key=f"{key}-secret",
        session_token=f"{key}-token",
        expiration=start + dt.timedelta(seconds=expires_in),
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(creds.dump())
    tmp.replace(path)  # as the kubelet replaces a Secret volume's file


def test_a_replaced_file_is_picked_up_near_expiry_without_a_restart(tmp_path: Path) -> None:
    path, clock = tmp_path / "credentials.json", Clock()
    write(path, "FIRST", expires_in=3600)
    session = session_for({}, CredentialsFile(path, clock=clock))
    credentials = session.get_credentials()
    assert credentials.method == CredentialsFile.METHOD
    frozen = credentials.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == ("FIRST", "FIRST-secret", "FIRST-token")

    write(path, "SECOND", expires_in=2 * 3600)  # the operator refreshed early
    clock.at = T0 + dt.timedelta(minutes=30)  # 30 minutes left: botocore does not look yet
    assert credentials.get_frozen_credentials().access_key == "FIRST"
    clock.at = T0 + dt.timedelta(minutes=46)  # under 15 minutes left: it re-reads the file
    assert credentials.get_frozen_credentials().access_key == "SECOND"
    clock.at = T0 + dt.timedelta(minutes=59)
    assert credentials.get_frozen_credentials().access_key == "SECOND"  # and keeps what it read


def test_the_file_wins_over_keys_in_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "LONG-LIVED")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "long-lived-secret")
    path = tmp_path / "credentials.json"
    write(path, "MINTED", expires_in=3600, start=dt.datetime.now(dt.UTC))  # botocore's own clock
    minted = session_for({STORAGE_CREDENTIALS_FILE_ENV: str(path)}).get_credentials()
    assert minted.method == CredentialsFile.METHOD and minted.get_frozen_credentials().access_key == "MINTED"
    by_reference = session_for({}).get_credentials()  # no file: boto3's chain, the secretKeyRef env
    assert by_reference.method == "env" and by_reference.access_key == "LONG-LIVED"


def test_an_unreadable_file_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "credentials.json").write_text('{"Version": 1}')
    with pytest.raises(StorageError, match="cannot be read"):
        session_for({STORAGE_CREDENTIALS_FILE_ENV: str(tmp_path / "credentials.json")}).get_credentials()
    with pytest.raises(StorageError, match="cannot be read"):
        session_for({STORAGE_CREDENTIALS_FILE_ENV: str(tmp_path / "missing.json")}).get_credentials()
