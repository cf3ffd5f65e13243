"""rednote_crawl: Xiaohongshu (RedNote) note search through Just One API, with Scrapy."""

__version__ = "0.1.0"
