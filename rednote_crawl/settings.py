"""Scrapy settings of rednote_crawl.

The JUSTONEAPI_* settings and their defaults are in ``rednote_crawl/config.py``
and in the README's settings table. Set the token in the environment
(JUSTONEAPI_TOKEN), never here.
"""

BOT_NAME = "rednote_crawl"
SPIDER_MODULES = ["rednote_crawl.spiders"]
NEWSPIDER_MODULE = "rednote_crawl.spiders"
COMMANDS_MODULE = "rednote_crawl.commands"

ADDONS = {"rednote_crawl.addon.JustOneApiAddon": 0}

# An API, not a website.
ROBOTSTXT_OBEY = False
COOKIES_ENABLED = False
# Both let someone run code inside the crawl process, which holds the token.
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
USER_AGENT = "rednote_crawl/0.1"
DEFAULT_REQUEST_HEADERS = {"Accept": "application/json"}

# Throughput comes from running many queries at once; the token's rate is paced
# by TokenThrottleMiddleware (JUSTONEAPI_MAX_RPS), not by DOWNLOAD_DELAY.
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 16
DOWNLOAD_DELAY = 0
AUTOTHROTTLE_ENABLED = False

# Retries follow the API's business codes (ApiPolicyMiddleware), not HTTP statuses.
RETRY_ENABLED = False
DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "rednote_crawl.middlewares.policy.ApiPolicyMiddleware": 550,
    "rednote_crawl.middlewares.throttle.TokenThrottleMiddleware": 950,
}
# The API answers errors with HTTP 4xx/5xx too; the policy middleware judges them.
HTTPERROR_ALLOW_ALL = True
# The API does not redirect: a redirect comes from something in between, and following it
# would carry the call (and its token) elsewhere. A 3xx is judged like any odd answer.
REDIRECT_ENABLED = False
METAREFRESH_ENABLED = False
# A long keyword makes a long URL; the API, not a middleware, says whether it is too long.
URLLENGTH_LIMIT = 0
# The token is added by this handler at the last hop, never to a Request.
DOWNLOAD_HANDLERS = {
    "http": "rednote_crawl.auth.TokenAuthDownloadHandler",
    "https": "rednote_crawl.auth.TokenAuthDownloadHandler",
}

SPIDER_MIDDLEWARES = {
    # With JUSTONEAPI_JOB_DIR: journal every paid page, resume where the last run stopped.
    "rednote_crawl.middlewares.resume.ResumeMiddleware": 950,
    # With REDIS_URL: end a taken request's lease once its output is stored (closest to the engine).
    "rednote_crawl.distributed.leases.LeaseMiddleware": 10,
}
ITEM_PIPELINES = {
    "rednote_crawl.pipelines.NoteDedupePipeline": 100,  # one machine
    "rednote_crawl.distributed.items.RedisNotePipeline": 100,  # REDIS_URL: dedupe and deliver in Redis
}
EXTENSIONS = {
    "rednote_crawl.summary.CrawlSummary": 500,
    "rednote_crawl.distributed.worker.DistributedWorker": 500,  # REDIS_URL only
}

# Distributed mode (REDIS_URL, setting or environment variable): the add-on switches SCHEDULER
# to rednote_crawl.distributed.scheduler.LeasedScheduler. A worker closes after this many
# seconds during which the whole crawl had no work (scrapy-redis's setting; 0: never).
MAX_IDLE_TIME_BEFORE_CLOSE = 30

FEED_EXPORTERS = {
    "jsonlines": "rednote_crawl.exporters.OrjsonLinesItemExporter",
    "jsonl": "rednote_crawl.exporters.OrjsonLinesItemExporter",
    "jl": "rednote_crawl.exporters.OrjsonLinesItemExporter",
}
# Without -o/-O, notes go to output/<spider>-<UTC time>.jsonl (DEFAULT_FEEDS in addon.py).
FEED_EXPORT_ENCODING = "utf-8"

LOG_LEVEL = "INFO"
