"""Prometheus metrics, with the prometheus-client library.

Under `tidegate serve` the metrics are summed over all worker processes with the library's
multiprocess mode: the master creates a fresh directory and names it in PROMETHEUS_MULTIPROC_DIR
before any worker imports prometheus_client; each worker writes its counters to its own memory-
mapped files there, and a scrape (answered by whichever worker gets it) reads them all. Without
that variable (an application in a test, say) each Metrics has a registry of its own.

The state figures (cache size, sessions) are not counted as things happen: they are read from
storage when a scrape asks (Figures), so every worker reports the same shared truth.

Requests reach the metrics in batches (observe.journal): they are added to sums kept per label
set in plain Python, which push() hands to prometheus-client once a second (FLUSH_INTERVAL),
so a scrape sees each worker's requests at most that late.
"""

from __future__ import annotations

import os
from time import monotonic
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
FLUSH_INTERVAL = 1.0  # seconds between additions of the pending request sums
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A warm page takes well under a millisecond, a cold file many seconds: buckets for both.
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Any token is a method to HTTP: labels take only these, so a client cannot grow the label set.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
FILE_KINDS = {".metadata": "metadata", ".provenance": "provenance"}  # the kinds of files by suffix


def upload_result(status: int) -> str:
    if status == 202:
        return "processing"  # validated in the background (deferred_validation)
    if status < 300:
        return "ok"
    return "refused" if status < 500 else "error"


@dataclass(frozen=True)
class Figures:
    """What storage holds now, read for one scrape."""

    cache_bytes: dict[str, int] = field(default_factory=dict)  # by store: files, pages
    cache_files: dict[str, int] = field(default_factory=dict)
    sessions: dict[str, int] = field(default_factory=dict)  # publishing sessions by state


class _FiguresCollector:
    def __init__(self, figures: Figures) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        size = GaugeMetricFamily("tidegate_cache_size_bytes", "Bytes held by the caches, by store.", labels=["store"])
        files = GaugeMetricFamily("tidegate_cache_files", "Files held by the caches, by store.", labels=["store"])
        for store, value in sorted(self._figures.cache_bytes.items()):
            size.add_metric([store], value)
        for store, value in sorted(self._figures.cache_files.items()):
            files.add_metric([store], value)
        sessions = GaugeMetricFamily("tidegate_sessions", "Publishing sessions (PEP 694) known, by state.",
                                     labels=["state"])
        for state, value in sorted(self._figures.sessions.items()):
            sessions.add_metric([state], value)
        yield from (size, files, sessions)


class Metrics:
    def __init__(self) -> None:
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        if self.multiprocess_dir and values.ValueClass is values.MutexValue:
            # prometheus_client picks its value class when first imported.
            raise RuntimeError(f"{MULTIPROC_ENV} was set after prometheus_client was imported")
        # In multiprocess mode values live in the directory's files, not in a registry.
        self._registry = None if self.multiprocess_dir else CollectorRegistry()
        registry = self._registry
        self.requests = Counter("tidegate_http_requests", "HTTP requests answered, by route template, method and status.",
                                ["route", "method", "status"], registry=registry)
        self.request_seconds = Histogram("tidegate_http_request_duration_seconds",
                                         "Time to answer a request, by route template.", ["route"],
                                         buckets=HTTP_BUCKETS, registry=registry)
        self.cache_lookups = Counter("tidegate_cache_lookups", "Where answers came from (X-Tidegate-Cache), by kind.",
                                     ["kind", "result"], registry=registry)
        self.served_bytes = Counter("tidegate_served_bytes", "Body bytes sent to clients, by kind.", ["kind"],
                                    registry=registry)
        self.upstream_requests = Counter("tidegate_upstream_requests",
                                         "Requests to upstreams, by upstream and outcome (HTTP status, timeout, error).",
                                         ["upstream", "outcome"], registry=registry)
        self.upstream_seconds = Histogram("tidegate_upstream_request_duration_seconds",
                                          "Time until an upstream's response headers arrived.", ["upstream"],
                                          buckets=UPSTREAM_BUCKETS, registry=registry)
        self.uploads = Counter("tidegate_uploads", "Uploaded files, by API (upload2, legacy) and result.",
                               ["api", "result"], registry=registry)
        # (route, method, status, kind, cache) -> [requests, bytes, seconds, counts per bucket]
        self._pending: dict[tuple[str, str, int, str, str | None], list] = {}
        self._pushed = monotonic()

    # --- recording ---

    def tally(self, entries: list[tuple]) -> None:
        """Add a batch of answered requests (observe.journal.Entry tuples) to this process's
        pending sums, which push() hands to prometheus-client.

        A request recorded straight into prometheus-client costs ~6 us (five locked writes to
        memory-mapped files in multiprocess mode), more than the 10% of a warm page's time that
        being observed may cost; sums per label set, pushed once a second, cost a fraction of a
        microsecond per request."""
        pending = self._pending
        for start, end, _, method, _, route, filename, status, sent, cache, _ in entries:
            kind = route.kind
            if filename is not None:
                kind = FILE_KINDS.get(filename[filename.rfind("."):], "file")
            key = (route.template, method, status, kind, cache)
            slot = pending.get(key)
            if slot is None:
                slot = pending[key] = [0, 0, 0.0, [0] * (len(HTTP_BUCKETS) + 1)]
            seconds = end - start
            slot[0] += 1
            slot[1] += sent
            slot[2] += seconds
            slot[3][bisect_left(HTTP_BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds
            if route.upload_api is not None and method == "POST":
                self.uploads.labels(route.upload_api, upload_result(status)).inc()

    def push_due(self) -> None:
        """push(), if FLUSH_INTERVAL has passed since the last one."""
        now = monotonic()
        if now - self._pushed >= FLUSH_INTERVAL:
            self.push()

    def push(self) -> None:
        """Add the pending sums to the metrics (every FLUSH_INTERVAL, and before a scrape)."""
        self._pushed = monotonic()
        pending, self._pending = self._pending, {}
        for (route, method, status, kind, cache), (count, sent, seconds, buckets) in pending.items():
            label = method if method in METHODS else "other"
            self.requests.labels(route, label, str(status)).inc(count)
            _add_to_histogram(self.request_seconds.labels(route), seconds, buckets)
            if sent:
                self.served_bytes.labels(kind).inc(sent)
            if cache is not None:
                self.cache_lookups.labels(kind, cache).inc(count)

    def upstream(self, name: str, outcome: str, seconds: float | None) -> None:
        self.upstream_requests.labels(name, outcome).inc()
        if seconds is not None:
            self.upstream_seconds.labels(name).observe(seconds)

    # --- exposition ---

    def exposition(self, figures: Figures) -> bytes:
        """The text format of every family, summed over all processes (blocking: files are read)."""
        registry = CollectorRegistry(auto_describe=False)
        if self.multiprocess_dir:
            MultiProcessCollector(registry, self.multiprocess_dir)
        else:
            assert self._registry is not None
            registry.register(_Forward(self._registry))
        registry.register(_FiguresCollector(figures))
        return generate_latest(registry)


def _add_to_histogram(child: Histogram, seconds: float, buckets: list[int]) -> None:
    """Add many observations at once, given their sum and their count per bucket.

    prometheus-client observes one value at a time; its histogram keeps a value per bucket
    (`_buckets`, the last one +Inf) and their `_sum`, which is what observe() increments. If a
    later version lays them out otherwise, each observation is replayed at its bucket's bound."""
    parts, total = getattr(child, "_buckets", None), getattr(child, "_sum", None)
    if parts is not None and total is not None and len(parts) == len(buckets):
        total.inc(seconds)
        for part, count in zip(parts, buckets):
            if count:
                part.inc(count)
        return
    for bound, count in zip((*HTTP_BUCKETS, HTTP_BUCKETS[-1] * 2), buckets):
        for _ in range(count):
            child.observe(bound)


class _Forward:
    """One registry's metrics as a collector of another."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        return self._registry.collect()
