#!/usr/bin/env python3
"""Air-gap benchmark, side by side on the same bytes and the same upstream (nginx serving the
static index of /opt/pypi on 127.0.0.1; nothing public is contacted):

- prefetch: `tidegate prefetch -r bench/airgap-requirements.txt --no-sdists` (a closure of ~113
  projects, this machine's Python and platform) into an empty data dir, against
  `pip download -r ... --only-binary :all:` of the same closure from the same upstream;
- export / import: `tidegate export` of that data dir and `tidegate import` of the bundle into an
  empty data dir, against `tar -cf` of the same files and `tar -xf` of that tar (import fsyncs
  each file, so `tar -xf` followed by `sync` is shown too).

    python bench/airgap.py [--rounds 3]      # writes bench/airgap-results.json

Ratios are throughput (or speed) of tidegate over the other tool: >= 1 means tidegate is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

BENCH = Path(__file__).resolve().parent
REQUIREMENTS = BENCH / "airgap-requirements.txt"
RESULTS = BENCH / "airgap-results.json"


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=1800)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(argv)}\n{r.stdout[-3000:]}\n{r.stderr[:3000]}")
    return elapsed


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    harness.check_sources()
    tmp = Path(tempfile.mkdtemp(prefix="tg-airgap-bench-"))
    tmp.chmod(0o755)  # nginx's workers must read the static root under it
    procs = harness.Procs(tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "UV_NO_CONFIG": "1",
            "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    tidegate = [sys.executable, "-m", "tidegate"]
    rows: dict[str, list[float]] = {k: [] for k in ("prefetch", "pip_download", "export", "tar_c", "import",
                                                   "tar_x", "tar_x_sync", "export_empty", "import_empty")}
    try:
        harness.build_static_root(tmp / "root", 0, 1)
        upstream = harness.start_nginx(procs, tmp, tmp / "root", harness.free_port()) + "/simple/"
        for i in range(args.rounds):
            data, dest = tmp / f"data-{i}", tmp / f"download-{i}"
            rows["prefetch"].append(timed(tidegate + ["prefetch", "--data-dir", str(data), "--upstream", upstream,
                                                      "-r", str(REQUIREMENTS), "--no-sdists"], env))
            rows["pip_download"].append(timed([sys.executable, "-m", "pip", "download", "--no-cache-dir",
                                               "--index-url", upstream, "--only-binary", ":all:", "--dest", str(dest),
                                               "-r", str(REQUIREMENTS)], env))
            files = len(list(dest.iterdir()))
            bundle, tarball = tmp / f"bundle-{i}.tgb", tmp / f"plain-{i}.tar"
            rows["export"].append(timed(tidegate + ["export", "--data-dir", str(data), "--output", str(bundle)], env))
            rows["tar_c"].append(timed(["tar", "-cf", str(tarball), "-C", str(data), "blobs/files", "pagecache"], env))
            rows["import"].append(timed(tidegate + ["import", str(bundle), "--data-dir", str(tmp / f"in-{i}")], env))
            out = tmp / f"untar-{i}"
            out.mkdir()
            rows["tar_x"].append(timed(["tar", "-xf", str(tarball), "-C", str(out)], env))
            out2 = tmp / f"untar-sync-{i}"
            out2.mkdir()
            rows["tar_x_sync"].append(timed(["sh", "-c", f"tar -xf {tarball} -C {out2} && sync"], env))
            # The fixed cost of a command (interpreter, imports, opening storage): an empty bundle.
            empty = tmp / f"empty-{i}.tgb"
            rows["export_empty"].append(timed(tidegate + ["export", "--data-dir", str(tmp / f"void-{i}"),
                                                          "--output", str(empty)], env))
            rows["import_empty"].append(timed(tidegate + ["import", str(empty), "--data-dir", str(tmp / f"void2-{i}")],
                                              env))
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in rows.items()), flush=True)
        size = size_of(tmp / "data-0" / "blobs" / "files")
        med = {k: statistics.median(v) for k, v in rows.items()}
        results = {
            "closure_files": files, "closure_bytes": size, "rounds": args.rounds,
            "median_seconds": med,
            "prefetch_speed_vs_pip_download": med["pip_download"] / med["prefetch"],
            "export_throughput_vs_tar_c": med["tar_c"] / med["export"],
            "import_throughput_vs_tar_x": med["tar_x"] / med["import"],
            "import_throughput_vs_tar_x_sync": med["tar_x_sync"] / med["import"],
            "export_MBps": size / med["export"] / 1e6, "import_MBps": size / med["import"] / 1e6,
            # Without each command's fixed start-up cost (measured on an empty bundle):
            "export_throughput_vs_tar_c_after_startup": med["tar_c"] / (med["export"] - med["export_empty"]),
            "import_throughput_vs_tar_x_after_startup": med["tar_x"] / (med["import"] - med["import_empty"]),
            "import_throughput_vs_tar_x_sync_after_startup": med["tar_x_sync"] / (med["import"] - med["import_empty"]),
        }
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2))
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
