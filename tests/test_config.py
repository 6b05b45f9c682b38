"""Settings: precedence, parsing, and one clear line per mistake."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tidegate.config import ConfigError, build, from_environ, load, parse_duration, parse_size
from tidegate.passwords import hash_password, verify_password

EXAMPLE = Path(__file__).parent.parent / "config" / "tidegate.toml"


def test_example_config_loads_and_documents_every_setting():
    settings = load(str(EXAMPLE), {}, {})
    assert settings.upstreams[0].url == "https://pypi.org/simple/"
    text = EXAMPLE.read_text()
    for key in ("host", "port", "workers", "data_dir", "offline", "max_age", "files_max_size",
                "memory_cache", "max_page_size", "ca_bundle", "database_url", "log_level", "merge", "upstreams", "users",
                "ttl", "cooldown", "timeout", "retries", "max_connections", "username", "password", "upload",
                "blob_store", "s3_endpoint_url", "local_cache_size"):
        assert key in text, key


def test_precedence_flags_over_env_over_file(tmp_path):
    cfg = tmp_path / "t.toml"
    cfg.write_text('port = 1000\nhost = "0.0.0.0"\noffline = true\nupstreams = ["http://file.example/simple"]\n')
    env = {"TIDEGATE_PORT": "2000", "TIDEGATE_UPSTREAM": "http://env1.example/simple/ http://env2.example/"}
    s = load(str(cfg), env, {"port": 3000})
    assert s.port == 3000
    assert s.host == "0.0.0.0"
    assert s.offline is True
    assert [u.url for u in s.upstreams] == ["http://env1.example/simple/", "http://env2.example/"]
    s = load(str(cfg), {}, {"upstreams": ["http://flag.example/simple/"]})
    assert [u.url for u in s.upstreams] == ["http://flag.example/simple/"]
    assert load(str(cfg), env, {}).port == 2000


def test_defaults():
    s = build({})
    assert s.upstreams[0].url == "https://pypi.org/simple/"
    assert s.max_age == 600 and not s.offline


@pytest.mark.parametrize(
    "layer, key",
    [
        ({"port": "abc"}, "port"),
        ({"port": 70000}, "port"),
        ({"offline": "maybe"}, "offline"),
        ({"upstreams": ["ftp://x/"]}, "upstreams[0].url"),
        ({"upstreams": [{"url": "http://a/", "cooldown": "soon"}]}, "upstreams[0].cooldown"),
        ({"upstreams": [{"url": "http://a/", "colour": "red"}]}, "upstreams[0].colour"),
        ({"upstreams": [{"name": "x"}]}, "upstreams[0].url"),
        ({"files_max_size": "lots"}, "files_max_size"),
        ({"blob_store": "/srv/blobs"}, "blob_store"),
        ({"blob_store": "s3://"}, "blob_store"),
        ({"s3_endpoint_url": "seaweed:8333"}, "s3_endpoint_url"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"users": [{"name": "a"}]}, "users[0].password"),
        ({"users": [{"name": "a:b", "password": "x"}]}, "users[0].name"),
        ({"users": [{"name": "a", "password": "x", "upload": [3]}]}, "users[0].upload"),
        ({"users": [{"name": "a", "password": "pbkdf2_sha256$bad"}]}, "users[0].password"),
        ({"users": [{"name": "a", "password": "x"}, {"name": "a", "password": "y"}]}, "users"),
        ({"upstreams": ["http://a.example/", "http://a.example"]}, "upstreams"),
        ({"log_format": "xml"}, "log_format"),
        ({"metrics_auth": "perhaps"}, "metrics_auth"),
        ({"trusted_proxies": ["10.0.0.0/33"]}, "trusted_proxies"),
    ],
)
def test_errors_name_the_key(layer, key):
    with pytest.raises(ConfigError) as info:
        build(layer)
    assert info.value.key == key
    assert "\n" not in str(info.value)


def test_durations_and_sizes():
    assert parse_duration("k", "1h30m") == 5400
    assert parse_duration("k", "3d") == 259200
    assert parse_duration("k", 12) == 12
    assert parse_size("k", "20GiB") == 20 * 1024**3
    assert parse_size("k", "20GB") == 20 * 1000**3
    assert parse_size("k", "512MiB") == 512 * 1024**2


def test_users_and_passwords():
    hashed = hash_password("s3cret", iterations=1000)
    s = build({"users": [{"name": "ci", "password": hashed, "upload": ["acme-*", "Tools"]}]})
    user = s.users[0]
    assert verify_password("s3cret", user.password) and not verify_password("nope", user.password)
    assert verify_password("plain", "plain") and not verify_password("plain", "other")
    assert user.may_upload("acme-core") and user.may_upload("tools") and not user.may_upload("numpy")


@pytest.mark.parametrize("user, key", [
    ({"name": "__token__", "password": "x"}, "users[0].name"),  # the API tokens' user name
    ({"name": "ci", "password": "pbkdf2_sha256$\u00b2$salt$hash"}, "users[0].password"),  # int() refuses "²"
    ({"name": "ci", "password": "pbkdf2_sha256$0$salt$hash"}, "users[0].password"),
])
def test_users_that_could_never_log_in_are_refused(user, key):
    # Found in review: such entries loaded, then failed (or answered 500) at every login.
    with pytest.raises(ConfigError) as info:
        build({"users": [user]})
    assert key in str(info.value)


def test_cli_bad_setting_exits_2_with_one_line(tmp_path):
    env = {**os.environ, "TIDEGATE_PORT": "not-a-port"}
    proc = subprocess.run([sys.executable, "-m", "tidegate", "serve", "--data-dir", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "port" in proc.stderr


def test_cli_help_documents_flags():
    out = subprocess.run([sys.executable, "-m", "tidegate", "serve", "--help"], capture_output=True, text=True, timeout=60).stdout
    for flag in ("--config", "--host", "--port", "--data-dir", "--upstream", "--offline", "--workers"):
        assert flag in out


def test_ca_bundle_is_checked_when_loading(tmp_path):
    with pytest.raises(ConfigError) as info:
        build({"ca_bundle": str(tmp_path / "missing.pem")})
    assert info.value.key == "ca_bundle"
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError):
        build({"ca_bundle": str(junk)})
    system = "/etc/ssl/certs/ca-certificates.crt"
    if os.path.exists(system):
        assert build({"ca_bundle": system}).ca_bundle == system


def test_tidegate_config_prints_the_documented_file_which_an_installed_wheel_ships():
    out = subprocess.run([sys.executable, "-m", "tidegate", "config"], capture_output=True, text=True, check=True).stdout
    packaged = Path(__file__).parent.parent / "src" / "tidegate" / "tidegate.toml"
    assert packaged.read_text() == EXAMPLE.read_text(), (
        "config/tidegate.toml and src/tidegate/tidegate.toml (what `tidegate config` prints) must be the same file")
    assert out == EXAMPLE.read_text()
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert 'tidegate = ["tidegate.toml"]' in pyproject  # package data: in the wheel


def test_help_and_errors_never_point_at_a_checkout_path():
    helps = [subprocess.run([sys.executable, "-m", "tidegate", *cmd, "--help"], capture_output=True, text=True,
                            check=True).stdout for cmd in ([], ["serve"], ["upload"], ["token"], ["config"])]
    assert all("config/tidegate.toml" not in text for text in helps)
    with pytest.raises(ConfigError) as exc:
        build({"no_such_setting": 1})
    assert "config/tidegate.toml" not in str(exc.value) and "tidegate config" in str(exc.value)


@pytest.mark.parametrize("url", ["https://pypi.org/", "https://pypi.org", "https://pypi.org/pypi/",
                                 "https://test.pypi.org/"])
def test_a_pypi_url_that_is_not_its_simple_index_gets_a_hint(url):
    with pytest.raises(ConfigError) as exc:
        build({"upstreams": [url]})
    assert "did you mean https://" in str(exc.value) and "/simple/?" in str(exc.value)
    proc = subprocess.run([sys.executable, "-m", "tidegate", "serve", "--upstream", url, "--data-dir", "/nonexistent"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "did you mean" in proc.stderr


def test_trusted_proxies_are_addresses_or_networks():
    s = build({"trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "::1"]})
    assert [str(n) for n in s.trusted_proxies] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert [str(n) for n in load(None, {"TIDEGATE_TRUSTED_PROXIES": "10.1.0.0/16, 10.2.0.0/16"}, {}).trusted_proxies] == [
        "10.1.0.0/16", "10.2.0.0/16"]
    with pytest.raises(ConfigError, match="trusted_proxies: expected IP addresses or networks"):
        build({"trusted_proxies": ["nginx"]})


def test_a_verified_hashed_password_is_remembered_for_a_while(monkeypatch):
    from tidegate import passwords

    calls = []
    real = passwords.verify_password
    monkeypatch.setattr(passwords, "verify_password", lambda p, s: calls.append(p) or real(p, s))
    now = [0.0]
    cache = passwords.VerifiedPasswords(ttl=60, size=2, clock=lambda: now[0])
    stored = hash_password("s3cret", iterations=1000)
    assert cache.verify("s3cret", stored) and cache.verify("s3cret", stored)
    assert calls == ["s3cret"]  # PBKDF2 once
    assert not cache.verify("wrong", stored) and not cache.verify("wrong", stored)
    assert calls == ["s3cret", "wrong", "wrong"]  # a failure is never remembered
    assert not cache.verify("s3cret", hash_password("other", iterations=1000))  # a changed hash: checked again
    now[0] = 61.0
    assert cache.verify("s3cret", stored) and calls[-1] == "s3cret" and len(calls) == 5  # expired: checked again
    assert cache.verify("plain", "plain") and not cache.verify("plain", "other")
def test_operations_settings_from_file_and_environment():
    settings = build({"log_format": "json", "metrics_auth": True},
                     from_environ({"TIDEGATE_REQUEST_LOG": "0", "TIDEGATE_METRICS": "false"}))
    assert settings.log_format == "json" and settings.metrics_auth
    assert not settings.request_log and not settings.metrics


def test_database_url_from_file_environment_and_flag(tmp_path):
    cfg = tmp_path / "t.toml"
    cfg.write_text('database_url = "postgresql://file@db.example/tidegate"\n')
    assert load(str(cfg), {}, {}).database_url == "postgresql://file@db.example/tidegate"
    env = {"TIDEGATE_DATABASE_URL": "postgresql://env:secret@db.example/tidegate"}
    settings = load(str(cfg), env, {})
    assert settings.database_url == "postgresql://env:secret@db.example/tidegate"
    assert "secret" not in repr(settings)  # never in a log line that prints the settings
    assert load(str(cfg), env, {"database_url": "postgres://flag@db/x"}).database_url == "postgres://flag@db/x"
    assert build().database_url is None  # default: SQLite under the data dir
    with pytest.raises(ConfigError) as exc:
        build({"database_url": "mysql://user:secret@db/x"})
    assert exc.value.key == "database_url" and "secret" not in str(exc.value)
