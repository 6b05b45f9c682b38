"""Upload client: PEP 694 (Upload 2.0) publishing sessions with a legacy-API fallback.

`upload` holds the protocol (async, over an aiohttp ClientSession); `cli` the `tidegate upload`
and `tidegate session` commands.
"""
