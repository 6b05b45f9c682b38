"""Typed application state shared by the handlers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..config import Settings
from ..proxy import Proxy
from ..publish.service import Publisher

SETTINGS = web.AppKey("settings", Settings)
PROXY = web.AppKey("proxy", Proxy)
ROOT_MEMO = web.AppKey("root_memo", dict[str, Any])
PUBLISHER = web.AppKey("publisher", Publisher)
