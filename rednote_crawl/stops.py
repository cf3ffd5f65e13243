"""Every way a crawl can stop early, in one table, and the exit status of every end.

Each ``Stop`` names its finish reason, the API codes that cause it, the exit status of
``scrapy crawl``, what happened in words, and what to do before running again: on one machine
(the same command carries on, with a job folder) and in a distributed crawl (after fixing the
cause, ``scrapy redis resume``). The policy, the throttle, the summary, the probe and the
``redis`` command all read this table; adding a fatal API code is one line here.

Plain Python: no Scrapy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rednote_crawl.names import Stat

FINISHED = "finished"  # Scrapy's close reason of a crawl that ran out of work

EXIT_FINISHED = 0
EXIT_ERROR = 1  # crashed, or stopped by Ctrl-C / a close reason of Scrapy's own
EXIT_BAD_INPUT = 2  # a bad argument or setting, a missing token or seed file: nothing was sent
EXIT_INCOMPLETE = 3  # finished, but notes may be missing (failed pages, lost output)


@dataclass(frozen=True, slots=True)
class Stop:
    reason: str  # the finish reason (Scrapy's close reason)
    exit_status: int
    what: str  # what happened, for the log line that stops the crawl
    fix: str  # one machine: what to do next (a job folder carries on where the run stopped)
    fix_distributed: str = ""  # distributed: what to fix before `scrapy redis resume`
    codes: tuple[int, ...] = ()  # the API codes that cause it
    crawl_wide: bool = False  # distributed: it stops every worker (written to Redis), not only the one that saw it


INVALID_TOKEN = Stop(
    "justoneapi_invalid_token",
    4,
    "the token is invalid or inactive: check JUSTONEAPI_TOKEN",
    "fix JUSTONEAPI_TOKEN (scrapy probe checks it), then run the same command again",
    "fix JUSTONEAPI_TOKEN on the workers (scrapy probe checks it)",
    codes=(100,),
    crawl_wide=True,
)
PERMISSION_DENIED = Stop(
    "justoneapi_permission_denied",
    4,
    "the token has no permission for note search v2: ask the vendor to enable it",
    "ask the vendor to enable note search v2 for the token, then run the same command again",
    "ask the vendor to enable note search v2 for the token",
    codes=(600,),
    crawl_wide=True,
)
QUOTA_EXCEEDED = Stop(
    "justoneapi_quota_exceeded",
    5,
    "the token's daily quota is used up: run again tomorrow or raise the quota with the vendor",
    "the daily quota is used up: run the same command again tomorrow",
    "wait for tomorrow's quota",
    codes=(303,),
    crawl_wide=True,
)
INSUFFICIENT_BALANCE = Stop(
    "justoneapi_insufficient_balance",
    5,
    "the account balance is used up: top it up, then run again",
    "top up the balance, then run the same command again",
    "top up the balance",
    codes=(601,),
    crawl_wide=True,
)
BUDGET_SPENT = Stop(
    "justoneapi_budget_spent",
    6,
    "the call budget is spent (JUSTONEAPI_MAX_REQUESTS)",
    "run the same command again (raise -s JUSTONEAPI_MAX_REQUESTS=N to go further in one run)",
    "give the workers a higher -s JUSTONEAPI_MAX_REQUESTS (the calls of all workers count)",
    crawl_wide=True,
)
UNEXPECTED_ANSWERS = Stop(
    "justoneapi_unexpected_answers",
    7,
    "the API kept giving answers it does not document: check JUSTONEAPI_BASE_URL",
    "check JUSTONEAPI_BASE_URL (scrapy probe shows what it answers), then run the same command again",
    "check JUSTONEAPI_BASE_URL (scrapy probe shows what it answers)",
    crawl_wide=True,
)
API_UNREACHABLE = Stop(
    "justoneapi_api_unreachable",
    9,
    "the API cannot be reached (no such host, a refused connection, no route)",
    "check the network and JUSTONEAPI_BASE_URL (scrapy probe tries one call), then run the same command again",
)
STORAGE_FAILED = Stop(
    "justoneapi_storage_failed",
    8,
    "a write to the job folder or an output file failed",
    "free disk space (or fix the folder's permissions), then run the same command again: only the pages in "
    "flight are paid for twice",
)
# What to do about a failed write depends on what failed (the message names the file and the error).
STORAGE_LOCKED_FIX = (
    "another process holds the job database with a write transaction open (a sqlite3 shell, a backup or sync "
    "tool, another program on the folder): end it, then run the same command again"
)
STORAGE_PERMISSION_FIX = (
    "give the crawl's user write permission on the folder and its files (ls -l shows who owns them), then run "
    "the same command again"
)
STORAGE_DAMAGED_FIX = (
    "the job database is damaged: run the same command again; the next start checks it, sets it aside and "
    "carries the crawl on from what still reads (docs/jobs.md)"
)


def storage_fix(message: str) -> str:
    """The advice for a failed write or a job database that cannot be opened, from its error message."""
    text = message.lower()
    if "locked" in text or "busy" in text:
        return STORAGE_LOCKED_FIX
    if "permission" in text or "readonly" in text or "read-only" in text or "access" in text:
        return STORAGE_PERMISSION_FIX
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return STORAGE_DAMAGED_FIX
    return STORAGE_FAILED.fix


REDIS_STATE_LOST = Stop(
    "justoneapi_redis_state_lost",
    10,
    "the crawl's state in Redis was lost (Redis restarted without its data, was flushed, or failed over to a "
    "replica that lagged) or reset (`scrapy redis reset`) under the running workers",
    "make Redis persist (appendonly yes), then start the crawl again: `scrapy redis reset` and seed the keywords "
    "again; the seen notes, if they survived, keep the notes already delivered from being delivered twice",
)  # distributed only; each worker finds it out itself (nothing to write to a Redis that lost the crawl)
SHUTDOWN = Stop("shutdown", EXIT_ERROR, "the crawl was interrupted (Ctrl-C or a signal)", "run the same command again")

STOPS: tuple[Stop, ...] = (
    INVALID_TOKEN,
    PERMISSION_DENIED,
    QUOTA_EXCEEDED,
    INSUFFICIENT_BALANCE,
    BUDGET_SPENT,
    UNEXPECTED_ANSWERS,
    API_UNREACHABLE,
    STORAGE_FAILED,
    REDIS_STATE_LOST,
    SHUTDOWN,
)
BY_REASON: dict[str, Stop] = {stop.reason: stop for stop in STOPS}
BY_CODE: dict[int, Stop] = {code: stop for stop in STOPS for code in stop.codes}

# Stats that mean notes may be missing: a callback crashed or a feed could not be written.
LOSS_STATS = ("spider_exceptions/", "feedexport/failed_count/", Stat.STORAGE_FAILED)


def for_code(code: int | None) -> Stop | None:
    """The stop an API code causes, or None when the code does not stop the crawl."""
    return BY_CODE.get(code) if code is not None else None


def exit_status(finish_reason: str | None, stats: Mapping[str, Any]) -> int:
    """A crawl is complete exactly when this is 0 (the job folder and the summary agree on it)."""
    if finish_reason == FINISHED:
        lost = stats.get(Stat.PAGES_FAILED) or any(k.startswith(LOSS_STATS) for k in stats)
        return EXIT_INCOMPLETE if lost else EXIT_FINISHED
    stop = BY_REASON.get(finish_reason or "")
    return stop.exit_status if stop else EXIT_ERROR


@dataclass(frozen=True, slots=True)
class StopEvent:
    """A stop as it happened: which one, the message that came with it, and who saw it first.

    ``by`` is the worker that stopped a distributed crawl when it was another one (None: this
    process). Unknown reasons (written by a newer version of the project) are kept as they are.
    """

    reason: str
    message: str
    by: str | None = None

    @property
    def stop(self) -> Stop | None:
        return BY_REASON.get(self.reason)
