"""Adding the token at the last hop.

The API wants the token in the query string. If it were added by a downloader
middleware it would live in a ``Request`` that Scrapy logs ("Crawled (200)
<GET ...>"), retries, schedules and, with scrapy-redis or JOBDIR, stores. So
requests carry no token anywhere in the engine: this download handler signs a
private copy right before the HTTP client sends it, gives the response back
under the unsigned URL, and scrubs the token from any error the client raises.
(scrapy-zyte-api, a plugin for another paid API, also talks to its API from a
download handler.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from scrapy.core.downloader.handlers.base import BaseDownloadHandler
from scrapy.utils.misc import build_from_crawler, load_object

from rednote_crawl import api, redaction
from rednote_crawl.search import call_of
from rednote_crawl.state import crawl_state

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response


class UnsignedCall(RuntimeError):
    """A search call that this worker cannot sign (another host than its API base): never sent."""


class TokenAuthDownloadHandler(BaseDownloadHandler):
    """Wraps Scrapy's own HTTP handler (``DOWNLOAD_HANDLERS_BASE``) for http and https."""

    def __init__(self, crawler: Crawler, inner: BaseDownloadHandler | None = None) -> None:
        super().__init__(crawler)
        config = crawl_state(crawler).config
        self._token = config.token
        redaction.install(self._token)
        # ".../search-note/v2?" and ".../get-note-detail/v1?": the two calls this crawl pays for
        self._signed_prefixes = (api.search_url(config.base_url, {}), api.detail_url(config.base_url, "")[: -len("noteId=")])
        if inner is None:
            handler_cls = load_object(crawler.settings.getdict("DOWNLOAD_HANDLERS_BASE")["https"])
            inner = build_from_crawler(handler_cls, crawler)
        self._inner = inner
        # Twisted's pool silently re-sends a GET once when a reused connection drops before
        # the answer. Such a call may have been paid for and would bypass the retry policy and
        # the budget: every re-send must go through ApiPolicyMiddleware instead.
        pool = getattr(self._inner, "_pool", None)
        if pool is not None:
            pool.retryAutomatically = False

    async def download_request(self, request: Request) -> Response:
        # Only search calls to the configured API get the token: never another host (a redirect,
        # a URL a spider builds by mistake). A search call elsewhere is not sent at all: unsigned, it
        # would only fetch an "invalid token" answer, which stops the whole crawl.
        if call_of(request) is None:
            return await self._inner.download_request(request)
        if not request.url.startswith(self._signed_prefixes):
            host = urlsplit(request.url).netloc
            raise UnsignedCall(
                f"a call to {host} is not to this worker's JUSTONEAPI_BASE_URL "
                f"({urlsplit(self._signed_prefixes[0]).netloc}): not sent, never without the token"
            )
        signed = request.replace(url=api.add_token(request.url, self._token))
        try:
            response = await self._inner.download_request(signed)
        except Exception as exc:
            exc.args = tuple(redaction.redact(a) if isinstance(a, str) else a for a in exc.args)
            raise
        finally:
            # What the HTTP handler notes on the request (download_latency, which AutoThrottle
            # reads) belongs to the request the crawl knows, not to its signed copy.
            request.meta.update(signed.meta)
        return response.replace(url=request.url)

    async def close(self) -> None:
        await self._inner.close()
