"""Spider middlewares: the bookkeeping of each page (pages.py)."""
