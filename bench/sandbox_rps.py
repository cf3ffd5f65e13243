"""How many calls per second the sandbox answers on one core.

    python bench/sandbox_rps.py [--seconds 10] [--concurrency 64]

Starts the sandbox in its own process pinned to CPU 0 (when the machine has
more than one), drives it from this process with aiohttp over 127.0.0.1, and
prints calls/s. Target (issue 2): at least 1,000 per second, so that the
sandbox is never the bottleneck of a test or a benchmark. Stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import aiohttp

from rednote_crawl import api

KEYWORDS = ["海信", "小米", "Nike", "Apple", "喜茶", "安踏", "SK-II", "L'Oréal"]


async def drive(url: str, seconds: float, concurrency: int) -> tuple[int, int]:
    done = errors = 0
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker(n: int) -> None:
            nonlocal done, errors
            i = n
            while time.monotonic() < deadline:
                params = {"token": "bench", "keyword": KEYWORDS[i % len(KEYWORDS)], "page": str(1 + i % 8)}
                async with session.get(f"{url}{api.SEARCH_PATH}", params=params) as response:
                    await response.read()
                    done += 1
                    errors += response.status != 200
                i += concurrency

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return done, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--port", type=int, default=18_765)
    args = parser.parse_args()
    pin = ["taskset", "-c", "0"] if (os.cpu_count() or 1) > 1 else []
    server = subprocess.Popen(
        [*pin, sys.executable, "-m", "rednote_crawl.sandbox", "--port", str(args.port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "sandbox serving ..."
        url = f"http://127.0.0.1:{args.port}"
        if pin:
            os.sched_setaffinity(0, {1})
        asyncio.run(drive(url, 1, args.concurrency))  # warm the page cache
        done, errors = asyncio.run(drive(url, args.seconds, args.concurrency))
    finally:
        server.terminate()
        server.wait(10)
    rate = done / args.seconds
    print(f"sandbox: {rate:,.0f} calls/s on one core ({done} calls, {errors} not HTTP 200, {args.concurrency} at once)")
    print("target: >= 1,000 calls/s:", "met" if rate >= 1000 else "NOT met")
    return 0 if rate >= 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
