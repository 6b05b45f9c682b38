"""The air-gap commands that only read and write the data dir start without the web stack:
their start-up is most of their time on a small bundle (bench/airgap.py)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("aiohttp", "cryptography", "tidegate.publish.validate", "tidegate.cache.downloads")

PROBE = """
import json, sys
from tidegate.cli import main
rc = main(json.loads(sys.argv[1]))
heavy = sorted(m for m in sys.modules if m.startswith(tuple(json.loads(sys.argv[2]))))
print(json.dumps([rc, heavy]))
"""


def _run(argv: list[str]) -> tuple[int, list[str]]:
    r = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rc, heavy = json.loads(r.stdout.splitlines()[-1])
    return rc, heavy


def test_export_import_verify_and_prune_load_no_http_stack_no_crypto_unless_signing(tmp_path):
    source, bundle = tmp_path / "source", tmp_path / "b.tgb"
    assert _run(["export", "--data-dir", str(source), "--output", str(bundle)]) == (0, [])
    assert _run(["import", str(bundle), "--data-dir", str(tmp_path / "mirror")]) == (0, [])
    assert _run(["verify", "--data-dir", str(tmp_path / "mirror")]) == (0, [])
    assert _run(["prune", "--data-dir", str(tmp_path / "mirror"), "--keep-latest", "1", "--dry-run"]) == (0, [])
