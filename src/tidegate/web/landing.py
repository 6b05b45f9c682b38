"""GET /: what this server is and how to use it, with configuration to copy and paste for pip,
uv, twine and `uv publish`, built from the URL the client used to get here. HTML for browsers,
plain text for curl and everything else."""

from __future__ import annotations

import html
import ipaddress
import re
from dataclasses import dataclass

from aiohttp import hdrs, web

from .. import __version__
from ..config import Settings
from .keys import SETTINGS, STORAGE
from .metrics import figures

VARY = {hdrs.VARY: "Accept"}
# A Host header is the client's to choose: a name, an IPv4 address or a bracketed IPv6 one, and
# a port; anything else is not used to build URLs.
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True)
class Section:
    title: str
    note: str
    code: str


def _nearest(request: web.Request, header: str) -> str:
    """The value the trusted front itself added: the last one, over every line of the header
    (a front that appends keeps whatever the client sent before it)."""
    values = [v.strip() for line in request.headers.getall(header, ()) for v in line.split(",")]
    return values[-1] if values else ""


def base_url(request: web.Request, settings: Settings) -> str:
    """scheme://host[:port] as the client used it: the request's own Host and scheme, or a
    trusted reverse proxy's X-Forwarded-Proto and X-Forwarded-Host."""
    scheme, host = request.scheme, request.host
    if settings.trusted_proxies and _trusted(request.remote, settings.trusted_proxies):
        proto = _nearest(request, "X-Forwarded-Proto").lower()
        forwarded = _nearest(request, "X-Forwarded-Host")
        scheme = proto if proto in ("http", "https") else scheme
        host = forwarded or host
    if not _valid_host(host):
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        address, port = (sockname[0], sockname[1]) if sockname else (settings.host, settings.port)
        host = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    return f"{scheme}://{host}"


def origin(request: web.Request) -> str:
    """base_url for any handler, a sub-application's too: never raises, unlike
    request.url.origin(), which yarl refuses to build for a Host such as x:99999."""
    return base_url(request, request.config_dict[SETTINGS])


def _valid_host(host: str | None) -> bool:
    match = _HOST.fullmatch(host or "")
    if match is None:
        return False
    port = match.group(1) or match.group(2)
    return port is None or 0 < int(port[1:]) <= 65535


def _trusted(remote: str | None, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    return any(address in network for network in networks)


def sections(base: str) -> list[Section]:
    index, legacy = f"{base}/simple/", f"{base}/legacy/"
    host = base.split("://", 1)[1]
    # pip ignores a plain-http index on another machine unless it is named a trusted host
    # (host:port is accepted).
    insecure = base.startswith("http://") and not host.startswith(_LOCAL_HOSTS)
    trusted = f"\ntrusted-host = {host}" if insecure else ""
    trusted_flag = f" --trusted-host {host}" if insecure else ""
    return [
        Section("pip", "Install through this index:", f"pip install --index-url {index}{trusted_flag} PACKAGE"),
        Section("pip.conf", "Or for every pip command (~/.config/pip/pip.conf, or /etc/pip.conf):",
                f"[global]\nindex-url = {index}{trusted}"),
        Section("uv", "Install with uv's pip interface:", f"uv pip install --index-url {index} PACKAGE"),
        Section("uv.toml", "Or for every uv command (~/.config/uv/uv.toml):",
                f'[[index]]\nname = "tidegate"\nurl = "{index}"\ndefault = true'),
        Section("pyproject.toml", "In a project (uv also publishes there with `uv publish --index tidegate`):",
                f'[[tool.uv.index]]\nname = "tidegate"\nurl = "{index}"\npublish-url = "{legacy}"\ndefault = true'),
        Section(".pypirc", "Upload with twine (`twine upload -r tidegate dist/*`); the password is prompted for:",
                f"[distutils]\nindex-servers = tidegate\n\n[tidegate]\nrepository = {legacy}\nusername = YOUR-USER"),
        Section("uv publish", "uv publishes through the legacy upload API (it has no Upload 2.0 client):",
                f"uv publish --publish-url {legacy} --check-url {index} -u YOUR-USER dist/*"),
        Section("tidegate upload", "Stage a release before publishing it (Upload 2.0, PEP 694):",
                f"tidegate upload --stage --repository {base} -u YOUR-USER dist/*"),
    ]


def human(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


async def landing(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    base = base_url(request, settings)
    held = await figures(request.app[STORAGE])
    upstreams = [u.display_url for u in settings.upstreams]  # never the credentials
    mode = " (offline: upstreams are not contacted)" if settings.offline else ""
    cache = (f"files: {held.cache_files['files']} ({human(held.cache_bytes['files'])}); "
             f"pages and metadata: {held.cache_files['pages']} ({human(held.cache_bytes['pages'])})")
    parts = sections(base)
    if "text/html" in request.headers.get(hdrs.ACCEPT, ""):
        body = render_html(base, parts, upstreams, mode, cache)
        return web.Response(text=body, content_type="text/html", headers=VARY)
    return web.Response(text=render_text(base, parts, upstreams, mode, cache), headers=VARY)


def render_text(base: str, parts: list[Section], upstreams: list[str], mode: str, cache: str) -> str:
    lines = [f"tidegate {__version__}: a caching proxy and staging index for Python packages", "",
             f"Index URL: {base}/simple/", "", f"Upstreams{mode}:"]
    lines += [f"  {url}" for url in upstreams] or ["  none"]
    lines += [f"Cache: {cache}", ""]
    for part in parts:
        lines += [f"== {part.title}: {part.note}", *(f"    {line}" for line in part.code.splitlines()), ""]
    return "\n".join(lines)


def render_html(base: str, parts: list[Section], upstreams: list[str], mode: str, cache: str) -> str:
    e = html.escape
    index = e(f"{base}/simple/")
    items = "".join(f"<li><code>{e(url)}</code></li>" for url in upstreams) or "<li>none</li>"
    blocks = "".join(f'<section><h2>{e(p.title)}</h2><p>{_inline_code(e(p.note))}</p><pre><code>{e(p.code)}</code>'
                     f'</pre></section>' for p in parts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>tidegate</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #1d2733; }}
h1 {{ font-size: 1.6rem; margin-bottom: 0; }} h2 {{ font-size: 1.1rem; margin: 1.4rem 0 .2rem; }}
.lead {{ color: #52606d; margin-top: .2rem; }} p {{ margin: .2rem 0; }}
pre {{ background: #f3f5f7; border: 1px solid #dde3e8; border-radius: 6px; padding: .6rem .8rem; overflow-x: auto; }}
code {{ font: 14px/1.45 ui-monospace, monospace; }} .index {{ font-size: 1.15rem; }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }} dt {{ font-weight: 600; }}
dd {{ margin: 0; }} ul {{ margin: 0; padding-left: 1.2rem; }}
</style></head>
<body>
<h1>tidegate</h1>
<p class="lead">A caching proxy, mirror and staging index for Python packages ({e(__version__)}).</p>
<dl>
<dt>Index URL</dt><dd class="index"><a href="{index}"><code id="index-url">{index}</code></a></dd>
<dt>Upstreams{e(mode)}</dt><dd><ul id="upstreams">{items}</ul></dd>
<dt>Cache</dt><dd id="cache">{e(cache)}</dd>
</dl>
{blocks}
</body></html>
"""


def _inline_code(escaped: str) -> str:
    """`command` in an (already escaped) note as <code>command</code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def routes() -> list[web.AbstractRouteDef]:
    return [web.get("/", landing)]
