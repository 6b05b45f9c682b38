"""One cluster per test module: three `tidegate serve` instances on the session's PostgreSQL
and SeaweedFS, behind nginx, with a fake upstream on a loop of its own (it must keep serving
between tests, whose event loops come and go)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator

import pytest

from support.cluster import Cluster, config_text
from support.fakeindex import FakeIndex, RunningFakeIndex
from support.threaded import LoopThread

USERS = [{"name": "rm", "password": "pw", "upload": ["acme-*"]}]


@pytest.fixture(scope="module")
def servers() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def upstream(servers: LoopThread) -> Iterator[RunningFakeIndex]:
    running = servers.run(RunningFakeIndex.start(FakeIndex("json")))
    yield running
    servers.run(running.close())


@pytest.fixture(scope="module")
def cluster(servers, upstream, postgres, seaweedfs, tmp_path_factory) -> Iterator[Cluster]:
    if shutil.which("nginx") is None and not shutil.which("/usr/sbin/nginx"):
        pytest.skip("nginx is not installed: the cluster tests need it as their load balancer (.ci/run installs it)")
    bucket = seaweedfs.bucket(f"cluster-{uuid.uuid4().hex[:12]}")
    settings = {"database_url": postgres.new_database(), "blob_store": f"s3://{bucket}/tidegate",
                "s3_endpoint_url": seaweedfs.endpoint, "local_cache_size": "256MiB", "log_level": "info",
                "request_log": False}
    config = config_text(settings, [{"url": upstream.url, "retries": 0}], USERS)
    running = Cluster(tmp_path_factory.mktemp("cluster"), config)
    try:
        servers.run(running.start(), timeout=180)
        yield running
    finally:
        running.stop()
