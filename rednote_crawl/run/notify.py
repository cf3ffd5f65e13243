"""Notifications through Apprise (``JUSTONEAPI_NOTIFY``): one URL per place to send to.

Apprise is synchronous (it posts with ``requests``), so the sending runs in a thread of its own,
off the reactor, and the crawl waits for it at most ``JUSTONEAPI_NOTIFY_TIMEOUT`` seconds. A
notification that cannot be sent is logged and changes nothing else: not the exit status, not
the job folder. The URLs hold secrets of their own (webhook keys, mail passwords): the log shows
only their scheme and host (``redaction.mask_url``), and every log record masks them like the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence

from rednote_crawl.config import apprise
from rednote_crawl.redaction import mask_url

logger = logging.getLogger(__name__)


def send_now(urls: Sequence[str], title: str, body: str, failure: bool = True) -> list[str]:
    """Send to every URL, one at a time, here (blocking). Returns the URLs that failed."""
    module = apprise()
    kind = module.NotifyType.FAILURE if failure else module.NotifyType.SUCCESS  # services that show it: red or green
    failed = []
    for url in urls:
        sender = module.Apprise()
        try:
            sent = sender.add(url) and bool(sender.notify(title=title, body=body, notify_type=kind))
        except Exception:  # a plugin's bug must not end the crawl's last step
            logger.exception("Notification to %s failed", mask_url(url))
            sent = False
        if not sent:
            failed.append(url)
    return failed


class Notifier:
    def __init__(self, urls: Sequence[str], timeout: float) -> None:
        self.urls = tuple(urls)
        self.timeout = timeout

    async def send(self, title: str, body: str, failure: bool = True) -> bool:
        """Send off the reactor, waiting ``timeout`` seconds at most; True when every URL took it."""
        if not self.urls:
            return True
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[str]] = loop.create_future()

        def deliver(result: list[str] | BaseException) -> None:
            if not done.done():
                done.set_exception(result) if isinstance(result, BaseException) else done.set_result(result)

        def work() -> None:
            try:
                result: list[str] | BaseException = send_now(self.urls, title, body, failure)
            except BaseException as exc:
                result = exc
            with contextlib.suppress(RuntimeError):  # the loop is gone: the crawl stopped waiting long ago
                loop.call_soon_threadsafe(deliver, result)

        # A daemon thread: a service that never answers must not keep the process alive after the timeout.
        threading.Thread(target=work, name="notify", daemon=True).start()
        shown = ", ".join(mask_url(url) for url in self.urls)
        try:
            failed = await asyncio.wait_for(done, self.timeout)
        except TimeoutError:
            logger.error(
                "Notification not sent within %g s (JUSTONEAPI_NOTIFY_TIMEOUT) to %s; the exit status is unchanged",
                self.timeout,
                shown,
            )
            return False
        except Exception as exc:
            logger.error("Notification not sent to %s: %s; the exit status is unchanged", shown, exc)
            return False
        for url in failed:
            logger.error(
                "Notification not sent to %s (Apprise's log above says why); the exit status is unchanged", mask_url(url)
            )
        if sent := [url for url in self.urls if url not in failed]:
            logger.info("Notification sent to %s", ", ".join(mask_url(url) for url in sent))
        return not failed
