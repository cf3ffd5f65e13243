"""Scrapy components that only a Redis home of the crawl's state has (the add-on registers them
when ``REDIS_URL`` is set); the state itself is in ``rednote_crawl/state/redis/``.

- ``scheduler.py`` requests leased from Redis into a local buffer, refilled in the background;
                   no worker deletes the shared queue
- ``worker.py``    heartbeat, crawl-wide stops, the leases of pages that failed, closing when the
                   whole crawl is idle, progress

The commands ``scrapy redis status|drain|reset|resume`` (commands/redis.py) act on the shared crawl.
"""
