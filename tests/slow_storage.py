"""A job folder whose every page takes a while to store, for ``-s JUSTONEAPI_STATE_CLASS=`` in crawl tests:
a slow disk, or a database thread that lags behind the answers."""

from __future__ import annotations

import asyncio
from typing import Any

from rednote_crawl.state.local import LocalState

STORE_SECONDS = 0.3


class SlowStorage(LocalState):
    async def page_read(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(STORE_SECONDS)
        await super().page_read(*args, **kwargs)
