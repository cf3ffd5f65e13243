"""The rate limits learned for each token, kept between crawls on this machine.

One small JSON file, ``token-limits.json``, in ``JUSTONEAPI_STATE_DIR``: by default Scrapy's
project data folder (``.scrapy/``, where Scrapy keeps its HTTP cache), or, where the crawl runs
outside a project folder (under scrapyd), the user's cache folder. Tokens are kept as a hash,
never as they are. A distributed crawl keeps the same in Redis (state/redis).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import orjson

from rednote_crawl import api
from rednote_crawl.formats.files import whole_file

logger = logging.getLogger(__name__)

FILE = "token-limits.json"


def token_key(token: str) -> str:
    """What is kept of a token: a hash that names it, and from which it cannot be found again."""
    return hashlib.sha256(f"rednote_crawl:{token}".encode()).hexdigest()[:24]


def default_folder() -> Path:
    from scrapy.exceptions import NotConfigured
    from scrapy.utils.project import inside_project, project_data_dir

    try:
        if inside_project():
            return Path(project_data_dir())
    except NotConfigured:
        pass
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "rednote_crawl"


class LimitFile:
    def __init__(self, folder: str | Path | None) -> None:
        self.path = (Path(folder).expanduser() if folder else default_folder()) / FILE

    def _read(self) -> dict[str, Any]:
        try:
            data = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, token: str) -> float | None:
        entry = self._read().get(token_key(token))
        limit = entry.get("limit") if isinstance(entry, dict) else None
        return float(limit) if isinstance(limit, int | float) and limit > 0 else None

    def put(self, token: str, limit: float) -> None:
        """Keep the limit (whole or not at all); a folder that cannot be written only costs a warning."""
        data = self._read()
        data[token_key(token)] = {"limit": round(limit, 3), "at": api.now_iso()}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with whole_file(self.path) as file:
                file.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        except OSError as exc:
            logger.warning(
                "Cannot keep the token's rate limit in %s (%s): the next crawl finds it again; "
                "set JUSTONEAPI_STATE_DIR to a folder you can write",
                self.path,
                exc.strerror,
            )
