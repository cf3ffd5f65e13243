"""Scrapy settings of rednote_crawl.

The JUSTONEAPI_* settings and their defaults are in ``rednote_crawl/config.py``
and in docs/usage.md's settings table. Set the token in the environment
(JUSTONEAPI_TOKEN), never here. The project's own components are registered by
the add-on (``rednote_crawl/addon.py``), according to where the crawl's state lives.
"""

from scrapy.settings import default_settings as _defaults

BOT_NAME = "rednote_crawl"
SPIDER_MODULES = ["rednote_crawl.spiders"]
NEWSPIDER_MODULE = "rednote_crawl.spiders"
COMMANDS_MODULE = "rednote_crawl.commands"

ADDONS = {"rednote_crawl.addon.JustOneApiAddon": 0}

# An API, not a website.
ROBOTSTXT_OBEY = False
COOKIES_ENABLED = False
# Both let someone run code inside the crawl process, which holds the token. They are left out of
# the base lists too: Scrapy imports every listed component, even a disabled one, and these two
# pull in aiohttp and twisted.conch (0.2 s of every start). So is the cookies middleware (tldextract).
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
_never_loaded = {
    "scrapy.extensions.telnet.TelnetConsole",
    "scrapy.extensions.remote_control.RemoteControl",
    "scrapy.downloadermiddlewares.cookies.CookiesMiddleware",
}
EXTENSIONS_BASE = {k: v for k, v in _defaults.EXTENSIONS_BASE.items() if k not in _never_loaded}
DOWNLOADER_MIDDLEWARES_BASE = {
    k: v for k, v in _defaults.DOWNLOADER_MIDDLEWARES_BASE.items() if k not in _never_loaded
}
USER_AGENT = "rednote_crawl/0.1"
DEFAULT_REQUEST_HEADERS = {"Accept": "application/json"}

# Throughput comes from running many queries at once; the token's rate is paced
# by the throttle (JUSTONEAPI_MAX_RPS), not by DOWNLOAD_DELAY.
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 16
DOWNLOAD_DELAY = 0
AUTOTHROTTLE_ENABLED = False

# Retries follow the API's business codes (downloader/policy.py), not HTTP statuses.
RETRY_ENABLED = False
DOWNLOADER_MIDDLEWARES = {"scrapy.downloadermiddlewares.retry.RetryMiddleware": None}
# The API answers errors with HTTP 4xx/5xx too; the policy middleware judges them.
HTTPERROR_ALLOW_ALL = True
# The API does not redirect: a redirect comes from something in between, and following it
# would carry the call (and its token) elsewhere. A 3xx is judged like any odd answer.
REDIRECT_ENABLED = False
METAREFRESH_ENABLED = False
# A real page is about 70 kB: an answer (after decompression) over 64 MiB is no page, and fails
# (Scrapy's default lets 1 GiB into memory). docs/reference.md, "Field sizes".
DOWNLOAD_MAXSIZE = 64 * 2**20
# A long keyword makes a long URL; the API, not a middleware, says whether it is too long.
URLLENGTH_LIMIT = 0
# The token is added by this handler at the last hop, never to a Request.
DOWNLOAD_HANDLERS = {
    "http": "rednote_crawl.downloader.handler.TokenAuthDownloadHandler",
    "https": "rednote_crawl.downloader.handler.TokenAuthDownloadHandler",
}

# Distributed mode (REDIS_URL, setting or environment variable): the add-on switches SCHEDULER
# to rednote_crawl.distributed.scheduler.LeasedScheduler. A worker closes after this many
# seconds during which the whole crawl had no work (scrapy-redis's setting; 0: never).
MAX_IDLE_TIME_BEFORE_CLOSE = 30

FEED_EXPORTERS = {
    "jsonlines": "rednote_crawl.items.export.OrjsonLinesItemExporter",
    "jsonl": "rednote_crawl.items.export.OrjsonLinesItemExporter",
    "jl": "rednote_crawl.items.export.OrjsonLinesItemExporter",
    # Flat rows for analysts (docs/output.md): -O notes.csv, -O notes.xlsx
    "csv": "rednote_crawl.items.export.CsvFeedExporter",
    "xlsx": "rednote_crawl.items.export.XlsxFeedExporter",
}
# Without -o/-O, notes go to output/<spider>-<UTC time>.jsonl (DEFAULT_FEEDS in state/local.py).
# No encoding for every format: JSON Lines is UTF-8 (orjson), CSV is UTF-8 with a BOM (utf-8-sig, so
# that Excel reads Chinese right) unless a feed names its own ("encoding" in FEEDS, or this setting).
FEED_EXPORT_ENCODING = None

LOG_LEVEL = "INFO"
