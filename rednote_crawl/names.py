"""The names the components share: stat keys (all under ``justoneapi/``) and request meta keys.

Finish reasons are the stops' (``stops.py``); whether the crawl is stopping is ``search.stopping``.
Plain Python: no Scrapy.
"""

from __future__ import annotations

PREFIX = "justoneapi/"


class Stat:
    """Stat keys. A name ending in ``/`` is a prefix: ``Stat.ANSWERS + label``."""

    QUERIES_TOTAL = PREFIX + "queries/total"
    QUERIES_FINISHED = PREFIX + "queries/finished/"  # + why the query ended (api.PageOutcome.end)
    QUERIES_FINISHED_EARLIER = QUERIES_FINISHED + "in_an_earlier_run"
    QUERIES_AT_MAX_PAGES = QUERIES_FINISHED + "max_pages"
    QUERIES_REJECTED = PREFIX + "queries/rejected"

    PAGES_READ = PREFIX + "pages/read"
    PAGES_FAILED = PREFIX + "pages/failed"

    REQUESTS_SENT = PREFIX + "requests/sent"
    REQUESTS_NOT_SENT = PREFIX + "requests/not_sent"
    REQUESTS_NOT_DELIVERED = PREFIX + "requests/not_delivered"

    DETAILS = PREFIX + "details/"  # the note detail calls (-a details=), counted apart from pages
    DETAIL_REQUESTS_SENT = DETAILS + "requests_sent"  # also in REQUESTS_SENT: the budget covers both
    DETAILS_FETCHED = DETAILS + "fetched"
    DETAILS_REUSED = DETAILS + "paid_by_an_earlier_run"  # stored in the job folder, not asked again
    DETAILS_FAILED = DETAILS + "failed"
    DETAILS_NOTE_GONE = DETAILS + "note_gone"
    DETAILS_NOT_ASKED = DETAILS + "not_asked"
    DETAILS_HELD = DETAILS + "held_for_the_next_run"  # the crawl stopped: a job folder's next run finishes them

    ANSWERS = PREFIX + "answers/"  # + the answer's label (api.Answer.label)
    INVALID_UTF8_REPLACED = ANSWERS + "invalid_utf8_replaced"

    RETRY = PREFIX + "retry"  # Scrapy's get_retry_request adds /count, /reason_count/..., /max_reached
    RETRY_COUNT = RETRY + "/count"
    RETRY_UNREACHABLE = RETRY + "/unreachable"
    BACKOFF_SECONDS = RETRY + "/backoff_seconds"

    RATE_LIMIT_RETRIES = PREFIX + "ratelimit/retries"
    RATE = PREFIX + "ratelimit/rate"
    RATE_LIMIT = PREFIX + "ratelimit/limit"
    RATE_HELD_SECONDS = PREFIX + "ratelimit/held_seconds"  # waiting for the token's rate, below the ceiling
    RATE_HELD_BY_CEILING_SECONDS = PREFIX + "ratelimit/held_by_ceiling_seconds"  # at JUSTONEAPI_MAX_RPS

    NOTES_SEEN = PREFIX + "notes/seen"
    NOTES_NEW = PREFIX + "notes/unique"
    NOTES_REPEATED = PREFIX + "notes/duplicate"
    NOTES_EARLIER = PREFIX + "notes/found_by_an_earlier_crawl"
    NOTES_WRITTEN = PREFIX + "notes/written_by_an_earlier_run"
    NOTES_OLDER = PREFIX + "notes/older_than_since"
    NOTES_ODD_ID = PREFIX + "notes/odd_id"  # ids not of the API's 24 hex digits (kept)
    ITEMS_SKIPPED = PREFIX + "items/skipped/"  # + the item's model_type
    NOTES_WITHOUT_ID = ITEMS_SKIPPED + "note_without_id"
    ITEMS_INVALID = PREFIX + "items/invalid"  # notes that do not match the output's schema (items/validate.py)

    RESUME_ITEMS_REPLAYED = PREFIX + "resume/items_replayed"
    RESUME_QUERIES_CONTINUED = PREFIX + "resume/queries_continued"

    STORAGE_FAILED = PREFIX + "storage/failed"
    STORAGE_CALLS_BEFORE_FAILURE = PREFIX + "storage/calls_before_failure"
    STORAGE_WAIT_SECONDS = PREFIX + "storage/wait_seconds"

    REDIS_OUTAGES = PREFIX + "redis/outages"
    REDIS_OUTAGE_SECONDS = PREFIX + "redis/outage_seconds"
    REDIS_REFUSALS = PREFIX + "redis/refusals"  # outages during which Redis answered, refusing writes
    REDIS_WRITES_NOT_STORED = PREFIX + "redis/writes_not_stored"  # still in the outbox when the worker left
    REDIS_STATE_LOST = PREFIX + "redis/state_lost"
    REDIS_ROUND_TRIPS = PREFIX + "redis/round_trips"
    REDIS_LEASES_LOST = PREFIX + "redis/leases_lost"
    REDIS_GIVEN_BACK = PREFIX + "redis/requests_given_back"
    REDIS_FILTERED = PREFIX + "redis/requests_filtered"
    REDIS_QUERIES_KNOWN = PREFIX + "redis/queries_known"
    REDIS_UNREADABLE = PREFIX + "redis/requests_unreadable"
    REDIS_CRAWL_VERDICT = PREFIX + "redis/crawl_verdict"  # 1: this worker saw the crawl end and judged it


class Meta:
    """Request meta keys of the project's own components."""

    CALL = "justoneapi_call"  # the call a request makes (search.SearchCall, search.DetailCall)
    NOT_BEFORE = "justoneapi_not_before"  # epoch seconds: a retry's backoff (policy -> throttle)
    RATE_LIMITED = "justoneapi_rate_limited"  # how often this call met a rate limit (policy)
    HELD_NOTE = "justoneapi_held_note"  # a distributed detail call's note, as its page found it (delivered whole by it)
    LEASE = "justoneapi_lease"  # the Redis lease of a request taken from the shared queue
    STORED = "justoneapi_in_redis"  # a request already pushed with its page (scripts.PAGE): not again
    HANDOFF = "justoneapi_handoff"  # a leased request on its way to an idle engine (engine.crawl)
