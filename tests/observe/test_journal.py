"""The journal: answered requests recorded as plain tuples, handed in batches to the metrics
and the request log, with the line's figures as the request saw them."""

from __future__ import annotations

import re

from tidegate.observe.journal import Entry, Journal, Route
from tidegate.observe.metrics import Figures, Metrics
from tidegate.observe.requestlog import RequestLog

PAGE = Route("/simple/{project}/", "page", None, False)
STAGE = Route("/stage/{token}/simple/", "page", None, True)
FILE = Route("/files/{project}/{filename}", "file", None, False)
LEGACY = Route("/legacy/", "other", "legacy", False)


def entry(**fields) -> tuple:
    values = dict(start=10.0, end=10.0123456, peer=("10.1.2.3", 50312), method="GET", target="/simple/demo/?x=1",
                  route=PAGE, filename=None, status=200, sent=9562, cache="hit", upstreams=None)
    values.update(fields)
    return tuple(Entry(**values))  # a plain tuple, as the middleware appends


def test_a_batch_becomes_lines_in_order_with_exact_figures(capsys):
    journal = Journal(None, RequestLog("text"))
    journal.record(entry())
    journal.record(entry(end=10.0 + 1234.56789, target="/stage/sEcReT/simple/", route=STAGE, status=404, sent=0,
                         cache=None, upstreams="pypi,mirror"))
    journal.record(entry(end=10.000001, peer=None, method="HEAD"))
    assert capsys.readouterr().err == ""  # nothing is written while requests are answered
    journal.flush()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ INFO tidegate.access: "
    assert re.fullmatch(stamp + r'10\.1\.2\.3 "GET /simple/demo/" 200 9562 12\.35ms cache=hit upstream=-', lines[0])
    assert re.fullmatch(stamp + r'10\.1\.2\.3 "GET /stage/<token>/simple/" 404 0 1234567\.89ms cache=- '
                        r'upstream=pypi,mirror', lines[1]), lines[1]
    assert re.fullmatch(stamp + r'- "HEAD /simple/demo/" 200 9562 0\.00ms cache=hit upstream=-', lines[2])
    journal.flush()  # an empty batch writes nothing
    assert capsys.readouterr().err == ""


def test_a_batch_is_summed_for_the_metrics_by_route_kind_and_outcome():
    metrics = Metrics()
    journal = Journal(metrics, None)
    for _ in range(3):
        journal.record(entry())
    journal.record(entry(route=FILE, filename="demo-1.0-py3-none-any.whl.metadata", sent=100, cache="miss"))
    journal.record(entry(route=LEGACY, method="POST", status=400, cache=None))
    journal.flush()
    assert "tidegate_http_requests_total{" not in metrics.exposition(Figures()).decode()  # pushed once a second
    metrics.push()
    text = metrics.exposition(Figures()).decode()
    expected = ['tidegate_http_requests_total{method="GET",route="/simple/{project}/",status="200"} 3.0',
                'tidegate_http_requests_total{method="POST",route="/legacy/",status="400"} 1.0',
                'tidegate_cache_lookups_total{kind="page",result="hit"} 3.0',
                'tidegate_cache_lookups_total{kind="metadata",result="miss"} 1.0',
                'tidegate_served_bytes_total{kind="page"} 28686.0',
                'tidegate_served_bytes_total{kind="metadata"} 100.0']
    lines = text.splitlines()
    assert all(line in lines for line in expected), text
    assert 'tidegate_uploads_total{api="legacy",result="refused"} 1.0' in lines


def test_the_log_shows_the_origin_form_path_of_any_target(capsys):
    """An absolute-form request line logs its path, as the router matched it; a request that
    matched no route is redacted like a token route, however it spells one."""
    unmatched = Route("(unmatched)", "other", None, True)
    journal = Journal(None, RequestLog("text"))
    journal.record(entry(target="http://mirror.example/simple/demo/?q=1"))
    journal.record(entry(target="//%73tage//sEcReT/simple/", route=unmatched, status=404))
    journal.flush()
    lines = capsys.readouterr().err.splitlines()
    assert '"GET /simple/demo/" 200' in lines[0]
    assert '"GET //stage//<token>/simple/" 404' in lines[1] and "sEcReT" not in lines[1]
