"""Typed application state shared by the handlers."""

from __future__ import annotations

from aiohttp import web

from ..config import Settings
from ..observe.metrics import Metrics
from ..observe.journal import Journal
from ..publish.service import Publisher
from ..publish.tokens import Tokens
from ..readpath.local import LocalSource
from ..readpath.proxy import Proxy
from ..storage import Storage

SETTINGS = web.AppKey("settings", Settings)
STORAGE = web.AppKey("storage", Storage)
PROXY = web.AppKey("proxy", Proxy)
LOCAL = web.AppKey("local", LocalSource)  # the local index source, which stage overlays build on
PUBLISHER = web.AppKey("publisher", Publisher)
TOKENS = web.AppKey("tokens", Tokens)
METRICS = web.AppKey("metrics", Metrics)  # absent when the setting `metrics` is off
JOURNAL = web.AppKey("journal", Journal)  # absent when both the metrics and the request log are off
