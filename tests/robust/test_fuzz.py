"""Property-based fuzzing of every surface a client or an upstream controls: Accept, Range, URL
paths, queries, upload JSON, multipart bodies, and upstream pages (HTML and JSON). Whatever is
sent, the answer is never a 5xx (502 only for an upstream's unusable page), always well formed,
and the log gets no traceback. Each family's case count is printed at the end of the module."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from support.dists import build_wheel
from support.fakeindex import FakeIndex, RunningFakeIndex
from support.threaded import LoopThread, start_tidegate
from tidegate.readpath.pages import public_view
from tidegate.simple.html_page import parse_project_html, render_project_html
from tidegate.simple.json_page import parse_project_json, render_project_json

CASES = 150  # per family; the whole module runs in well under a minute
FUZZ = settings(max_examples=CASES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
AUTH = "Basic " + base64.b64encode(b"ci:s3cret").decode()
SIMPLE_TYPES = ("text/html", "application/vnd.pypi.simple.v1+json", "application/vnd.pypi.simple.v1+html")

cases: Counter[str] = Counter()
fives: Counter[tuple[str, int]] = Counter()  # (family, status)


class Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


class Servers:
    def __init__(self, tmp: Path) -> None:
        self.thread = LoopThread()
        self.index = FakeIndex()
        self.wheel = build_wheel(tmp, "demo", "1.0", padding=5000)
        self.index.add(self.wheel)
        self.running = self.thread.run(RunningFakeIndex.start(self.index))
        users = [{"name": "ci", "password": "s3cret", "upload": ["*"]}]
        self.runner, self.port = self.thread.run(start_tidegate({
            "data_dir": str(tmp / "data"), "workers": 1, "users": users,
            "upstreams": [{"url": self.running.url, "timeout": 2, "retries": 0}]}))

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None,
                family: str = "") -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            r = conn.getresponse()
            data = r.read()
            result = r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()
        if family:
            cases[family] += 1
            if result[0] >= 500:
                fives[family, result[0]] += 1
        return result

    def close(self) -> None:
        self.thread.run(self.runner.cleanup())
        self.thread.run(self.running.close())
        self.thread.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    catcher = Tracebacks()
    logging.getLogger().addHandler(catcher)
    s = Servers(tmp_path_factory.mktemp("fuzz"))
    status, _, _ = s.request("GET", "/simple/demo/")  # the page and the file cached, as most are
    assert status == 200
    assert s.request("GET", f"/files/demo/{s.wheel.name}")[0] == 200
    yield s
    s.close()
    logging.getLogger().removeHandler(catcher)
    lines = [f"fuzz {family}: {n} cases, 5xx: {dict((s, c) for (f, s), c in fives.items() if f == family) or 0}"
             for family, n in sorted(cases.items())]
    lines.append(f"fuzz tracebacks logged: {len(catcher.records)}")
    print("\n" + "\n".join(lines), file=sys.__stdout__)
    assert not catcher.records, [r.getMessage() for r in catcher.records[:5]]


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=200)
media_type = st.sampled_from(list(SIMPLE_TYPES) + ["*/*", "text/*", "application/*", "application/json",
                                                   "application/vnd.pypi.simple.latest+json", "image/png", ""])
accept = st.one_of(
    header_text,
    st.lists(st.tuples(media_type, st.one_of(st.none(), st.one_of(st.floats(-2, 3).map(str), st.sampled_from(["nan", "inf", "1e999", "0.0001", "1.0000"])), header_text)),
             max_size=6).map(lambda items: ", ".join(t if q is None else f"{t};q={q}" for t, q in items)),
)


@FUZZ
@given(accept=accept, fmt=st.one_of(st.none(), media_type, header_text))
def test_accept_and_format(servers, accept, fmt):
    path = "/simple/demo/" + ("" if fmt is None else "?format=" + quote(fmt, safe=""))
    status, headers, body = servers.request("GET", path, {"Accept": accept}, family="accept")
    assert status in (200, 406), (status, body[:200])
    assert "accept" in headers.get("vary", "").lower()
    if status == 200:
        assert headers["content-type"].split(";")[0] in SIMPLE_TYPES
        if "json" in headers["content-type"]:
            assert json.loads(body)["name"] == "demo"
        else:
            assert b"demo-1.0-py3-none-any.whl" in body


range_spec = st.one_of(
    header_text,
    st.lists(st.tuples(st.one_of(st.none(), st.integers(-10, 10**7)), st.one_of(st.none(), st.integers(-10, 10**7))),
             min_size=1, max_size=3).map(
        lambda rs: "bytes=" + ",".join(f"{'' if a is None else a}-{'' if b is None else b}" for a, b in rs)),
)


@FUZZ
@given(spec=range_spec, if_range=st.one_of(st.none(), header_text))
def test_range(servers, spec, if_range):
    data = servers.wheel.read_bytes()
    headers = {"Range": spec} | ({"If-Range": if_range} if if_range is not None else {})
    status, got, body = servers.request("GET", f"/files/demo/{servers.wheel.name}", headers, family="range")
    assert status in (200, 206, 416), status
    if status == 200:
        assert body == data
    if status == 206:
        first, last = map(int, got["content-range"].removeprefix("bytes ").split("/")[0].split("-"))
        assert got["content-range"].endswith(f"/{len(data)}") and body == data[first:last + 1]
    if status == 416:
        assert got["content-range"] == f"bytes */{len(data)}"


segment = st.one_of(st.text(max_size=300), st.sampled_from(["..", ".", "%2e%2e", "demo", "demo-1.0-py3-none-any.whl",
                                                           "%00", "a" * 300, "simple", "files", "stage"]))


@FUZZ
@given(parts=st.lists(segment, max_size=5), slash=st.booleans(), query=st.one_of(st.none(), st.text(max_size=200)))
def test_url_paths_and_queries(servers, parts, slash, query):
    path = "/" + "/".join(p if p.startswith("%") else quote(p, safe="") for p in parts) + ("/" if slash else "")
    if query is not None:
        path += "?" + quote(query, safe="=&")
    for method in ("GET", "HEAD"):
        status, headers, body = servers.request(method, path, family="url")
        assert status < 500, (path, status, body[:200])
        if 300 <= status < 400:
            assert headers["location"].startswith(("/", "http://127.0.0.1"))


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4),
    max_leaves=20,
)
upload_doc = st.fixed_dictionaries({}, optional={
    "meta": st.one_of(json_value, st.just({"api-version": "2.0"})),
    "name": st.one_of(json_value, st.sampled_from(["demo", "a" * 300, "-bad-", "ok"])),
    "version": st.one_of(json_value, st.sampled_from(["1.0", "not a version", ""])),
    "filename": st.one_of(json_value, st.just("demo-1.0-py3-none-any.whl")),
    "size": st.one_of(json_value, st.integers(-1, 2**70)),
    "hashes": json_value, "mechanism": json_value, "nonce": json_value,
})


@FUZZ
@given(doc=st.one_of(upload_doc, json_value), raw=st.one_of(st.none(), st.binary(max_size=300)),
       endpoint=st.sampled_from(["/upload/", "/upload/session/nonexistent", "/upload/session/x/files",
                                 "/upload/session/x/publish", "/upload/session/x/extend"]),
       ctype=st.sampled_from(["application/vnd.pypi.upload.v2+json", "application/json", "text/plain", ""]))
def test_upload_json(servers, doc, raw, endpoint, ctype):
    body = raw if raw is not None else json.dumps(doc).encode()
    status, headers, answer = servers.request("POST", endpoint, {"Authorization": AUTH, "Content-Type": ctype}, body,
                                              family="upload-json")
    assert status < 500, (status, answer[:300])
    if status >= 400:
        assert headers["content-type"].startswith("application/problem+json")
        problem = json.loads(answer)
        assert problem["status"] == status and problem["detail"]
    elif status == 201:  # a session that was really opened: cancel it again
        token = json.loads(answer)["session-token"]
        servers.request("DELETE", f"/upload/session/{token}", {"Authorization": AUTH})


part_header = st.one_of(
    st.binary(max_size=100).filter(lambda b: b"\r\n" not in b),
    st.sampled_from([b'Content-Disposition: form-data; name="content"; filename="demo-1.0.tar.gz"',
                     b'Content-Disposition: form-data; name=":action"', b'Content-Disposition: form-data',
                     b"Content-Type: application/octet-stream", b"no colon", b": x", b"Content-Length: -5",
                     b'Content-Disposition: form-data; name="content"; filename*=utf-8\'\'%00%ff']),
)
multipart_part = st.tuples(st.lists(part_header, max_size=3), st.binary(max_size=200))


@FUZZ
@given(parts=st.lists(multipart_part, max_size=4), boundary=st.sampled_from(["B", "x" * 70, "a b", ""]),
       end=st.booleans())
def test_multipart(servers, parts, boundary, end):
    sep = boundary.encode()
    body = b"".join(b"--" + sep + b"\r\n" + b"\r\n".join(h) + b"\r\n\r\n" + value + b"\r\n" for h, value in parts)
    body += b"--" + sep + b"--\r\n" if end else b""
    headers = {"Authorization": AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    status, got, answer = servers.request("POST", "/legacy/", headers, body, family="multipart")
    assert 400 <= status < 500, (status, answer[:300])
    assert answer.decode().count("\n") == 1, answer  # one line


html_piece = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["<a ", "<a href=\"", "\">", "</a>", "<base href=\"", "<!--", "-->", "<meta ", "&amp;", "&#0;",
                     "data-requires-python=\"&gt;=3\"", "data-yanked", "#sha256=", "../../files/x-1.0.tar.gz",
                     "x-1.0.tar.gz", "<script>", "</script>", "http://h/x-1.0-py3-none-any.whl"]),
)
html_page = st.lists(html_piece, max_size=40).map("".join)
json_page = st.one_of(
    json_value.map(json.dumps),
    st.fixed_dictionaries({"meta": st.one_of(json_value, st.just({"api-version": "1.1"})),
                           "files": st.lists(st.fixed_dictionaries({}, optional={
                               "filename": st.one_of(json_value, st.just("x-1.0.tar.gz")),
                               "url": st.one_of(json_value, st.just("../../f/x-1.0.tar.gz")),
                               "hashes": json_value, "size": json_value, "yanked": json_value,
                               "requires-python": json_value, "upload-time": json_value,
                               "core-metadata": json_value, "provenance": json_value}), max_size=4)},
                          optional={"versions": json_value, "name": json_value, "project-status": json_value,
                                    "alternate-locations": json_value}).map(json.dumps),
)


@settings(max_examples=CASES * 4, deadline=None, derandomize=True)
@given(page=st.one_of(html_page.map(lambda p: ("html", p)), json_page.map(lambda p: ("json", p))))
def test_upstream_pages_parse_or_refuse_and_render_again(page):
    kind, text = page
    cases["upstream page (parser)"] += 1
    parse = parse_project_html if kind == "html" else parse_project_json
    try:
        project = parse(text.encode("utf-8", "surrogatepass"), "https://up.example/simple/x/", "x")
    except ValueError:
        return  # refused: the proxy answers 502 (or serves its stale copy)
    # Whatever was kept renders in both formats, and each parses back to the same files. HTML
    # takes a file's name from its link, so it is checked on what clients get: the public view,
    # whose links are ours (an upstream's JSON link need not end in the filename).
    again = parse_project_json(render_project_json(project), "https://up.example/simple/x/", "x")
    assert [f.filename for f in again.files] == [f.filename for f in project.files]
    served = public_view(project)
    html = parse_project_html(render_project_html(served), "https://up.example/simple/x/", "x")
    assert [f.filename for f in html.files] == [f.filename for f in served.files]


@settings(max_examples=CASES // 3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(page=st.one_of(html_page.map(lambda p: ("text/html", p)),
                      json_page.map(lambda p: ("application/vnd.pypi.simple.v1+json", p))),
       n=st.integers(0, 10**9))
def test_upstream_pages_through_the_proxy(servers, page, n):
    ctype, text = page
    name = f"fuzzed-{n}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"
    servers.index.raw_pages[name] = (ctype, text.encode("utf-8", "surrogatepass"))
    for accept in ("text/html", "application/vnd.pypi.simple.v1+json"):
        status, headers, body = servers.request("GET", f"/simple/{name}/", {"Accept": accept}, family="upstream page")
        assert status in (200, 404, 502), (status, body[:300])
        if status == 200 and "json" in headers["content-type"]:
            assert json.loads(body)["name"] == name
