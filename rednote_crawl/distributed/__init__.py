"""Scrapy components that only a Redis home of the crawl's state has (the add-on registers them
when ``REDIS_URL`` is set); the state itself is in ``rednote_crawl/state/redis/``.

- ``scheduler.py`` requests leased from Redis, JSON-encoded; no worker deletes the shared queue
- ``leases.py``    follows each leased response's output until it is stored (a spider middleware)
- ``worker.py``    heartbeat, crawl-wide stops, closing when the whole crawl is idle, progress

The commands ``scrapy redis status|drain|reset|resume`` (commands/redis.py) act on the shared crawl.
"""
