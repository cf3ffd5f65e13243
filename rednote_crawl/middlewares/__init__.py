"""Downloader middlewares: the API policy (retry, stop, drop) and the token's throttle."""

from rednote_crawl.api import Query

QUERY_META = "justoneapi_query"  # the api.Query of a search request
PAGE_META = "justoneapi_page"
NOT_BEFORE_META = "justoneapi_not_before"  # epoch seconds: backoff of a retried request
RATE_LIMITED_META = "justoneapi_rate_limited"  # how often this page met a rate limit


def query_of(request) -> Query | None:
    return request.meta.get(QUERY_META)


def stop_crawl(crawler, reason: str, message: str) -> None:
    """Tell every component the crawl is stopping, then close the spider with ``reason``."""
    from scrapy.utils.defer import _schedule_coro

    from rednote_crawl import signals

    crawler.signals.send_catch_log(signals.crawl_stopping, reason=reason, message=message)
    _schedule_coro(crawler.engine.close_spider_async(reason=reason))
