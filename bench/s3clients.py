"""obstore against aiobotocore on one S3 server: which client tidegate's S3 blob store uses.

    python bench/s3clients.py --endpoint http://127.0.0.1:PORT --bucket BUCKET [--repeat 3]

Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Per client and case: MB/s (wall)
and the client process's CPU seconds per GB moved (both clients' CPU work counts: obstore's
Rust threads are in this process too). PUTs send an x-amz-checksum-sha256, as the store does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

SMALL = 10_000
SMALL_COUNT = 500
CONCURRENCY = 50


class Obstore:
    name = "obstore"

    def __init__(self, endpoint: str, bucket: str) -> None:
        from obstore.store import S3Store
        self.obs = __import__("obstore")
        self.store = S3Store(bucket, endpoint=endpoint, region="us-east-1", client_options={"allow_http": True},
                             checksum_algorithm="SHA256")

    async def put(self, key: str, path: Path) -> None:
        await self.obs.put_async(self.store, key, path)

    async def get(self, key: str) -> int:
        result = await self.obs.get_async(self.store, key)
        n = 0
        async for chunk in result.stream(min_chunk_size=256 * 1024):
            n += len(chunk)
        return n

    async def close(self) -> None:
        pass


class Botocore:
    name = "aiobotocore"

    def __init__(self, endpoint: str, bucket: str) -> None:
        self.endpoint, self.bucket = endpoint, bucket

    async def open(self) -> None:
        from aiobotocore.session import get_session
        from botocore.config import Config
        self._ctx = get_session().create_client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                                config=Config(max_pool_connections=CONCURRENCY))
        self.client = await self._ctx.__aenter__()

    async def put(self, key: str, path: Path) -> None:
        size = path.stat().st_size
        if size <= 8 * 1024 * 1024:
            with open(path, "rb") as fh:
                await self.client.put_object(Bucket=self.bucket, Key=key, Body=fh, ChecksumAlgorithm="SHA256")
            return
        # Multipart, as the store would have to for big files (botocore has no async transfer manager).
        part = 8 * 1024 * 1024
        up = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256")
        parts = []
        with open(path, "rb") as fh:
            for number in range(1, size // part + 2):
                data = fh.read(part)
                if not data:
                    break
                r = await self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=up["UploadId"],
                                                  PartNumber=number, Body=data, ChecksumAlgorithm="SHA256")
                parts.append({"PartNumber": number, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
        await self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=up["UploadId"],
                                                    MultipartUpload={"Parts": parts})

    async def get(self, key: str) -> int:
        r = await self.client.get_object(Bucket=self.bucket, Key=key)
        n = 0
        async with r["Body"] as body:
            async for chunk in body.iter_chunks(256 * 1024):
                n += len(chunk)
        return n

    async def close(self) -> None:
        await self._ctx.__aexit__(None, None, None)


async def timed(fn, nbytes: int) -> tuple[float, float]:
    """(MB/s, CPU s per GB)."""
    wall, cpu = time.perf_counter(), time.process_time()
    await fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return nbytes / wall / 1e6, cpu / (nbytes / 1e9)


async def bench(client, files: dict[str, Path]) -> dict[str, tuple[float, float]]:
    out = {}
    for label, path in files.items():
        size = path.stat().st_size
        count = max(1, 20_000_000 // size)
        keys = [f"bench/{client.name}/{label}/{i}" for i in range(count)]

        async def puts():
            for key in keys:
                await client.put(key, path)

        async def gets():
            for key in keys:
                assert await client.get(key) == size

        out[f"PUT {label}"] = await timed(puts, size * count)
        out[f"GET {label}"] = await timed(gets, size * count)
    small = files["small"]
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with limit:
            assert await client.get(f"bench/{client.name}/small/{i % max(1, 20_000_000 // SMALL)}") == SMALL

    async def many():
        await asyncio.gather(*(one(i) for i in range(SMALL_COUNT)))

    out[f"GET {SMALL_COUNT}x10kB, {CONCURRENCY} at once"] = await timed(many, SMALL * SMALL_COUNT)
    return out


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--bucket", default="bench")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for label, size in (("small", SMALL), ("1MB", 1_000_000), ("100MB", 100_000_000)):
            files[label] = Path(tmp) / label
            with open(files[label], "wb") as fh:
                for _ in range(0, size, 1 << 20):
                    fh.write(os.urandom(min(1 << 20, size - fh.tell())))
        results: dict[str, dict[str, list[tuple[float, float]]]] = {}
        boto = Botocore(args.endpoint, args.bucket)
        await boto.open()
        clients = [Obstore(args.endpoint, args.bucket), boto]
        for _ in range(args.repeat):
            for client in clients:  # interleaved, so noise hits both alike
                for case, figures in (await bench(client, files)).items():
                    results.setdefault(case, {}).setdefault(client.name, []).append(figures)
        await boto.close()
    print(f"{'case':34} {'client':12} {'MB/s median (min-max)':>24} {'CPU s/GB median':>16}")
    for case, by_client in results.items():
        for name, runs in by_client.items():
            rates = [r for r, _ in runs]
            cpus = [c for _, c in runs]
            print(f"{case:34} {name:12} {statistics.median(rates):9.1f} ({min(rates):.1f}-{max(rates):.1f})"
                  f"{statistics.median(cpus):>17.2f}")
        o, b = (statistics.median(r for r, _ in by_client[n]) for n in ("obstore", "aiobotocore"))
        print(f"{'':34} {'ratio o/b':12} {o / b:9.2f}")


if __name__ == "__main__":
    asyncio.run(main())
