"""The "real index" upstream of bench/realnet.py: a static tree that behaves like PyPI's
Simple API, and an nginx configuration to serve it.

* Both PEP 691 JSON (api-version 1.1) and PEP 503 HTML at the same URL, picked by `Accept`
  (`Vary: Accept`), with strong ETags and 304s (nginx's own).
* gzip: every page also exists pre-compressed at level 9 (gzip_static), as a CDN would keep
  it; anything else that nginx compresses on the fly uses gzip_comp_level 6.
* PEP 658/714 metadata for every real wheel: `<wheel>.metadata` next to the wheel, advertised
  with `core-metadata` / `data-dist-info-metadata` hashes; `requires-python` from METADATA;
  sizes and upload times from the files.
* Some pages padded to PyPI's biggest sizes (numpy, boto3: thousands of files, megabytes of
  JSON) with wheels no resolver on this machine can choose: CPython 2.6-3.8 ABIs on Windows,
  macOS and 32-bit Linux, some yanked, all at versions 0.x below the real releases. They have
  plausible hashes and sizes but are not on disk.

The real projects come from bench/harness.py's build_static_root (symlinks into /opt/pypi and
/opt/pypi-more, which are never written to: every project directory is replaced by a real one).
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import os
import random
import re
import time
import zipfile
from pathlib import Path

import harness

HREF_RE = re.compile(r'<a\s+href="([^"]+)"[^>]*>([^<]*)</a>')
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
# Wheel tags that cannot be installed by CPython 3.11 on Linux x86_64 (no abi3, no py3-none).
PAD_TAGS = [
    ("cp27", "cp27m", "win32"), ("cp27", "cp27m", "win_amd64"), ("cp27", "cp27mu", "manylinux1_i686"),
    ("cp27", "cp27m", "macosx_10_6_intel"), ("cp35", "cp35m", "win32"), ("cp35", "cp35m", "win_amd64"),
    ("cp36", "cp36m", "win32"), ("cp36", "cp36m", "win_amd64"), ("cp36", "cp36m", "manylinux1_i686"),
    ("cp37", "cp37m", "win32"), ("cp37", "cp37m", "macosx_10_9_x86_64"), ("cp38", "cp38", "win32"),
]
PAD_REQUIRES = {"cp27": ">=2.7, !=3.0.*, !=3.1.*, !=3.2.*, !=3.3.*", "cp35": ">=3.5", "cp36": ">=3.6",
                "cp37": ">=3.7", "cp38": ">=3.8"}


def _metadata_of(wheel: Path) -> bytes | None:
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            return zf.read(names[0]) if names else None
    except (OSError, zipfile.BadZipFile, KeyError):
        return None


def _requires_python(metadata: bytes) -> str | None:
    head = metadata.split(b"\n\n", 1)[0].decode("utf-8", "replace")
    m = re.search(r"^Requires-Python:\s*(.+)$", head, re.MULTILINE)
    return m.group(1).strip() if m else None


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1e6) % 1000000:06d}Z"


def _version(filename: str) -> str:
    return filename.split("-")[1]


def _real_entries(files: Path, page: Path) -> list[dict]:
    entries = []
    for href, text in HREF_RE.findall(page.read_text()):
        url, _, frag = html.unescape(href).partition("#")
        fn = text.strip()
        path = files / fn
        try:
            st = path.stat()
        except OSError:
            continue
        e = {"filename": fn, "url": url, "hashes": dict([frag.split("=", 1)]) if "=" in frag else {},
             "requires-python": None, "size": st.st_size, "upload-time": _iso(st.st_mtime), "yanked": False,
             "core-metadata": False, "data-dist-info-metadata": False}
        if fn.endswith(".whl"):
            md_path = files / (fn + ".metadata")
            md = md_path.read_bytes() if md_path.exists() else _metadata_of(path)
            if md is not None:
                if not md_path.exists():
                    md_path.write_bytes(md)
                h = {"sha256": hashlib.sha256(md).hexdigest()}
                e["core-metadata"] = e["data-dist-info-metadata"] = h
                e["requires-python"] = _requires_python(md)
        entries.append(e)
    return entries


def _padding(dist: str, rng: random.Random, min_files: int, min_bytes: int) -> list[dict]:
    """Wheels of old 0.x versions for foreign platforms, like the long tail of numpy's page."""
    out, size, minor, patch = [], 0, 1, 0
    t = 1262304000.0  # 2010-01-01
    while len(out) < min_files or size < min_bytes:
        version = f"0.{minor}.{patch}"
        patch += 1
        if patch > 9:
            minor, patch = minor + 1, 0
        yanked = "broken build" if rng.random() < 0.08 else False
        for py, abi, plat in PAD_TAGS:
            fn = f"{dist}-{version}-{py}-{abi}-{plat}.whl"
            digest = rng.randbytes(32).hex()
            blob = rng.randbytes(30).hex()
            md = rng.randbytes(32).hex()
            e = {"filename": fn, "url": f"../../files/packages/{digest[:2]}/{digest[2:4]}/{blob}/{fn}",
                 "hashes": {"sha256": digest}, "requires-python": PAD_REQUIRES[py],
                 "size": rng.randint(3_000_000, 16_000_000), "upload-time": _iso(t), "yanked": yanked,
                 "core-metadata": {"sha256": md}, "data-dist-info-metadata": {"sha256": md}}
            t += rng.randint(600, 3 * 86400)
            out.append(e)
            size += len(json.dumps(e)) + 2
    return out


def render_json(name: str, entries: list[dict]) -> bytes:
    versions = sorted({_version(e["filename"]) for e in entries})
    return json.dumps({"meta": {"api-version": "1.1"}, "name": name, "versions": versions, "files": entries},
                      separators=(",", ":")).encode()


def render_html(name: str, entries: list[dict]) -> bytes:
    lines = ['<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" content="1.1">',
             f"    <title>Links for {html.escape(name)}</title>\n  </head>\n  <body>",
             f"    <h1>Links for {html.escape(name)}</h1>"]
    for e in entries:
        frag = "".join(f"#{k}={v}" for k, v in list(e["hashes"].items())[:1])
        attrs = f'href="{html.escape(e["url"] + frag)}"'
        if e["requires-python"]:
            attrs += f' data-requires-python="{html.escape(e["requires-python"])}"'
        if e["core-metadata"]:
            md = f'sha256={e["core-metadata"]["sha256"]}'
            attrs += f' data-dist-info-metadata="{md}" data-core-metadata="{md}"'
        if e["yanked"] is not False:
            attrs += f' data-yanked="{html.escape(e["yanked"] if isinstance(e["yanked"], str) else "")}"'
        lines.append(f'    <a {attrs}>{html.escape(e["filename"])}</a><br />')
    lines.append("  </body>\n</html>\n")
    return "\n".join(lines).encode()


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    (path.parent / (path.name + ".gz")).write_bytes(gzip.compress(data, 9, mtime=0))


def build(root: Path, big_mb: int, padded: list[str], pad_files: int, pad_mb: float, seed: int = 691) -> dict:
    """Build the tree; returns project names, the big file's facts and each padded page's size."""
    info = harness.build_static_root(root, 0, big_mb)
    simple, files = root / "simple", root / "files"
    rng = random.Random(seed)
    pad_info = {}
    for d in sorted(simple.iterdir()):
        if not d.is_dir():
            continue
        entries = _real_entries(files, d / "index.html")
        if d.is_symlink():  # the project's directory in /opt/pypi: never write there
            d.unlink()
            d.mkdir()
        else:
            for f in d.iterdir():
                f.unlink()
        name = d.name
        if name in padded and entries:
            dist = entries[0]["filename"].split("-")[0]
            entries = entries + _padding(dist, rng, pad_files, int(pad_mb * 1e6))
        page = render_json(name, entries)
        _write(d / "index.json", page)
        _write(d / "index.html", render_html(name, entries))
        if name in padded:
            pad_info[name] = {"files": len(entries), "json_bytes": len(page),
                              "json_gz_bytes": (d / "index.json.gz").stat().st_size,
                              "html_bytes": (d / "index.html").stat().st_size}
    missing = [p for p in padded if p not in pad_info]
    if missing:
        raise RuntimeError(f"projects to pad are not in the index: {missing}")
    info["padded"] = pad_info
    return info


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes auto;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    types {{ text/html html; {json} json; }}
    default_type application/octet-stream;
    gzip on;
    gzip_static on;
    gzip_vary on;
    gzip_proxied any;
    gzip_comp_level 6;
    gzip_min_length 256;
    gzip_types {json};
    client_body_temp_path {tmp}/nginx-tmp/body;
    proxy_temp_path {tmp}/nginx-tmp/proxy;
    fastcgi_temp_path {tmp}/nginx-tmp/fastcgi;
    uwsgi_temp_path {tmp}/nginx-tmp/uwsgi;
    scgi_temp_path {tmp}/nginx-tmp/scgi;
    map $http_accept $simple_page {{
        default index.html;
        "~*application/vnd\\.pypi\\.simple\\.(v1|latest)\\+json" index.json;
    }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /simple/ {{
            index $simple_page;
            add_header Vary Accept;
        }}
        location /files/ {{ }}
    }}
}}
"""


def start_nginx(procs: harness.Procs, tmp: Path, root: Path, port: int) -> str:
    (tmp / "nginx-tmp").mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, root=root, port=port, json=JSON_TYPE))
    p = procs.start("nginx", ["nginx", "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "nginx-error.log")])
    base = f"http://127.0.0.1:{port}"
    harness.wait_http(base + "/files/", p, what="nginx")
    return base


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
