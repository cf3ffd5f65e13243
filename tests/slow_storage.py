"""A job folder whose every page takes a while to store, for ``-s JUSTONEAPI_STATE_CLASS=`` in crawl tests:
a slow disk, or a database thread that lags behind the answers."""

from __future__ import annotations

import asyncio
from typing import Any

from rednote_crawl.state.local import LocalPages, LocalState

STORE_SECONDS = 0.3


class SlowPages(LocalPages):
    async def page_read(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(STORE_SECONDS)
        await super().page_read(*args, **kwargs)


class SlowStorage(LocalState):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pages = SlowPages(self.crawler, self.config)
