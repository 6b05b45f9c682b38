"""What "upload under a temporary key, then copy to the final key" would cost over a PUT to the
final key (what storage/s3blobs.py does), on one S3 server.

    python bench/s3copy.py --endpoint http://127.0.0.1:PORT [--bucket bench] [--size-mb 100] [--repeat 3]

Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Prints the seconds of each
checksummed multipart PUT and of each server-side copy plus delete of the temporary key.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import obstore
from obstore.store import S3Store


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--bucket", default="bench")
    p.add_argument("--size-mb", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    store = S3Store(args.bucket, endpoint=args.endpoint, region="us-east-1", checksum_algorithm="SHA256",
                    client_options={"allow_http": args.endpoint.startswith("http://")})
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "blob"
        with open(source, "wb") as fh:
            for _ in range(args.size_mb):
                fh.write(os.urandom(1_000_000))
        puts, copies = [], []
        for i in range(args.repeat):
            started = time.perf_counter()
            await obstore.put_async(store, f"copybench/tmp{i}", source, chunk_size=8 << 20, max_concurrency=4)
            puts.append(time.perf_counter() - started)
            started = time.perf_counter()
            await obstore.copy_async(store, f"copybench/tmp{i}", f"copybench/final{i}")
            await obstore.delete_async(store, f"copybench/tmp{i}")
            copies.append(time.perf_counter() - started)
            await obstore.delete_async(store, f"copybench/final{i}")
    print(f"PUT {args.size_mb} MB: {', '.join(f'{x:.2f}' for x in puts)} s; "
          f"copy + delete: {', '.join(f'{x:.2f}' for x in copies)} s; "
          f"median copy/PUT {statistics.median(copies) / statistics.median(puts):.2f}")


if __name__ == "__main__":
    asyncio.run(main())
