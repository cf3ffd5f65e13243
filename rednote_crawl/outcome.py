"""How a crawl ended, as an exit status (README, "Exit status").

Shared by the summary, the crawl command and the job state, which must agree: a crawl is
complete exactly when its exit status is 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rednote_crawl.middlewares.policy import UNEXPECTED
from rednote_crawl.middlewares.throttle import BUDGET_SPENT

# Exit status of `scrapy crawl note_search` (README, "Exit status").
EXIT_FINISHED = 0
EXIT_ERROR = 1  # crashed, or stopped by Ctrl-C / another close reason
EXIT_BAD_INPUT = 2  # a bad argument or setting, a missing token or seed file: nothing was sent
EXIT_INCOMPLETE = 3  # finished, but some pages failed after every retry
EXIT_STATUS: dict[str, int] = {
    "justoneapi_invalid_token": 4,
    "justoneapi_permission_denied": 4,
    "justoneapi_insufficient_balance": 5,
    "justoneapi_quota_exceeded": 5,
    BUDGET_SPENT: 6,
    UNEXPECTED: 7,
}
# Stats that mean notes may be missing: a callback crashed or a feed could not be written.
LOSS_STATS = ("spider_exceptions/", "feedexport/failed_count/")


def exit_status(finish_reason: str | None, stats: Mapping[str, Any]) -> int:
    if finish_reason == "finished":
        lost = stats.get("justoneapi/pages/failed") or any(k.startswith(LOSS_STATS) for k in stats)
        return EXIT_INCOMPLETE if lost else EXIT_FINISHED
    return EXIT_STATUS.get(finish_reason or "", EXIT_ERROR)
