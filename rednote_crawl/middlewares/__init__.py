"""Downloader middlewares: the API policy (retry, stop, drop) and the token's throttle.

What they share: the request ``meta`` keys below, and ``stop_crawl``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from scrapy.utils.defer import deferred_from_coro

from rednote_crawl import signals
from rednote_crawl.api import Query

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

QUERY_META = "justoneapi_query"  # the api.Query of a search request
PAGE_META = "justoneapi_page"
NOT_BEFORE_META = "justoneapi_not_before"  # epoch seconds: backoff of a retried request
RATE_LIMITED_META = "justoneapi_rate_limited"  # how often this page met a rate limit
ENVELOPE_META = "justoneapi_envelope"  # the decoded answer, handed from the policy to the spider
QUERY_END_META = "justoneapi_query_end"  # set by the spider on a query's last page: why it ended

_closing: set[Any] = set()  # close_spider Deferreds in flight (kept referenced until done)


def query_of(request: Request) -> Query | None:
    return request.meta.get(QUERY_META)


def record_failed_page(crawler: Crawler, request: Request, reason: str) -> None:
    """Count and report a page that will not be fetched: its query is incomplete."""
    query = query_of(request)
    crawler.stats.inc_value("justoneapi/pages/failed")
    logger.error(
        "Page %s of %s failed: %s; its query is incomplete",
        request.meta.get(PAGE_META),
        query.describe() if query else request.url,
        reason,
    )
    crawler.signals.send_catch_log(signals.page_failed, request=request, reason=reason)


def stop_crawl(crawler: Crawler, reason: str, message: str) -> None:
    """Tell every component the crawl is stopping, then close the spider with ``reason``."""
    crawler.signals.send_catch_log(signals.crawl_stopping, reason=reason, message=message)
    close_spider(crawler, reason)


def close_spider(crawler: Crawler, reason: str) -> None:
    """Close the spider with ``reason``, from synchronous code."""
    closing = deferred_from_coro(crawler.engine.close_spider_async(reason=reason))
    _closing.add(closing)
    closing.addErrback(lambda failure: logger.error("Closing the spider failed: %s", failure.getErrorMessage()))
    closing.addBoth(lambda _: _closing.discard(closing))
