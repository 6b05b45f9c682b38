"""The wire constants of Upload 2.0 (PEP 694), shared by the server and `tidegate upload`."""

from __future__ import annotations

import re

MEDIA_TYPE = "application/vnd.pypi.upload.v2+json"
PROBLEM_MEDIA_TYPE = "application/problem+json"
API_VERSION = "2.0"
META = {"api-version": API_VERSION}
MECHANISM = "http-post-bytes"  # the only upload mechanism tidegate offers
# The major version is the contract; a request declaring any 2.x is understood.
COMPATIBLE_VERSIONS = re.compile(r"2\.[0-9]+")
