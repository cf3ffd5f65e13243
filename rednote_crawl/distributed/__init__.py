"""Distributed crawls: many workers, one Redis (on when ``REDIS_URL`` is set).

The engine is scrapy-redis (its scheduler, dupefilter and connection helpers); this package
fixes what it lacks on Scrapy 2.19 (DESIGN.md, "scrapy-redis 0.9.1"):

- ``shared.py``    a worker's handle on the shared crawl: the Redis keys, the Lua scripts that
                   keep every write atomic and idempotent, leases, the outbox that rides out outages
- ``scheduler.py`` scrapy-redis's scheduler with leased, JSON-encoded requests that no worker deletes
- ``leases.py``    when a taken request is done: its next page, its notes or its retry are stored
- ``account.py``   the token's rate limit and call budget, shared by every worker
- ``items.py``     each note once, into the list ``<spider>:items``, and draining it to a file
- ``worker.py``    heartbeat, crawl-wide stops, closing when the whole crawl is idle, progress

The commands ``scrapy redis status|drain|reset|resume`` (commands/redis.py) act on the shared crawl.
"""
