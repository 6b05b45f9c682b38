"""Credentials and region from the AWS shared files (~/.aws/credentials, ~/.aws/config), which
obstore does not read (it reads the AWS_* environment variables, and instance, container and
web-identity credentials).

As the AWS tools do: the profile is AWS_PROFILE (else "default"); the files are
AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE (else under ~/.aws); the environment wins over
the files and the credentials file over the config file; in the config file a profile other
than the default is a section "[profile NAME]". Only static keys (with a session token) and the
region are read: a profile that assumes a role, runs a credential_process or uses SSO is refused
in one line rather than half-used.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path
from typing import Mapping

KEYS = {"aws_access_key_id": "access_key_id", "aws_secret_access_key": "secret_access_key",
        "aws_session_token": "session_token"}
UNSUPPORTED = ("role_arn", "credential_process", "sso_start_url", "sso_session", "web_identity_token_file")


class AwsProfileError(ValueError):
    """The profile the environment names cannot be used; the message says why, in one line."""


def _sections(text: str, where: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, default_section="\0none")
    try:
        parser.read_string(text, source=where)
    except configparser.Error as exc:
        raise AwsProfileError(f"{where} is not an AWS shared file: {str(exc).splitlines()[0]}") from None
    return parser


def profile_settings(profile: str, credentials: str | None, config: str | None, env: Mapping[str, str], *,
                     named: bool = False, where: tuple[str, str] = ("credentials", "config")) -> dict[str, str]:
    """The obstore S3 settings (access_key_id, secret_access_key, session_token, region) that
    `profile` gives and the environment `env` lacks, from the texts of the two files (None: no
    such file). `named`: the profile was asked for (AWS_PROFILE), so it must exist."""
    found: dict[str, str] = {}
    sections = []  # (file, section), strongest first
    if credentials is not None:
        sections.append((where[0], _sections(credentials, where[0]), [profile]))
    if config is not None:
        names = ["profile " + profile] + (["default"] if profile == "default" else [])
        sections.append((where[1], _sections(config, where[1]), names))
    present = False
    for source, parser, names in sections:
        for name in names:
            if not parser.has_section(name):
                continue
            present = True
            values = parser[name]
            for key, setting in KEYS.items():
                if values.get(key) and setting not in found:
                    found[setting] = values[key].strip()
            if values.get("region") and "region" not in found:
                found["region"] = values["region"].strip()
            if "access_key_id" not in found and (kind := next((k for k in UNSUPPORTED if values.get(k)), None)):
                raise AwsProfileError(f"AWS profile {profile!r} in {source} uses {kind}, which tidegate does not "
                                      "support: give it aws_access_key_id and aws_secret_access_key, or set "
                                      "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if named and not present:
        raise AwsProfileError(f"AWS_PROFILE={profile} names no profile in {where[0]} or {where[1]}")
    if ("access_key_id" in found) != ("secret_access_key" in found):
        raise AwsProfileError(f"AWS profile {profile!r} has only one of aws_access_key_id and aws_secret_access_key")
    if env.get("AWS_ACCESS_KEY_ID"):  # the environment's credentials win, all of them
        for setting in KEYS.values():
            found.pop(setting, None)
    if env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"):
        found.pop("region", None)
    return found


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AwsProfileError(f"cannot read {path}: {exc.strerror}") from None


def shared_settings(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """profile_settings() for the profile and files the environment names (os.environ)."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    credentials = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials").expanduser()
    config = Path(env.get("AWS_CONFIG_FILE") or home / ".aws" / "config").expanduser()
    profile = env.get("AWS_PROFILE") or "default"
    return profile_settings(profile, _read(credentials), _read(config), env, named=bool(env.get("AWS_PROFILE")),
                            where=(str(credentials), str(config)))
