"""Credentials and region from the AWS shared files, which obstore does not read: the profile
rules (storage/awsfiles.py), then a store whose only credentials are in a temp HOME's
~/.aws/credentials, against SeaweedFS (which refuses a wrong secret)."""

from __future__ import annotations

import uuid

import pytest

from support.seaweedfs import ACCESS_KEY, SECRET_KEY
from tidegate.config import ConfigError, build
from tidegate.storage import EngineUnavailable
from tidegate.storage.awsfiles import AwsProfileError, profile_settings
from tidegate.storage.s3blobs import S3BlobStore, make_s3_client

CREDENTIALS = """
[default]
aws_access_key_id = AKDEFAULT
aws_secret_access_key = default-secret

[dev]
aws_access_key_id = AKDEV
aws_secret_access_key = dev-secret
aws_session_token = dev-token
"""
CONFIG = """
[default]
region = eu-west-1

[profile dev]
region = eu-central-1
aws_access_key_id = AKFROMCONFIG
aws_secret_access_key = config-secret

[profile cfgonly]
aws_access_key_id = AKCFG
aws_secret_access_key = cfg-secret

[profile role]
role_arn = arn:aws:iam::123456789012:role/x
source_profile = default
"""


def test_the_default_profile_from_both_files():
    assert profile_settings("default", CREDENTIALS, CONFIG, {}) == {
        "access_key_id": "AKDEFAULT", "secret_access_key": "default-secret", "region": "eu-west-1"}


def test_a_named_profile_the_credentials_file_wins_over_the_config_file():
    assert profile_settings("dev", CREDENTIALS, CONFIG, {}, named=True) == {
        "access_key_id": "AKDEV", "secret_access_key": "dev-secret", "session_token": "dev-token",
        "region": "eu-central-1"}
    assert profile_settings("cfgonly", CREDENTIALS, CONFIG, {}, named=True) == {
        "access_key_id": "AKCFG", "secret_access_key": "cfg-secret"}


def test_the_environment_wins_over_the_files():
    env = {"AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "env", "AWS_REGION": "us-west-2"}
    assert profile_settings("dev", CREDENTIALS, CONFIG, env, named=True) == {}
    assert profile_settings("dev", CREDENTIALS, CONFIG, {"AWS_DEFAULT_REGION": "us-west-2"}, named=True) == {
        "access_key_id": "AKDEV", "secret_access_key": "dev-secret", "session_token": "dev-token"}


def test_no_files_or_no_default_profile_give_nothing():
    assert profile_settings("default", None, None, {}) == {}
    assert profile_settings("default", "[other]\naws_access_key_id = x\n", None, {}) == {}


def test_profiles_that_cannot_be_used_are_refused_in_a_line():
    with pytest.raises(AwsProfileError, match="AWS_PROFILE=nope names no profile"):
        profile_settings("nope", CREDENTIALS, CONFIG, {}, named=True)
    with pytest.raises(AwsProfileError, match="uses role_arn"):
        profile_settings("role", CREDENTIALS, CONFIG, {}, named=True)
    with pytest.raises(AwsProfileError, match="only one of"):
        profile_settings("default", "[default]\naws_access_key_id = x\n", None, {})
    with pytest.raises(AwsProfileError, match="not an AWS shared file"):
        profile_settings("default", "aws_access_key_id = x\n", None, {})


@pytest.fixture
def aws_home(tmp_path, monkeypatch, seaweedfs):
    """A HOME whose ~/.aws holds the only credentials (the session's AWS_* variables removed)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    return home


async def roundtrip(seaweedfs, tmp_path) -> bytes:
    store = S3BlobStore(make_s3_client(seaweedfs.bucket("awsfiles"), uuid.uuid4().hex, seaweedfs.endpoint),
                        "cache", tmp_path / "tier", None)
    try:
        temp = store.temp_path("k")
        temp.write_bytes(b"from the shared files")
        await store.commit(temp, "k")
        await store.tier.remove("k")  # read it back from the bucket, not the tier
        fh = await store.open("k")
        with fh:
            return fh.read()
    finally:
        await store.close()


async def test_a_profile_in_the_shared_files_reaches_the_bucket(aws_home, seaweedfs, tmp_path, monkeypatch):
    (aws_home / ".aws" / "credentials").write_text(
        f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = wrong\n\n"
        f"[ci]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
    (aws_home / ".aws" / "config").write_text("[profile ci]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_PROFILE", "ci")
    assert await roundtrip(seaweedfs, tmp_path) == b"from the shared files"
    monkeypatch.delenv("AWS_PROFILE")  # the default profile's wrong secret: refused by the server
    with pytest.raises(EngineUnavailable):
        await roundtrip(seaweedfs, tmp_path)


async def test_files_named_by_the_environment_and_a_bad_profile_as_a_setting(aws_home, seaweedfs, tmp_path,
                                                                              monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "creds").write_text(f"[default]\naws_access_key_id = {ACCESS_KEY}\n"
                                     f"aws_secret_access_key = {SECRET_KEY}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(elsewhere / "creds"))
    assert await roundtrip(seaweedfs, tmp_path) == b"from the shared files"
    monkeypatch.setenv("AWS_PROFILE", "missing")
    with pytest.raises(ConfigError, match="blob_store: AWS_PROFILE=missing names no profile"):
        build({"data_dir": str(tmp_path / "d"), "blob_store": "s3://bucket/prefix"})
