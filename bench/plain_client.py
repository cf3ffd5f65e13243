"""The comparison for CPU per note: a plain asyncio client doing the crawler's work and no more.

    python bench/plain_client.py KEYWORDS_FILE OUTPUT --base-url URL [--concurrency 16]

aiohttp and orjson; each query is paged until its empty page; notes are read and mapped with the
project's wire contract (``api.read_page``, ``api.note_item``), deduped by ``note_id`` and written
as JSON Lines: the same output as the crawler, without Scrapy, retries, pacing or a job state.
"""

from __future__ import annotations

import argparse
import asyncio
import os

import aiohttp
import orjson

from rednote_crawl import api
from rednote_crawl.seeds import read_keywords


async def crawl(keywords: list[str], output: str, base_url: str, token: str, concurrency: int) -> int:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for keyword in keywords:
        queue.put_nowait(keyword)
    seen: set[str] = set()
    with open(output, "wb") as out:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

            async def worker() -> None:
                while not queue.empty():
                    query = api.Query(queue.get_nowait())
                    page, rank = 1, 0
                    while True:
                        url = api.add_token(api.search_url(base_url, query.params(page)), token)
                        async with session.get(url) as response:
                            body = await response.read()
                        answer = api.judge(response.status, body)
                        if answer.action is not api.Action.PARSE:
                            continue  # the sandbox runs without faults here; retry at once
                        result = api.read_page(answer.envelope)
                        fetched = api.now_iso()
                        for offset, note in enumerate(result.notes, start=1):
                            item = api.note_item(
                                note,
                                query=query,
                                note_time_sent=None,
                                page=page,
                                rank=rank + offset,
                                fetched_at=fetched,
                            )
                            if item["note_id"] not in seen:
                                seen.add(item["note_id"])
                                out.write(orjson.dumps(item, option=orjson.OPT_APPEND_NEWLINE))
                        if result.is_last:
                            break
                        page, rank = page + 1, rank + len(result.notes)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("keywords")
    parser.add_argument("output")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    token = os.environ.get("JUSTONEAPI_TOKEN", "bench-token")
    notes = asyncio.run(crawl(read_keywords(args.keywords), args.output, args.base_url, token, args.concurrency))
    print(notes)


if __name__ == "__main__":
    main()
