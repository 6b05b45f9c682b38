#!/usr/bin/env python3
"""Air-gap benchmark, side by side on the same bytes and the same upstream (nginx serving the
static index of /opt/pypi on 127.0.0.1; nothing public is contacted):

- prefetch (small case): `tidegate prefetch -r bench/airgap-requirements.txt --no-sdists` (a
  closure of ~113 projects, this machine's Python and platform) into an empty data dir, against
  `pip download -r ... --only-binary :all:` of the same closure from the same upstream; over
  loopback, and again through bench/delayproxy.py (--delay-ms before every answer, default 20:
  what a client far from its index sees, where pip fetches one file after another);
- export / import, for two data dirs: that small closure (~91 MB), and a large one (--large-mb,
  default 1000 MB of /opt/pypi's real wheels, listed in a pylock.toml that `tidegate prefetch
  --lock` fetches once). `tidegate export` of the data dir against `tar -cf` of the same files,
  `tidegate import` of the bundle into an empty data dir against `tar -xf` of that tar. Both
  tidegate commands make their result durable (export fsyncs the bundle, import syncs the
  filesystem before anything is visible), so `tar -cf && sync` and `tar -xf && sync` are shown
  too: the fair durability peers. Every timed command starts after an untimed `sync`, so one
  step's dirty pages do not slow the next; the steps of a round are interleaved.
- start-up: exporting and importing an empty bundle (the fixed cost of a command). With
  `--baseline-src DIR` (a checkout's src/, e.g. of main), that code's start-up and its export
  and import of the large data dir are timed too, interleaved with the rest.

    python bench/airgap.py [--rounds 3] [--large-mb 1000] [--cases small,large] [--delay-ms 20]
                           [--baseline-src ../main/src]

Writes bench/airgap-results.json. Ratios are throughput (or speed) of tidegate over the other
tool: >= 1 means tidegate is faster. Bytecode is compiled first (into a cache under the run's
temp dir), as an installed tidegate's would be.
"""

from __future__ import annotations

import argparse
import importlib.util
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
BUNDLE_STEPS = ("export", "tar_c", "tar_c_sync", "import", "tar_x", "tar_x_sync")


def timed(argv: list[str], env: dict[str, str]) -> float:
    subprocess.run(["sync"], check=True)  # untimed: start every step with no dirty pages left
    start = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=1800)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(argv)}\n{r.stdout[-3000:]}\n{r.stderr[:3000]}")
    return elapsed


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def large_lock(root: Path, megabytes: int, out: Path) -> tuple[int, int]:
    """A pylock.toml of /opt/pypi's wheels in name order up to `megabytes`: (files, bytes)."""
    chosen: list[tuple[str, str, str]] = []
    total = 0
    for page in sorted((root / "simple").glob("*/index.html")):
        for href, filename in harness._LINK_RE.findall(page.read_text()):
            if not filename.endswith(".whl") or "#sha256=" not in href:
                continue
            if total >= megabytes * 1_000_000:
                break
            total += (root / "files" / filename).stat().st_size
            chosen.append((page.parent.name, filename, href.split("#sha256=")[1]))
    lines = ['lock-version = "1.0"', 'created-by = "bench/airgap.py"', ""]
    by_project: dict[str, list[tuple[str, str]]] = {}
    for project, filename, sha256 in chosen:
        by_project.setdefault(project, []).append((filename, sha256))
    for project, wheels in by_project.items():
        lines += ["[[packages]]", f'name = "{project}"', "wheels = ["]
        lines += [f'  {{ name = "{f}", hashes = {{ sha256 = "{h}" }} }},' for f, h in wheels]
        lines += ["]", ""]
    out.write_text("\n".join(lines))
    return len(chosen), total


def bundle_round(tidegate: list[str], data: Path, work: Path, env: dict[str, str], rows: dict[str, list[float]],
                 baseline_env: dict[str, str] | None = None) -> None:
    """One interleaved round of export/import and their tar peers on `data` (and the baseline
    code's export/import, if given); outputs removed after."""
    work.mkdir()
    bundle, tarball, tarball2 = work / "bundle.tgb", work / "plain.tar", work / "plain-sync.tar"
    try:
        if baseline_env is not None:
            old = work / "baseline.tgb"
            rows["baseline_export"].append(timed(tidegate + ["export", "--data-dir", str(data), "--output", str(old)],
                                                 baseline_env))
            rows["baseline_import"].append(timed(tidegate + ["import", str(old), "--data-dir", str(work / "in-base")],
                                                 baseline_env))
            old.unlink()
            shutil.rmtree(work / "in-base")
        rows["export"].append(timed(tidegate + ["export", "--data-dir", str(data), "--output", str(bundle)], env))
        rows["tar_c"].append(timed(["tar", "-cf", str(tarball), "-C", str(data), "blobs/files", "pagecache"], env))
        rows["tar_c_sync"].append(timed(["sh", "-c", f"tar -cf {tarball2} -C {data} blobs/files pagecache && sync"],
                                        env))
        rows["import"].append(timed(tidegate + ["import", str(bundle), "--data-dir", str(work / "in")], env))
        (work / "untar").mkdir()
        rows["tar_x"].append(timed(["tar", "-xf", str(tarball), "-C", str(work / "untar")], env))
        (work / "untar-sync").mkdir()
        rows["tar_x_sync"].append(timed(["sh", "-c", f"tar -xf {tarball} -C {work / 'untar-sync'} && sync"], env))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def startup_round(tidegate: list[str], work: Path, env: dict[str, str], rows: dict[str, list[float]],
                  prefix: str) -> None:
    """The fixed cost of a command: exporting and importing an empty bundle."""
    work.mkdir()
    try:
        empty = work / "empty.tgb"
        rows[prefix + "export_empty"].append(timed(tidegate + ["export", "--data-dir", str(work / "void"),
                                                               "--output", str(empty)], env))
        rows[prefix + "import_empty"].append(timed(tidegate + ["import", str(empty), "--data-dir",
                                                               str(work / "void2")], env))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ratios(med: dict[str, float], size: int) -> dict[str, float]:
    return {
        "export_throughput_vs_tar_c": med["tar_c"] / med["export"],
        "export_throughput_vs_tar_c_sync": med["tar_c_sync"] / med["export"],
        "import_throughput_vs_tar_x": med["tar_x"] / med["import"],
        "import_throughput_vs_tar_x_sync": med["tar_x_sync"] / med["import"],
        "export_MBps": size / med["export"] / 1e6, "import_MBps": size / med["import"] / 1e6,
        "tar_c_MBps": size / med["tar_c"] / 1e6, "tar_x_MBps": size / med["tar_x"] / 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--large-mb", type=int, default=1000)
    parser.add_argument("--cases", default="small,large", help="comma-separated: small, large")
    parser.add_argument("--baseline-src", type=Path, help="a checkout's src/ whose start-up to show beside this one")
    parser.add_argument("--delay-ms", type=float, default=20.0,
                        help="upstream latency of the second prefetch comparison (0: loopback only)")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    harness.check_sources()
    tmp = Path(tempfile.mkdtemp(prefix="tg-airgap-bench-"))
    tmp.chmod(0o755)  # nginx's workers must read the static root under it
    procs = harness.Procs(tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "PYTHONDONTWRITEBYTECODE"))}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "UV_NO_CONFIG": "1",
            "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", "PYTHONPYCACHEPREFIX": str(tmp / "pycache")}
    tidegate = [sys.executable, "-m", "tidegate"]
    sources = [Path(importlib.util.find_spec("tidegate").origin).parent]  # type: ignore[union-attr,arg-type]
    baseline_env = None
    if args.baseline_src is not None:
        baseline_env = env | {"PYTHONPATH": str(args.baseline_src.resolve())}
        sources.append(args.baseline_src.resolve() / "tidegate")
    for src in sources:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], env=env, check=True)
    results: dict = {"rounds": args.rounds}
    try:
        harness.build_static_root(tmp / "root", 0, 1)
        static = harness.start_nginx(procs, tmp, tmp / "root", harness.free_port())
        upstream = static + "/simple/"
        delayed = None
        if args.delay_ms > 0 and "small" in cases:
            delayed = harness.start_delayproxy(procs, static, args.delay_ms, tmp / "delayproxy.log")
        large = None
        if "large" in cases:
            lock = tmp / "pylock.toml"
            files, chosen = large_lock(tmp / "root", args.large_mb, lock)
            large = tmp / "data-large"
            seconds = timed(tidegate + ["prefetch", "--data-dir", str(large), "--upstream", upstream,
                                        "--lock", str(lock)], env)
            results["large"] = {"files": files, "bytes": size_of(large / "blobs" / "files"),
                                "prefetch_seconds": seconds}
            print(f"large data dir: {files} wheels, {chosen / 1e6:.0f} MB, prefetched in {seconds:.1f}s", flush=True)
        small_rows: dict[str, list[float]] = {k: [] for k in ("prefetch", "pip_download", "prefetch_delayed",
                                                              "pip_download_delayed", *BUNDLE_STEPS)}
        large_rows: dict[str, list[float]] = {k: [] for k in (*BUNDLE_STEPS, "baseline_export", "baseline_import")}
        start_rows: dict[str, list[float]] = {k: [] for k in ("export_empty", "import_empty", "baseline_export_empty",
                                                              "baseline_import_empty")}
        for i in range(args.rounds):
            if "small" in cases:
                data, dest = tmp / f"data-{i}", tmp / f"download-{i}"
                small_rows["prefetch"].append(timed(tidegate + ["prefetch", "--data-dir", str(data), "--upstream",
                                                                upstream, "-r", str(REQUIREMENTS), "--no-sdists"], env))
                small_rows["pip_download"].append(timed(
                    [sys.executable, "-m", "pip", "download", "--no-cache-dir", "--index-url", upstream,
                     "--only-binary", ":all:", "--dest", str(dest), "-r", str(REQUIREMENTS)], env))
                results["small"] = {"files": len(list(dest.iterdir())), "bytes": size_of(data / "blobs" / "files")}
                shutil.rmtree(dest)
                if delayed is not None:
                    far = tmp / f"data-far-{i}"
                    small_rows["prefetch_delayed"].append(timed(
                        tidegate + ["prefetch", "--data-dir", str(far), "--upstream", delayed, "-r", str(REQUIREMENTS),
                                    "--no-sdists"], env))
                    small_rows["pip_download_delayed"].append(timed(
                        [sys.executable, "-m", "pip", "download", "--no-cache-dir", "--index-url", delayed,
                         "--only-binary", ":all:", "--dest", str(dest), "-r", str(REQUIREMENTS)], env))
                    shutil.rmtree(dest)
                    shutil.rmtree(far)
                bundle_round(tidegate, data, tmp / f"small-{i}", env, small_rows)
                if i:
                    shutil.rmtree(data)  # round 0's stays for the size
            if large is not None:
                bundle_round(tidegate, large, tmp / f"large-{i}", env, large_rows, baseline_env)
            startup_round(tidegate, tmp / f"start-{i}", env, start_rows, "")
            if baseline_env is not None:
                startup_round(tidegate, tmp / f"start-base-{i}", baseline_env, start_rows, "baseline_")
            shown = {**{f"small {k}": v for k, v in small_rows.items()},
                     **{f"large {k}": v for k, v in large_rows.items()}, **start_rows}
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in shown.items() if v), flush=True)
        for case, rows in (("small", small_rows), ("large", large_rows)):
            if case not in cases:
                continue
            med = {k: statistics.median(v) for k, v in rows.items() if v}
            results[case] |= {"median_seconds": med, **ratios(med, results[case]["bytes"])}
            if "baseline_export" in med:
                results[case] |= {"export_speedup_vs_baseline": med["baseline_export"] / med["export"],
                                  "import_speedup_vs_baseline": med["baseline_import"] / med["import"]}
            if case == "small":
                results[case]["prefetch_speed_vs_pip_download"] = med["pip_download"] / med["prefetch"]
                if "prefetch_delayed" in med:
                    results[case] |= {"delay_ms": args.delay_ms, "prefetch_speed_vs_pip_download_delayed":
                                      med["pip_download_delayed"] / med["prefetch_delayed"]}
        results["startup_median_seconds"] = {k: statistics.median(v) for k, v in start_rows.items() if v}
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2))
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
