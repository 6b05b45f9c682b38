"""Typed settings. Precedence: command-line flags > TIDEGATE_* environment > TOML file > defaults.

Every problem is a ConfigError naming the key and what is wrong, which the CLI prints as one line.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.util
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from .passwords import is_hashed

DEFAULT_UPSTREAM = "https://pypi.org/simple/"
DEFAULT_PORT = 5780


class ConfigError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class Upstream:
    url: str  # ends with "/"
    name: str
    ttl: float = 600.0  # seconds a cached page is fresh before revalidation
    cooldown: float = 0.0  # hide files uploaded less than this many seconds ago
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    retries: int = 2
    max_connections: int = 32
    list_projects: bool = True  # its root list is part of ours (/simple/)

    @property
    def display_url(self) -> str:
        """The URL without credentials, for logs."""
        parts = urlsplit(self.url)
        if parts.username is None:
            return self.url
        port = f":{parts.port}" if parts.port else ""
        return parts._replace(netloc=f"{parts.hostname}{port}").geturl()


@dataclass(frozen=True)
class User:
    name: str
    password: str  # plaintext or a hash from `tidegate hash-password`
    upload: tuple[str, ...] = ()  # glob patterns of normalized project names

    def may_upload(self, project: str) -> bool:
        return any(fnmatch.fnmatchcase(project, pattern) for pattern in self.upload)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 0  # 0: one per CPU core
    data_dir: Path = field(default_factory=lambda: default_data_dir())
    offline: bool = False
    max_age: int = 600  # Cache-Control max-age on index pages
    # A client's no-cache / max-age=0 asks the upstream again only for a page confirmed longer
    # ago than this: pip up to 26.1 sends max-age=0 with every page request.
    min_refresh: float = 30.0
    files_max_size: int = 20 * 1024**3  # LRU-evict cached upstream files beyond this (files under data_dir only)
    # "s3://BUCKET/PREFIX": cached and uploaded files in an S3-compatible bucket (credentials and
    # region from the standard AWS environment); None: files under data_dir.
    blob_store: str | None = None
    s3_endpoint_url: str | None = None  # an S3-compatible server (SeaweedFS, MinIO, ...); None: AWS
    local_cache_size: int = 10 * 1024**3  # with blob_store: the local disk tier of hot files
    memory_cache: int = 64 * 1024**2  # rendered pages kept in each worker's memory
    pages_max_size: int = 8 * 1024**3  # page records and metadata files kept on disk
    max_page_size: int = 64 * 1024**2  # refuse upstream pages larger than this
    ca_bundle: str | None = None  # extra CA certificates for upstream TLS (corporate proxies)
    # postgresql://... : the local index, page cache and locks in PostgreSQL, shared by several
    # instances; None: SQLite and files under data_dir. Out of repr: it may hold a password.
    database_url: str | None = field(default=None, repr=False)
    # `tidegate import`: the Ed25519 public key every bundle must be signed with; None: none is
    # configured, and a signed bundle is refused unless --no-verify-signature says to take it.
    import_verify_key: Path | None = None
    log_level: str = "info"
    shutdown_timeout: float = 30.0  # on SIGTERM/SIGINT, in-flight requests get this long to finish
    client_timeout: float = 60.0  # a client sending nothing of its request for this long is cut off
    read_auth: bool = False  # require a configured user's credentials to read the index too
    metrics: bool = True  # serve /metrics (Prometheus) and count what happens for it
    metrics_auth: bool = False  # /metrics only for a configured user's credentials
    request_log: bool = True  # a line per request on the log (logger tidegate.access, level info)
    log_format: str = "text"  # "text" or "json" (one object per line)
    # Fronts (addresses or networks) trusted for X-Forwarded-For (the audit log's client address)
    # and X-Forwarded-Proto / X-Forwarded-Host (the URL the landing page's configuration uses).
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    session_lifetime: float = 7 * 86400.0  # a new publishing session expires after this long
    session_max_lifetime: float = 30 * 86400.0  # extensions never take a session beyond this age
    session_retention: float = 7 * 86400.0  # terminal sessions still report their status this long
    max_upload_size: int = 4 * 1024**3
    deferred_validation: int = 64 * 1024**2  # uploads larger than this are validated in the background (202)
    upstreams: tuple[Upstream, ...] = ()
    merge: tuple[str, ...] = ()  # projects (globs) whose files are merged across upstreams
    shadow: tuple[str, ...] = ()  # upstream project names (globs) that local uploads may shadow
    users: tuple[User, ...] = ()

    def user(self, name: str) -> User | None:
        return next((u for u in self.users if u.name == name), None)

    def may_shadow(self, project: str) -> bool:
        return any(fnmatch.fnmatchcase(project, pattern) for pattern in self.shadow)

    @functools.cached_property
    def cache_control(self) -> str:
        return f"public, max-age={self.max_age}"

    def effective_workers(self) -> int:
        return self.workers or (os.cpu_count() or 1)

    def merges(self, project: str) -> bool:
        return any(fnmatch.fnmatchcase(project, pattern) for pattern in self.merge)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "tidegate"


# --- value parsers: each takes (key, raw) and returns the typed value or raises ConfigError ---

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?")
_DURATION_UNITS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?", re.IGNORECASE)


def parse_duration(key: str, raw: Any) -> float:
    """Seconds from a number or a string such as "90", "10m", "1h30m", "3d"."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw >= 0:
        return float(raw)
    if isinstance(raw, str) and raw.strip():
        text, total, pos = raw.strip().lower(), 0.0, 0
        while pos < len(text):
            m = _DURATION.match(text, pos)
            if not m or m.end() == pos:
                break
            total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
            pos = m.end()
            while pos < len(text) and text[pos] == " ":
                pos += 1
        if pos == len(text):
            return total
    raise ConfigError(key, f"expected a duration such as 600, \"10m\" or \"3d\", got {raw!r}")


def parse_size(key: str, raw: Any) -> int:
    """Bytes from a number or a string such as "20GB", "512MiB"."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    if isinstance(raw, str):
        m = _SIZE.fullmatch(raw.strip())
        if m:
            unit = (m.group(2) or "b").lower()
            power = "bkmgt".index(unit[0])
            base = 1024 if "i" in unit or unit in ("k", "m", "g", "t") else 1000
            return int(float(m.group(1)) * base**power)
    raise ConfigError(key, f"expected a size such as 20GB or 512MiB, got {raw!r}")


def parse_bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(raw, str) and raw.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(key, f"expected true or false, got {raw!r}")


def parse_int(key: str, raw: Any, *, low: int = 0, high: int = 2**31) -> int:
    try:
        value = int(raw) if not isinstance(raw, bool) else None
    except (TypeError, ValueError):
        value = None
    if value is None or not low <= value <= high:
        raise ConfigError(key, f"expected a whole number from {low} to {high}, got {raw!r}")
    return value


def parse_str(key: str, raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(key, f"expected a non-empty string, got {raw!r}")
    return raw.strip()


def parse_pem_file(key: str, raw: Any) -> str:
    """A readable file of PEM certificates (checked now, not at the first upstream request)."""
    path = os.path.expanduser(parse_str(key, raw))
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise ConfigError(key, f"{path} holds no PEM certificate")
    return path


def parse_url(key: str, raw: Any) -> str:
    url = parse_str(key, raw)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f"expected an http:// or https:// URL, got {url!r}")
    return url if url.endswith("/") else url + "/"


def parse_blob_store(key: str, raw: Any) -> str:
    url = parse_str(key, raw)
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(key, f"expected s3://BUCKET/PREFIX, got {url!r}")
    if importlib.util.find_spec("obstore") is None:
        raise ConfigError(key, "an S3 blob store needs the S3 client: pip install 'tidegate[s3]'")
    from .storage.awsfiles import AwsProfileError, shared_settings

    try:
        shared_settings()  # an AWS profile that cannot be used is a bad setting, said at start-up
    except AwsProfileError as exc:
        raise ConfigError(key, str(exc)) from None
    return url


def parse_database_url(key: str, raw: Any) -> str:
    """A PostgreSQL URL, with its driver installed (an optional extra)."""
    url = parse_str(key, raw)
    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise ConfigError(key, "expected a postgresql://user:password@host:port/database URL")
    if importlib.util.find_spec("psycopg") is None or importlib.util.find_spec("psycopg_pool") is None:
        raise ConfigError(key, "PostgreSQL needs its driver: pip install 'tidegate[postgres]'")
    return url


def parse_networks(key: str, raw: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Addresses or CIDR networks, from a list or a comma- or space-separated string."""
    networks = []
    for item in parse_list(key, raw):
        try:
            networks.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError:
            raise ConfigError(key, f"expected IP addresses or networks such as 10.0.0.0/8, got {item!r}") from None
    return tuple(networks)


def parse_list(key: str, raw: Any) -> list[Any]:
    if isinstance(raw, str):  # from the environment: comma or whitespace separated
        return [item for item in re.split(r"[,\s]+", raw) if item]
    if not isinstance(raw, list):
        raise ConfigError(key, f"expected a list, got {raw!r}")
    return raw


# --- assembling Settings ---

_SCALARS = {
    "host": parse_str,
    "port": lambda k, v: parse_int(k, v, low=0, high=65535),
    "workers": lambda k, v: parse_int(k, v, low=0, high=256),
    "data_dir": lambda k, v: Path(parse_str(k, v)).expanduser(),
    "offline": parse_bool,
    "max_age": lambda k, v: int(parse_duration(k, v)),
    "min_refresh": parse_duration,
    "files_max_size": parse_size,
    "blob_store": lambda k, v: parse_blob_store(k, v),
    "s3_endpoint_url": lambda k, v: parse_url(k, v).rstrip("/"),
    "local_cache_size": parse_size,
    "memory_cache": parse_size,
    "pages_max_size": parse_size,
    "max_page_size": parse_size,
    "ca_bundle": lambda k, v: parse_pem_file(k, v),
    "database_url": lambda k, v: parse_database_url(k, v),
    "import_verify_key": lambda k, v: Path(parse_str(k, v)).expanduser(),
    "log_level": lambda k, v: _choice(k, v, ("debug", "info", "warning", "error")),
    "shutdown_timeout": parse_duration,
    "client_timeout": parse_duration,
    "read_auth": parse_bool,
    "trusted_proxies": parse_networks,
    "metrics": parse_bool,
    "metrics_auth": parse_bool,
    "request_log": parse_bool,
    "log_format": lambda k, v: _choice(k, v, ("text", "json")),
    "session_lifetime": parse_duration,
    "session_max_lifetime": parse_duration,
    "session_retention": parse_duration,
    "max_upload_size": parse_size,
    "deferred_validation": parse_size,
}
_TABLES = ("upstreams", "merge", "shadow", "users")
_UPSTREAM_KEYS = {
    "url", "name", "ttl", "cooldown", "username", "password", "timeout", "retries", "max_connections",
    "list_projects",
}
_USER_KEYS = {"name", "password", "upload"}


def _choice(key: str, raw: Any, options: tuple[str, ...]) -> str:
    value = parse_str(key, raw).lower()
    if value not in options:
        raise ConfigError(key, f"expected one of {', '.join(options)}, got {raw!r}")
    return value


def _upstream(key: str, raw: Any, index: int) -> Upstream:
    if isinstance(raw, str):
        raw = {"url": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(key, "expected a table with at least a url")
    unknown = set(raw) - _UPSTREAM_KEYS
    if unknown:
        raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown key")
    if "url" not in raw:
        raise ConfigError(f"{key}.url", "missing")
    url = parse_url(f"{key}.url", raw["url"])
    _check_simple_url(f"{key}.url", url)
    return Upstream(
        url=url,
        name=parse_str(f"{key}.name", raw["name"]) if "name" in raw else _default_name(url),
        ttl=parse_duration(f"{key}.ttl", raw.get("ttl", 600)),
        cooldown=parse_duration(f"{key}.cooldown", raw.get("cooldown", 0)),
        username=parse_str(f"{key}.username", raw["username"]) if "username" in raw else None,
        password=parse_str(f"{key}.password", raw["password"]) if "password" in raw else None,
        timeout=parse_duration(f"{key}.timeout", raw.get("timeout", 30)) or 30.0,
        retries=parse_int(f"{key}.retries", raw.get("retries", 2), low=0, high=10),
        max_connections=parse_int(f"{key}.max_connections", raw.get("max_connections", 32), low=1, high=1024),
        list_projects=parse_bool(f"{key}.list_projects", raw.get("list_projects", True)),
    )


# Hosts whose simple index is known to live at /simple/ only: anything else there cannot work.
SIMPLE_AT = {"pypi.org": "/simple/", "www.pypi.org": "/simple/", "test.pypi.org": "/simple/"}


def _check_simple_url(key: str, url: str) -> None:
    parts = urlsplit(url)
    expected = SIMPLE_AT.get(parts.hostname or "")
    if expected and parts.path != expected:
        fixed = parts._replace(path=expected, query="", fragment="").geturl()
        raise ConfigError(key, f"{url} is not {parts.hostname}'s package index; did you mean {fixed}?")


def _default_name(url: str) -> str:
    """host[:port]/path of an upstream URL, without credentials: readable in logs, and unique."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname}{port}{parts.path.rstrip('/')}"


def _user(key: str, raw: Any) -> User:
    if not isinstance(raw, Mapping):
        raise ConfigError(key, "expected a table with name, password and upload")
    unknown = set(raw) - _USER_KEYS
    if unknown:
        raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown key")
    for required in ("name", "password"):
        if required not in raw:
            raise ConfigError(f"{key}.{required}", "missing")
    name = parse_str(f"{key}.name", raw["name"])
    if ":" in name:
        raise ConfigError(f"{key}.name", "must not contain ':' (HTTP Basic uses it as the separator)")
    if name == "__token__":
        raise ConfigError(f"{key}.name", "__token__ is the user name of API tokens; choose another")
    password = raw["password"]
    if not isinstance(password, str) or not password:
        raise ConfigError(f"{key}.password", "expected a non-empty string")
    if password.startswith("pbkdf2_sha256$") and not is_hashed(password):
        raise ConfigError(f"{key}.password", "malformed hash; make one with `tidegate hash-password`")
    patterns = parse_list(f"{key}.upload", raw.get("upload", []))
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{key}.upload", f"expected project name patterns, got {pattern!r}")
    return User(name=name, password=password, upload=tuple(p.lower() for p in patterns))


def load_file(path: str | os.PathLike) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None


def from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    """TIDEGATE_<KEY> for every scalar key, plus TIDEGATE_UPSTREAM (space or comma separated)."""
    values: dict[str, Any] = {}
    for key in _SCALARS:
        env = "TIDEGATE_" + key.upper()
        if env in environ:
            values[key] = environ[env]
    if environ.get("TIDEGATE_UPSTREAM"):
        values["upstreams"] = parse_list("TIDEGATE_UPSTREAM", environ["TIDEGATE_UPSTREAM"])
    return values


def build(*layers: Mapping[str, Any]) -> Settings:
    """Settings from raw layers, lowest precedence first; a later layer replaces a key whole."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if v is not None})
    unknown = set(merged) - set(_SCALARS) - set(_TABLES)
    if unknown:
        raise ConfigError(sorted(unknown)[0], "unknown setting (`tidegate config` prints them all)")
    values: dict[str, Any] = {key: parse(key, merged[key]) for key, parse in _SCALARS.items() if key in merged}
    raw_upstreams = parse_list("upstreams", merged.get("upstreams", [DEFAULT_UPSTREAM]))
    upstreams = tuple(_upstream(f"upstreams[{i}]", raw, i) for i, raw in enumerate(raw_upstreams))
    names = [u.name for u in upstreams]
    if len(set(names)) != len(names):
        raise ConfigError("upstreams", "the same upstream is listed twice, or two share a `name`")
    merge = tuple(str(p).lower() for p in parse_list("merge", merged.get("merge", [])))
    shadow = tuple(str(p).lower() for p in parse_list("shadow", merged.get("shadow", [])))
    users = tuple(_user(f"users[{i}]", raw) for i, raw in enumerate(parse_list("users", merged.get("users", []))))
    if len({u.name for u in users}) != len(users):
        raise ConfigError("users", "two users have the same name")
    return Settings(**values, upstreams=upstreams, merge=merge, shadow=shadow, users=users)


def load(config_file: str | None, environ: Mapping[str, str], flags: Mapping[str, Any]) -> Settings:
    file_values = load_file(config_file) if config_file else {}
    return build(file_values, from_environ(environ), flags)
