"""Signals the project's components send each other (``crawler.signals``)."""

# The API asked us to slow down (302 or HTTP 429). kwargs: retry_after (float | None)
rate_limited = object()
# A page answered code 0 and was paid for. kwargs: request
page_paid = object()
# A paid page was stored (or its processing ended without storing it). kwargs: request
page_stored = object()
# A page ran out of tries; its query is incomplete. kwargs: request, reason
page_failed = object()
# A query was rejected with code 400 and dropped. kwargs: request, message
query_rejected = object()
# A fatal answer, the budget, a failed write... stops the crawl. kwargs: event (stops.StopEvent)
crawl_stopping = object()
# A call failed before it reached the API (no such host, a refused connection): not a call sent. kwargs: request
call_not_delivered = object()
